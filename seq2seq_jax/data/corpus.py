"""Parallel corpora: TFDS translation datasets by name, aligned text files, TSV, num2words.

Every reader returns a list of (source, target) strings. A user's corpus with empty lines,
one-sided lines or mismatched line counts is either refused with an error naming the file
and line (bad_pairs='error') or the bad pairs are skipped and counted (bad_pairs='skip').
"""
import dataclasses
import itertools
import os
import zlib

from seq2seq_jax.errors import UserError


@dataclasses.dataclass
class Corpus:
  pairs: list[tuple[str, str]]
  skipped: int = 0            # bad pairs dropped under bad_pairs='skip'
  origin: str = ''


def _bad(policy: str, where: str, what: str) -> None:
  if policy == 'error':
    raise UserError(f'{where}: {what} (set data.bad_pairs=skip to drop such pairs)')
  if policy != 'skip':
    raise UserError(f"data.bad_pairs must be 'error' or 'skip', got {policy!r}")


def _open(path: str):
  if not path:
    raise UserError('a corpus file path is empty in the config')
  if not os.path.isfile(path):
    raise UserError(f'corpus file not found: {path}')
  return open(path, encoding='utf-8', errors='strict')


def read_aligned_files(src_path: str, tgt_path: str, bad_pairs: str = 'error') -> Corpus:
  """Two plain-text files, one sentence per line, line i of one translating line i of the other."""
  pairs, skipped = [], 0
  with _open(src_path) as fs, _open(tgt_path) as ft:
    try:
      for n, (s, t) in enumerate(itertools.zip_longest(fs, ft), 1):
        if s is None or t is None:
          short = src_path if s is None else tgt_path
          longer = tgt_path if s is None else src_path
          rest = 1 + sum(1 for _ in (ft if s is None else fs))
          _bad(bad_pairs, f'{short}:{n}', f'file ends while {longer} has {rest} more line(s)')
          skipped += rest
          break
        s, t = s.rstrip('\n').strip(), t.rstrip('\n').strip()
        if not s or not t:
          side = 'both sides are' if not s and not t else (
              f'{src_path} is' if not s else f'{tgt_path} is')
          _bad(bad_pairs, f'{src_path if not s else tgt_path}:{n}', f'empty line ({side} empty)')
          skipped += 1
          continue
        pairs.append((s, t))
    except UnicodeDecodeError as e:
      raise UserError(f'{src_path} or {tgt_path}: not UTF-8 text ({e.reason})') from None
  return Corpus(pairs, skipped, f'{src_path} + {tgt_path}')


def read_tsv(path: str, bad_pairs: str = 'error') -> Corpus:
  """One pair per line: source<TAB>target."""
  pairs, skipped = [], 0
  with _open(path) as f:
    try:
      for n, line in enumerate(f, 1):
        line = line.rstrip('\n')
        cols = line.split('\t')
        if len(cols) != 2:
          _bad(bad_pairs, f'{path}:{n}', f'expected 2 tab-separated columns, found {len(cols)}')
          skipped += 1
          continue
        s, t = cols[0].strip(), cols[1].strip()
        if not s or not t:
          _bad(bad_pairs, f'{path}:{n}', 'one side of the pair is empty')
          skipped += 1
          continue
        pairs.append((s, t))
    except UnicodeDecodeError as e:
      raise UserError(f'{path}: not UTF-8 text ({e.reason})') from None
  return Corpus(pairs, skipped, path)


def read_tfds(name: str, split: str, src_lang: str, tgt_lang: str, data_dir: str) -> Corpus:
  """A prepared TFDS translation dataset (e.g. 'wmt14_translate/de-en'), either direction.

  Read through tfds.data_source (array_record; no TensorFlow). Nothing is downloaded here:
  prepare the dataset once with `tfds build` where the data can be fetched.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.data.cmudict_builder import default_data_dir  # pylint: disable=g-import-not-at-top
  data_dir = default_data_dir(data_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'TFDS dataset {name!r} is not prepared in {data_dir} '
                    f'({str(e).splitlines()[0]}); prepare it where it can be downloaded: '
                    f'`tfds build {name} --file_format=array_record --data_dir=...`') from None
  if not builder.is_prepared():
    raise UserError(f'TFDS dataset {name} is not prepared in {data_dir}; prepare it first '
                    f'(e.g. `tfds build {name} --data_dir={data_dir} --file_format=array_record`)')
  langs = set(builder.info.supervised_keys or ())
  if {src_lang, tgt_lang} - langs:
    raise UserError(f'{name} has languages {sorted(langs)}, not {src_lang!r} -> {tgt_lang!r}')
  try:
    source = builder.as_data_source(split=split)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{name}: cannot read split {split!r} ({str(e).splitlines()[0]})') from None
  examples = source.__getitems__(list(range(len(source))))
  pairs = [(ex[src_lang].decode('utf-8'), ex[tgt_lang].decode('utf-8')) for ex in examples]
  return Corpus(pairs, 0, f'tfds:{name}/{split}')


# --- An offline corpus: numbers written out in two languages (num2words) ---------------
def num2words_split(n: int) -> str:
  v = zlib.crc32(str(n).encode()) % 100
  return 'test' if v < 5 else 'validation' if v < 10 else 'train'


def read_num2words(split: str, src_lang: str, tgt_lang: str, max_number: int) -> Corpus:
  """Number words, e.g. 'four hundred and two' -> 'quatre cent deux', split by number."""
  from num2words import num2words  # pylint: disable=g-import-not-at-top
  pairs = []
  for n in range(max_number):
    if num2words_split(n) == split:
      pairs.append((num2words(n, lang=src_lang), num2words(n, lang=tgt_lang)))
  return Corpus(pairs, 0, f'num2words:{src_lang}-{tgt_lang}/{split}')
