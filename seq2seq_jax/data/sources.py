"""Named data sources: where every task's examples come from (seqio's registry of sources).

A source is one entry of `SOURCES`: a name, the config.data keys it reads, and the forms in
which it gives a split. A task asks for the form it reads:

  pairs(data, split, **kw) -> corpus.Stream of (source text, target text), in a fixed order
  path(data, split)        -> a file listing the split (`input path<TAB>text` lines, or a
                              captions file), written first if the source builds it
  tfds(data, split, **kw)  -> tfds_raw.Split: a prepared TFDS split's records by index

An experiment chooses a source with the config keys it always had (`select`): data.source
names one (translation, summarization); a builder's own group of settings names its builder
(data.digit_strips=dict(...), data.spoken_digits, data.fillets, data.tuxpaint_stamps);
data.tfds_name names 'tfds'; otherwise the task's default ('tsv', 'captions', 'cmudict').
Adding a dataset is one function registered here; no task invents its own selector.
"""
import dataclasses
import importlib
import inspect
import json
import os
from typing import Any, Callable, Sequence

from seq2seq_jax.data import corpus
from seq2seq_jax.errors import UserError

# The config keys' prefix of each split: data.train_tsv, data.eval_tsv, data.test_tsv, ...
SPLIT_PREFIX = {'train': 'train', 'validation': 'eval', 'test': 'test'}


@dataclasses.dataclass(frozen=True)
class Source:
  """One named source; a form it does not give is None."""
  name: str
  doc: str
  keys: tuple[str, ...]                   # the config.data keys it reads (besides data_dir)
  pairs: Callable[..., corpus.Stream] | None = None
  path: Callable[[Any, str], str] | None = None
  tfds: Callable[..., Any] | None = None
  check: Callable[[Any], None] | None = None   # validates its settings when chosen

  def read(self, form: str, data: Any, split: str, **kw):
    """The split in `form` ('pairs', 'path' or 'tfds'); UserError if this source has no such
    form."""
    fn = getattr(self, form)
    if fn is None:
      gives = [f for f in ('pairs', 'path', 'tfds') if getattr(self, f) is not None]
      raise UserError(f'data source {self.name!r} gives {" or ".join(gives)}, not {form}')
    return fn(data, split, **kw)


SOURCES: dict[str, Source] = {}


def register(name: str, doc: str, keys: Sequence[str] = (), **forms: Callable) -> Source:
  """Adds a source to SOURCES (a name registered twice is a bug: ValueError)."""
  if name in SOURCES:
    raise ValueError(f'data source {name!r} is registered twice')
  SOURCES[name] = Source(name, doc, tuple(keys), **forms)
  return SOURCES[name]


def get(name: str) -> Source:
  """The source called `name`; a one-line UserError listing the known ones otherwise."""
  if name not in SOURCES:
    raise UserError(f'unknown data source {name!r} (known: {", ".join(sorted(SOURCES))})')
  return SOURCES[name]


# Sources chosen by a group of settings of their own (data.<name> = dict(...)).
BUILDER_KEYS = ('digit_strips', 'spoken_digits', 'fillets', 'tuxpaint_stamps')


def select(data: Any, allowed: Sequence[str], default: str) -> Source:
  """The source config.data chooses among a task's `allowed` ones (see the module docstring).

  Args:
    data: config.data.
    allowed: the sources the task reads.
    default: the task's source when no key chooses one.
  """
  if 'source' in data:
    name = data.source
    if name not in allowed:
      raise UserError(f'data.source must be one of {tuple(allowed)}, got {name!r}')
  elif str(data.get('tfds_name', '') or '') and 'tfds' in allowed:
    name = 'tfds'            # data.tfds_name wins over a builder's settings (as it always did)
  else:
    chosen = [k for k in BUILDER_KEYS if k in allowed and data.get(k, None) is not None]
    if len(chosen) > 1:
      raise UserError(f'data.{chosen[0]} and data.{chosen[1]} are both set: choose one')
    name = chosen[0] if chosen else default
  source = get(name)
  if source.check is not None:
    source.check(data)
  return source


def data_root(data: Any) -> str:
  """Where builders write and TFDS datasets are: data.data_dir, else $TFDS_DATA_DIR, else
  ~/tensorflow_datasets (the default of every dataset, G2P's first)."""
  from seq2seq_jax.datasets import cmudict  # pylint: disable=g-import-not-at-top
  return cmudict.default_data_dir(str(data.get('data_dir', '') or ''))


def spec_of(cls: type, key: str, settings: Any):
  """A builder's spec dataclass from data.<key> (a dict; lists become tuples), checked."""
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(settings) - fields)
  if unknown:
    raise UserError(f'data.{key}: unknown key(s) {unknown} (known: {sorted(fields)})')
  spec = cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                for k, v in dict(settings).items()})
  if hasattr(spec, 'check'):
    spec.check()
  return spec


def _split_key(data: Any, split: str, suffix: str, what: str) -> str:
  """data.<prefix>_<suffix> of `split`; an unset one is a one-line UserError saying which
  flag to give (naming the other splits' keys that are unset too)."""
  key = f'{SPLIT_PREFIX[split]}_{suffix}'
  value = str(data[key])
  if not value:
    unset = [k for k in (f'{p}_{suffix}' for p in SPLIT_PREFIX.values())
             if k in data and not str(data[k])]
    others = [k for k in unset if k != key]
    also = f'; {" and ".join(f"data.{k}" for k in others)} too' if others else ''
    raise UserError(f'data.{key} is not set: give --config.data.{key}=PATH ({what}; '
                    f'docs/own_data.md){also}')
  return value


# --- a user's files ----------------------------------------------------------------------
def _tsv_path(data, split):
  return _split_key(data, split, 'tsv', 'a TSV file, one example a line: source<TAB>target, '
                    'or input file path<TAB>text')


def _tsv_pairs(data, split):
  path = _tsv_path(data, split)
  bad = corpus.BadPairs(data.bad_pairs)
  return corpus.Stream(corpus.iter_tsv(path, bad), path, bad)


register('tsv', 'TSV files, one example a line: source<TAB>target, or input path<TAB>text',
         ('train_tsv', 'eval_tsv', 'test_tsv'), pairs=_tsv_pairs, path=_tsv_path)


def _aligned_pairs(data, split):
  key = f'{SPLIT_PREFIX[split]}_files'
  files = tuple(data[key])
  if not any(files):
    unset = [f'data.{p}_files' for p in SPLIT_PREFIX.values()
             if f'{p}_files' in data and not any(data[f'{p}_files']) and p != key[:-6]]
    also = f'; {" and ".join(unset)} too' if unset else ''
    raise UserError(f'data.{key} is not set: give --config.data.{key}="(\'SOURCE_PATH\', '
                    f'\'TARGET_PATH\')" (two aligned text files: line i of the source file '
                    f'pairs with line i of the target file; docs/own_data.md){also}')
  if len(files) != 2 or not all(files):
    raise UserError(f'data.{key} must be (source_path, target_path), got {files}')
  bad = corpus.BadPairs(data.bad_pairs)
  return corpus.Stream(corpus.iter_aligned_files(files[0], files[1], bad),
                       f'{files[0]} + {files[1]}', bad)


register('files', 'aligned text files: line i of the source file translates line i of the '
         'target file', ('train_files', 'eval_files', 'test_files'), pairs=_aligned_pairs)

register('captions', 'captions files: image path<TAB>caption lines, or COCO-format JSON',
         ('train_captions', 'eval_captions', 'test_captions'),
         path=lambda data, split: _split_key(
             data, split, 'captions', 'a captions file: image path<TAB>caption lines, or '
             'COCO-format JSON'))


# --- TFDS ----------------------------------------------------------------------------------
def _tfds_split_name(data, split, default_splits):
  key = f'{SPLIT_PREFIX[split]}_split'
  return str(data[key] if default_splits is None else data.get(key, default_splits[split]))


def _tfds_split(data, split, *, default_splits=None, **kw):
  """tfds_raw.Split of data.tfds_name's split data.<prefix>_split (or the task's default
  split names, for configs that need not name them)."""
  from seq2seq_jax.data import tfds_raw  # pylint: disable=g-import-not-at-top
  return tfds_raw.Split(str(data.tfds_name), _tfds_split_name(data, split, default_splits),
                        data_root(data), **kw)


def _tfds_pairs(data, split, *, features: tuple[str, str], check=None, default_splits=None):
  """Two text features of each record as a pair (corpus.stream_tfds)."""
  return corpus.stream_tfds(str(data.tfds_name), _tfds_split_name(data, split, default_splits),
                            features[0], features[1], data_root(data), check=check)


register('tfds', 'a prepared TFDS dataset by name (data.tfds_name; debian_ddtp is built here '
         'on first use)', ('tfds_name', 'data_dir', 'train_split', 'eval_split', 'test_split'),
         pairs=_tfds_pairs, tfds=_tfds_split)


# --- offline builders --------------------------------------------------------------------
def _cmudict_pairs(data, split):
  from seq2seq_jax.datasets import cmudict  # pylint: disable=g-import-not-at-top
  pairs = cmudict.load_split(str(data.get('data_dir', '')), split)
  return corpus.Stream(iter(pairs), f'cmudict/{split}', corpus.BadPairs('skip'))


register('cmudict', "the CMU Pronouncing Dictionary's (word, phonemes) pairs, built on first use",
         (), pairs=_cmudict_pairs)


def _num2words_pairs(data, split):
  c = corpus.read_num2words(split, data.src_lang, data.tgt_lang, int(data.num2words_max))
  return corpus.Stream(iter(c.pairs), c.origin, corpus.BadPairs('skip'))


register('num2words', 'numbers written out in two languages (num2words)',
         ('num2words_max',), pairs=_num2words_pairs)


def _pydoc_pairs(data, split):
  from seq2seq_jax.datasets import pydoc_pairs  # pylint: disable=g-import-not-at-top
  try:
    spec = spec_of(pydoc_pairs.PydocSpec, 'pydoc', data.pydoc)
  except TypeError as e:
    raise UserError(f'data.pydoc: {e}') from None
  path = os.path.join(pydoc_pairs.build(data_root(data), spec), f'{split}.jsonl')
  with open(path, encoding='utf-8') as f:
    rows = [json.loads(line) for line in f]
  return corpus.Stream(iter([(r['source'], r['target']) for r in rows]), path,
                       corpus.BadPairs('skip'))


register('pydoc', "(docstring's first sentence, function source) pairs of installed Python "
         'packages', ('pydoc',), pairs=_pydoc_pairs)


def _builder(key: str, module: str, spec_class: str | None, doc: str) -> None:
  """Registers the builder datasets/<module>.py, whose settings are data.<key>: it writes
  ROOT/<folder>/{split}.tsv once, and the source gives that file."""

  def spec(data):
    mod = importlib.import_module(f'seq2seq_jax.datasets.{module}')
    if spec_class is not None:
      return mod, spec_of(getattr(mod, spec_class), key, data[key])
    known = [k for k in inspect.signature(mod.build).parameters if k != 'root']
    unknown = sorted(set(data[key]) - set(known))
    if unknown:
      raise UserError(f'data.{key}: unknown key(s) {unknown} (known: {sorted(known)})')
    return mod, dict(data[key])

  def path(data, split):
    mod, settings = spec(data)
    root = data_root(data)
    folder = (mod.build(root, **settings) if spec_class is None else mod.build(root, settings))
    return os.path.join(folder, f'{split}.tsv')

  register(key, doc, (key,), path=path, check=spec)


_builder('digit_strips', 'digit_strips', 'StripSpec',
         'strips of real handwritten digits (datasets/digit_strips.py)')
_builder('spoken_digits', 'spoken_digits', 'SpokenDigitSpec',
         'connected digit strings spoken by eSpeak NG (datasets/spoken_digits.py)')
_builder('fillets', 'fillets_speech', 'FilletsSpec',
         "the Czech voice lines of Debian's fillets-ng-data-cs (datasets/fillets_speech.py)")
_builder('tuxpaint_stamps', 'tuxpaint_stamps', None,
         "Debian's tuxpaint-stamps pictures named in their captions (datasets/tuxpaint_stamps.py)")
