"""The workdir's bookkeeping: one training run per workdir (a lock), its config.json, and
refusing checkpoints of another model."""
import fcntl
import json
import os
import shutil
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from seq2seq_jax import config_migration
from seq2seq_jax import paths
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import frontends
from seq2seq_jax.models import model_defaults
from seq2seq_jax.trainer import run_files
from seq2seq_jax.trainer import checkpoint as checkpoint_lib
from seq2seq_jax.trainer import warm_start
from seq2seq_jax.trainer.checkpoint import Checkpointer


def check(config, workdir: str, ckpt: Checkpointer, fix: str = 'use a new --workdir') -> None:
  """A workdir with checkpoints must belong to the same task and model (`fix`: what the
  refusal tells the user to do)."""
  path = os.path.join(workdir, 'config.json')
  if ckpt.latest_step() is None:
    return
  saved = run_files.read_json(path)   # cut off (a crash mid-write): warned, not checked
  if saved is None:
    return
  saved = config_migration.migrate(saved)   # a run of the old flat frontend fields
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
  """A frontend spec with its defaults filled in, as JSON holds it (tuples as lists), less
  its training-only settings."""
  try:
    out = json.loads(json.dumps(frontends.resolved(spec)))
  except (UserError, TypeError):   # an unknown frontend: compared as it is
    return spec
  if isinstance(out, dict):
    for k in frontends.TRAINING_ONLY:
      out.pop(k, None)
  return out


def write_json(path: str, obj: Any) -> None:
  """Writes a run's JSON file atomically (a failed write leaves the old one)."""
  with run_files.io_errors(f'writing {os.path.basename(path)}', path):
    paths.write_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


def refuse_silent_restart(ckpt: Checkpointer, restart: bool) -> None:
  """A workdir whose checkpoints were all set aside as unusable never restarts from step 0
  by itself: UserError, unless the user asked for it (--restart_from_scratch)."""
  if restart or ckpt.latest_step() is not None:
    return
  aside = ckpt.set_aside_steps()
  if aside:
    raise UserError(f'no intact checkpoint in {ckpt.workdir}/checkpoints (kept aside: '
                    f'{", ".join(aside)}); {checkpoint_lib.NO_INTACT_HOW}')


def restore(ckpt: Checkpointer, abstract_state: Any, restart: bool) -> tuple[Any, dict] | None:
  """(state, meta) of the newest usable checkpoint; None for a run that starts at step 0.

  With restart (--restart_from_scratch), a workdir with no usable checkpoint starts over:
  the unusable ones stay set aside, the best is moved aside too. A workdir with a usable
  checkpoint resumes as always, so the flag is safe in a preemptible job's command.
  """
  if ckpt.latest_step() is not None:
    try:
      return ckpt.restore(abstract_state)
    except UserError:
      if not restart or ckpt.latest_step() is not None:
        raise
  if restart and ckpt.set_aside_steps():
    moved = ckpt.start_over()
    if jax.process_index() == 0:
      print(f'--restart_from_scratch: starting over at step 0; the unusable checkpoints stay '
            f'in {ckpt.workdir}/checkpoints as {", ".join(ckpt.set_aside_steps())}'
            + (f'; the best moved aside: {", ".join(moved)}' if moved else ''), flush=True)
  return None


def lock(workdir: str):
  """One training run per workdir: an exclusive flock on DIR/.lock, held by process 0 for
  the whole run. The kernel drops it when the process dies (SIGKILL, reboot), so a stale
  file never blocks the next run; eval and predict do not take it.

  An object store (gs://) has no lock that dies with its holder: there nothing is locked,
  process 0 says so on stderr, and keeping to one training job per workdir is the user's.

  Returns:
    The open lock file (keep it open), or None on other processes and remote workdirs.

  Raises:
    UserError: another live run holds the lock (on every process).
  """
  holder = None
  if paths.is_remote(workdir):
    if jax.process_index() == 0:
      run_files.warn(f'{workdir} is on an object store, where a second training run on the '
                     'same workdir cannot be refused: run one training job per workdir')
    return None
  if (jax.process_index() == 0):
    path = os.path.join(workdir, '.lock')
    with run_files.io_errors('taking the workdir lock', path):
      holder = open(path, 'a+')
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
  """Creates the workdir (local or gs://) on process 0; returns it resolved. A remote
  filesystem whose package is missing, or where checkpoints cannot go, is one UserError."""
  workdir = paths.check(workdir, '--workdir', workdir=True)
  if (jax.process_index() == 0):
    try:
      paths.makedirs(workdir)
    except OSError as e:
      raise UserError(f'cannot create --workdir {workdir}: {e.strerror or e}') from None
  multihost_utils.sync_global_devices('workdir')
  return workdir


def task_dir(workdir: str) -> str:
  """Where the task keeps its own files (vocab.txt, spm/, the token cache/): the workdir, or
  for a remote one a local mirror (paths.local_mirror), since SentencePiece and the token
  cache write local files. The vocabulary files the remote workdir holds are copied into the
  mirror (they are the run's truth); one it does not hold is removed from the mirror, so the
  task builds it afresh rather than reuse another run's. The token cache stays local (it
  checks itself against the data files)."""
  if not paths.is_remote(workdir):
    return workdir
  local = paths.local_mirror(workdir)
  os.makedirs(local, exist_ok=True)
  for name in warm_start.VOCABULARY_FILES:
    src, dst = os.path.join(workdir, name), os.path.join(local, name)
    if os.path.isdir(dst):
      shutil.rmtree(dst)
    elif os.path.exists(dst):
      os.remove(dst)
    if paths.exists(src):
      paths.copy_tree(src, dst)
  return local


def keep_vocabulary(workdir: str) -> None:
  """After the task's setup (process 0): a remote workdir gets the vocabulary files that the
  task built in the local mirror and that it does not hold yet (never overwritten)."""
  if not paths.is_remote(workdir):
    return
  local = paths.local_mirror(workdir)
  for name in warm_start.VOCABULARY_FILES:
    src, dst = os.path.join(local, name), os.path.join(workdir, name)
    if os.path.exists(src) and not paths.exists(dst):
      paths.copy_tree(src, dst)


def finished_summary(workdir: str, step: int, train_steps: int) -> dict[str, Any] | None:
  """A finished run rerun with the same command: its summary.json, printed again, if the
  run is at or past train_steps and the summary is of this step; otherwise None."""
  if step < train_steps:
    return None
  summary = run_files.read_json(os.path.join(workdir, 'summary.json'))
  if summary is None or summary.get('steps') != step:
    return None
  if jax.process_index() == 0:
    print(f'{workdir} finished at step {step}; its summary.json stands (nothing was added)',
          flush=True)
    print('SUMMARY ' + json.dumps(summary), flush=True)
  return summary
