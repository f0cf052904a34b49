"""Warm start: a fresh run begins from another run's parameters (`--config.init_from=DIR`).

For continuing a trained model under a changed configuration: See et al. 2017 train the
pointer-generator and then add coverage for a final phase (a new parameter, w_c, and a new
loss), and fine-tuning generally starts from a trained model. The new run

  - reads DIR's best checkpoint (else its newest) with orbax, without needing DIR's config,
    checked against its manifest as a resume is (a damaged one is skipped);
  - copies every parameter whose path exists in both models with the same shape; parameters
    only the new model has keep their initial values; parameters only DIR has are left out;
    a path whose shape differs is an error (it would not be the same model);
  - uses DIR's vocabulary files (DIR/vocab.txt, DIR/spm/), which the ids of its parameters
    refer to;
  - starts at step 0 with a fresh optimizer state and its own schedule and train_steps.

Only a fresh workdir is warm-started: a workdir with checkpoints resumes from them as always
(so an interrupted warm-started run continues where it stopped).
"""
import os
from typing import Any

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp

from seq2seq_jax import paths
from seq2seq_jax.trainer import checkpoint as checkpoint_lib
from seq2seq_jax.trainer import run_files
from seq2seq_jax.trainer.checkpoint import Checkpointer
from seq2seq_jax.errors import UserError

VOCABULARY_FILES = ('vocab.txt', 'spm')


def source_checkpoint(run_dir: str) -> str:
  """The state directory of run_dir's best checkpoint, else its newest, checked as a resume
  checks them (checkpoint.py): the first verified and intact one; with none verified, the
  newest unverified one (load_into then requires finite parameters). UserError if none."""
  if not paths.isdir(os.path.join(run_dir, 'checkpoints')):
    raise UserError(f'config.init_from: no checkpoints in {run_dir}')
  ckpt = Checkpointer(run_dir, read_only=True)
  try:
    candidates = [('best', s) for s in sorted(ckpt.best.all_steps(), reverse=True)]
    candidates += [('checkpoints', s) for s in sorted(ckpt.last.all_steps(), reverse=True)]
  finally:
    ckpt.close()
  unverified = []
  for sub, step in candidates:
    d = os.path.join(run_dir, sub, str(step))
    if not checkpoint_lib.verified(d):
      unverified.append(d)
      continue
    problem = checkpoint_lib.damage(d)
    if problem is None:
      return os.path.join(d, 'state')
    run_files.warn(f'config.init_from: checkpoint {d} is damaged ({problem}); skipping it')
  if unverified:
    return os.path.join(unverified[0], 'state')
  raise UserError(f'config.init_from: no intact checkpoint in {run_dir}')


def copy_vocabulary(run_dir: str, workdir: str) -> list[str]:
  """Copies run_dir's vocabulary files into workdir (those it does not have yet)."""
  copied = []
  for name in VOCABULARY_FILES:
    src, dst = os.path.join(run_dir, name), os.path.join(workdir, name)
    if paths.exists(src) and not paths.exists(dst) and jax.process_index() == 0:
      paths.copy_tree(src, dst)
      copied.append(name)
  return copied


def load_into(params: Any, run_dir: str,
              path: str | None = None) -> tuple[Any, dict[str, list[str]]]:
  """params (sharded, freshly initialised) with every parameter run_dir's checkpoint shares.

  Returns:
    (the new params, {'loaded': paths, 'new': paths kept at their initial values,
    'left_out': paths only run_dir has}).

  Raises:
    UserError: no checkpoint, an unreadable one, or a shared path whose shape differs.
  """
  path = path or source_checkpoint(paths.resolve(run_dir))
  # Every process reads whole arrays onto one local device, whatever mesh saved them.
  one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  try:
    ck = ocp.StandardCheckpointer()
    tree = ck.metadata(path).item_metadata
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one),
                            tree)
    restored = ck.restore(path, abstract)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'config.init_from: cannot read {path}: {type(e).__name__}: '
                    f'{str(e)[:200]}') from None
  if (not checkpoint_lib.verified(os.path.dirname(path))
      and not checkpoint_lib.all_finite(restored['params'])):
    raise UserError(f'config.init_from: {path} has no manifest and holds non-finite '
                    'parameters (damaged); nothing was loaded')
  source = flax.traverse_util.flatten_dict(restored['params'], sep='/')
  target = flax.traverse_util.flatten_dict(params, sep='/')
  out, report = {}, {'loaded': [], 'new': [], 'left_out': sorted(set(source) - set(target))}
  for key, x in target.items():
    if key not in source:
      out[key] = x
      report['new'].append(key)
      continue
    value = np.asarray(source[key])
    if value.shape != x.shape:
      raise UserError(f'config.init_from: {key} has shape {value.shape} in {path} but '
                      f'{x.shape} in this model')
    value = value.astype(x.dtype)
    out[key] = jax.make_array_from_callback(x.shape, x.sharding, lambda idx, v=value: v[idx])
    report['loaded'].append(key)
  return flax.traverse_util.unflatten_dict(out, sep='/'), report
