"""The workdir's bookkeeping: one training run per workdir (a lock), its config.json, and
refusing checkpoints of another model."""
import fcntl
import json
import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from seq2seq_jax import config_migration
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import frontends
from seq2seq_jax.models import model_defaults
from seq2seq_jax.trainer.checkpoint import Checkpointer


def check(config, workdir: str, ckpt: Checkpointer, fix: str = 'use a new --workdir') -> None:
  """A workdir with checkpoints must belong to the same task and model (`fix`: what the
  refusal tells the user to do)."""
  path = os.path.join(workdir, 'config.json')
  if ckpt.latest_step() is None or not os.path.exists(path):
    return
  with open(path) as f:
    saved = config_migration.migrate(json.load(f))   # a run of the old flat frontend fields
  current = json.loads(config.to_json_best_effort())
  for key in ('task', 'model'):
    old, new = saved.get(key), current.get(key)
    if (key == 'model' and isinstance(old, dict) and isinstance(new, dict)
        and old.get('name') == new.get('name')):
      # A setting that one side leaves out has the model's default (e.g. a run trained
      # before the setting existed), and so has a frontend setting.
      defaults = model_defaults(str(new.get('name')))
      old, new = {**defaults, **old}, {**defaults, **new}
      if 'frontend' in defaults:
        old['frontend'], new['frontend'] = (_frontend_settings(x['frontend']) for x in (old, new))
    if old != new:
      if isinstance(old, dict) and isinstance(new, dict):
        diffs = [f'{key}.{k}: {old.get(k)!r} in {workdir} vs {new.get(k)!r}'
                 for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
      else:
        diffs = [f'{key}: {old!r} vs {new!r}']
      raise UserError(f'{workdir} holds checkpoints of a different model ({diffs[0]}); '
                      f'{fix} (nothing was changed)')


def _frontend_settings(spec: Any) -> Any:
  """A frontend spec with its defaults filled in, as JSON holds it (tuples as lists)."""
  try:
    return json.loads(json.dumps(frontends.resolved(spec)))
  except (UserError, TypeError):   # an unknown frontend: compared as it is
    return spec


def write_json(path: str, obj: Any) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def lock(workdir: str):
  """One training run per workdir: an exclusive flock on DIR/.lock, held by process 0 for
  the whole run. The kernel drops it when the process dies (SIGKILL, reboot), so a stale
  file never blocks the next run; eval and predict do not take it.

  Returns:
    The open lock file (keep it open), or None on other processes.

  Raises:
    UserError: another live run holds the lock (on every process).
  """
  holder = None
  if (jax.process_index() == 0):
    holder = open(os.path.join(workdir, '.lock'), 'a+')
    try:
      fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
      ok = True
    except BlockingIOError:
      holder.seek(0)
      pid = holder.read().strip() or '?'
      holder.close()
      holder, ok = None, False
  if jax.process_count() > 1:
    ok = bool(multihost_utils.broadcast_one_to_all(np.int32(ok if (jax.process_index() == 0) else 0)))
  if not ok:
    who = f' (pid {pid})' if (jax.process_index() == 0) else ''
    raise UserError(f'{workdir} is in use by another training run{who}; wait for it or use '
                    'another --workdir (nothing was changed)')
  return holder


def make(workdir: str) -> str:
  workdir = os.path.abspath(workdir)
  if (jax.process_index() == 0):
    try:
      os.makedirs(workdir, exist_ok=True)
    except OSError as e:
      raise UserError(f'cannot create --workdir {workdir}: {e.strerror}') from None
  multihost_utils.sync_global_devices('workdir')
  return workdir
