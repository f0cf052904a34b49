"""Initial weights for a model's frontend: `config.model.frontend_init = 'weights.npz'`.

Show-Attend-Tell and the captioners read an annotation grid from a conv net; the paper's comes
pretrained on ImageNet. A user with such weights (or a frontend trained in another run) puts
them in an .npz whose keys are the parameter paths under the model's 'frontend' module
('conv_0/kernel', 'conv_0/bias', ..., 'project/kernel'; shapes as `--mode=info`'s model
builds them) and sets model.frontend_init: a fresh run starts from them (a resumed run
restores its checkpoint as always). `save` writes such a file from a params tree.
"""
import os
from typing import Any

import flax
import jax
import numpy as np

from seq2seq_jax.errors import UserError

MODULE = 'frontend'


def save(params: Any, path: str) -> None:
  """Writes params[MODULE] (a model's parameter tree) to `path` (.npz), atomically."""
  flat = flax.traverse_util.flatten_dict(jax.device_get(params[MODULE]), sep='/')
  tmp = path + '.tmp.npz'
  np.savez(tmp, **{k: np.asarray(v) for k, v in flat.items()})
  os.replace(tmp, path)


def load_into(params: Any, path: str) -> Any:
  """params with the frontend's leaves replaced by the file's (each keeps its sharding).

  Raises:
    UserError: no such file, no frontend in the model, or keys / shapes that differ.
  """
  if not os.path.isfile(path):
    raise UserError(f'model.frontend_init: {path} not found')
  if MODULE not in params:
    raise UserError(f'model.frontend_init: this model has no {MODULE!r} module '
                    "(model.frontend 'tokens'?)")
  try:
    with np.load(path) as f:
      given = {k: f[k] for k in f.files}
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'model.frontend_init: cannot read {path}: {type(e).__name__}: {e}') from None
  flat = flax.traverse_util.flatten_dict(params[MODULE], sep='/')
  missing, extra = sorted(set(flat) - set(given)), sorted(set(given) - set(flat))
  if missing or extra:
    raise UserError(f'model.frontend_init: {path} does not match the frontend: missing '
                    f'{missing or "none"}, unexpected {extra or "none"}')
  wrong = [f'{k} {given[k].shape} != {tuple(v.shape)}' for k, v in flat.items()
           if given[k].shape != tuple(v.shape)]
  if wrong:
    raise UserError(f'model.frontend_init: shapes differ: {"; ".join(wrong)}')
  new = {k: jax.device_put(given[k].astype(v.dtype), v.sharding) for k, v in flat.items()}
  return {**params, MODULE: flax.traverse_util.unflatten_dict(new, sep='/')}
