"""A pure-numpy reader and writer of CTranslate2's `model.bin` (no ctranslate2 import).

The layout, as CTranslate2's writer `ModelSpec._serialize` (python/ctranslate2/specs/
model_spec.py, binary version 6) lays it out, all little-endian:

  uint32  binary version (this reader takes 1..6; the spec name and revision exist from 2 on)
  string  spec name (e.g. 'WhisperSpec')             -- a string is: uint16 length n
  uint32  spec revision                              --   (bytes + the NUL), n bytes, NUL last
  uint32  number of variables, then for each, sorted by name:
            string  name ('encoder/layer_0/self_attention/linear_0/weight')
            uint8   rank, then rank x uint32 dims
            uint8   dtype id: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16
            uint32  size in bytes, then the raw values (C order)
          (before version 4: uint8 item size (4 float32, 2 int16, 1 int8), uint32 count)
  uint32  number of aliases (version >= 3), then for each: string alias, string target

Quantised weights: a variable `x` stored as int8 or int16 has a float companion `x_scale`
(int8: one scale per output row, 127 / max|row|; int16: one scalar, 2**10 / max|x|), and
x = stored / scale. `read` dequantises such pairs into float32 and drops the scales, resolves
aliases (e.g. Whisper's output projection `decoder/projection/weight` is an alias of the token
embedding `decoder/embeddings/weight` when the two are tied), and returns plain numpy arrays.

`write` is the inverse of `read_raw` (binary version 6; what --mode=export writes through
seq2seq_jax/export/ctranslate2.py).

Checked: tests/test_whisper.py writes tiny files in this layout itself; tools/
make_whisper_fixtures.py also wrote one with CTranslate2's own spec writer (ctranslate2 4.x,
`WhisperSpec.save` on a converted random model) and compared the arrays read here with the
spec's variables (equal).
"""
import os
import struct
from typing import Any

import numpy as np

from seq2seq_jax.errors import UserError

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
BFLOAT16 = 5
MAX_VERSION = 6


class _Reader:
  """Sequential little-endian reads from a bytes buffer, with a clear error past its end."""

  def __init__(self, data: bytes, path: str):
    self.data, self.pos, self.path = data, 0, path

  def take(self, n: int) -> bytes:
    if self.pos + n > len(self.data):
      raise UserError(f'{self.path}: truncated CTranslate2 model (wanted {n} bytes at offset '
                      f'{self.pos}, the file has {len(self.data)})')
    out = self.data[self.pos:self.pos + n]
    self.pos += n
    return out

  def unpack(self, fmt: str) -> Any:
    size = struct.calcsize('<' + fmt)
    values = struct.unpack('<' + fmt, self.take(size))
    return values[0] if len(values) == 1 else values

  def string(self) -> str:
    n = self.unpack('H')
    raw = self.take(n)
    if not raw or raw[-1] != 0:
      raise UserError(f'{self.path}: not a CTranslate2 model (bad string at offset {self.pos})')
    return raw[:-1].decode('utf-8')


def _bfloat16_to_float32(raw: bytes) -> np.ndarray:
  bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
  return bits.view(np.float32)


def read_raw(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str]]:
  """The file as stored: ({'version', 'spec', 'revision'}, {name: array in its stored dtype
  (bfloat16 read as float32)}, {alias: target})."""
  if not os.path.isfile(path):
    raise UserError(f'no CTranslate2 model at {path!r} (expected a model.bin file)')
  with open(path, 'rb') as f:
    r = _Reader(f.read(), path)
  version = r.unpack('I')
  if not 1 <= version <= MAX_VERSION:
    raise UserError(f'{path}: not a CTranslate2 model.bin (binary version {version}; this '
                    f'reader knows 1..{MAX_VERSION})')
  header = {'version': version, 'spec': '', 'revision': 1}
  if version >= 2:
    header['spec'] = r.string()
    header['revision'] = r.unpack('I')
  variables = {}
  for _ in range(r.unpack('I')):
    name = r.string()
    rank = r.unpack('B')
    shape = tuple(r.unpack('I') for _ in range(rank))
    if version >= 4:
      type_id, nbytes = r.unpack('B'), r.unpack('I')
    else:   # older files: a byte width, then the element count; floats only
      width, count = r.unpack('B'), r.unpack('I')
      type_id, nbytes = {4: 0, 1: 1, 2: 2}.get(width, -1), width * count
    raw = r.take(nbytes)
    if type_id == BFLOAT16:
      value = _bfloat16_to_float32(raw)
    elif type_id in DTYPES:
      value = np.frombuffer(raw, DTYPES[type_id])
    else:
      raise UserError(f'{path}: variable {name!r} has an unknown dtype id {type_id}')
    if value.size != int(np.prod(shape)):
      raise UserError(f'{path}: variable {name!r} has {value.size} values for shape {shape}')
    variables[name] = value.reshape(shape)
  aliases = {}
  if version >= 3:
    for _ in range(r.unpack('I')):
      alias = r.string()
      aliases[alias] = r.string()
  return header, variables, aliases


def read(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(header, {name: float32 array, or int32 for integer settings}): int8/int16 weights
  dequantised with their `*_scale` companions (which are then left out), float16/bfloat16
  widened to float32, aliases resolved to their targets' arrays."""
  header, raw, aliases = read_raw(path)
  out = {}
  for name, value in raw.items():
    if name.endswith('_scale') and name[:-len('_scale')] in raw:
      continue
    scale = raw.get(name + '_scale')
    if value.dtype in (np.int8, np.int16) and scale is not None and value.ndim >= 1:
      scale = np.asarray(scale, np.float32)
      if scale.ndim == 1:   # int8: one scale per output row (axis 0)
        scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
      out[name] = value.astype(np.float32) / scale
    elif value.dtype in (np.float16, np.float32):
      out[name] = value.astype(np.float32)
    else:
      out[name] = value
  for alias, target in aliases.items():
    if target not in out:
      raise UserError(f'{path}: alias {alias!r} names a missing variable {target!r}')
    out[alias] = out[target]
  return header, out


_TYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
             np.dtype(np.int32): 3, np.dtype(np.float16): 4}


def write(path: str, spec: str, revision: int, variables: dict[str, np.ndarray],
          aliases: dict[str, str] | None = None) -> None:
  """Writes a model.bin of binary version 6 as CTranslate2's `ModelSpec._serialize` does:
  variables sorted by name, then the aliases (alias -> the name of a written variable).

  Args:
    path: the file to write.
    spec: the spec name, e.g. 'TransformerSpec'.
    revision: the spec revision CTranslate2's loader expects for that name.
    variables: name -> array of float32/float16/int8/int16/int32 (a scalar: rank 0; a bool
      setting as int8, as the spec writer stores it).
    aliases: alias -> target variable name.
  """
  aliases = dict(aliases or {})
  for alias, target in aliases.items():
    if target not in variables or alias in variables:
      raise ValueError(f'alias {alias!r} -> {target!r}: the target must be a variable and '
                       'the alias must not be one')
  out = [struct.pack('<I', MAX_VERSION), _string(spec), struct.pack('<I', revision),
         struct.pack('<I', len(variables))]
  for name in sorted(variables):
    value = np.asarray(variables[name])   # (ascontiguousarray would make a scalar 1-d)
    if value.dtype not in _TYPE_IDS:
      raise ValueError(f'{name}: dtype {value.dtype} has no CTranslate2 type id')
    out += [_string(name), struct.pack('<B', value.ndim),
            struct.pack(f'<{value.ndim}I', *value.shape),
            struct.pack('<BI', _TYPE_IDS[value.dtype], value.nbytes),
            value.astype(value.dtype.newbyteorder('<')).tobytes()]
  out.append(struct.pack('<I', len(aliases)))
  for alias in sorted(aliases):
    out += [_string(alias), _string(aliases[alias])]
  with open(path, 'wb') as f:
    f.writelines(out)


def _string(text: str) -> bytes:
  raw = text.encode('utf-8') + b'\0'
  return struct.pack('<H', len(raw)) + raw
