"""Checkpoints with orbax: the last few by step, and the best by a validation metric.

  DIR/checkpoints/<step>/  kept: the last `keep_checkpoints` (saved asynchronously)
  DIR/best/<step>/         kept: one, the best so far by the task's best_metric
Each holds the sharded TrainState plus a small JSON of run metadata. Every process takes
part in saving and restoring (orbax writes each process's shards); restoring onto a different
mesh works because the target shardings come from the abstract state, not the file.

Damage is detected, not trusted away: once orbax has committed a checkpoint, process 0 writes
`<step>/MANIFEST.json`, the size and SHA-256 of every file in it. Restoring checks the newest
checkpoint against its manifest (a missing file, a different size or hash) and, if orbax
cannot read it either, names it in one warning line and falls back to the next newest. A
checkpoint without a manifest (the run died between commit and manifest) is tried as it is.
Training moves a damaged checkpoint aside to `<step>.damaged` (kept, never deleted), so the
resumed run can save that step again.
"""
import hashlib
import json
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from seq2seq_jax.errors import UserError

MANIFEST = 'MANIFEST.json'


def _manager(path: str, keep: int, read_only: bool) -> ocp.CheckpointManager:
  if read_only:  # eval / predict: never writes (and orbax warns if given saving options)
    options = ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0,
                                           create=False)
  else:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True)
  return ocp.CheckpointManager(path, options=options)


def _files(step_dir: str) -> dict[str, tuple[int, str]]:
  """{relative path: (size, sha256)} of every file under step_dir but the manifest."""
  out = {}
  for root, _, names in os.walk(step_dir):
    for name in names:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel.startswith(MANIFEST):  # the manifest itself, or its temporary file
        continue
      digest = hashlib.sha256()
      with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
          digest.update(block)
      out[rel] = (os.path.getsize(path), digest.hexdigest())
  return out


def write_manifest(step_dir: str) -> None:
  """Records the committed checkpoint's files (written atomically)."""
  files = _files(step_dir)
  tmp = os.path.join(step_dir, MANIFEST + '.tmp')
  with open(tmp, 'w') as f:
    json.dump({k: list(v) for k, v in sorted(files.items())}, f)
  os.replace(tmp, os.path.join(step_dir, MANIFEST))


def damage(step_dir: str) -> str | None:
  """What is wrong with a checkpoint directory by its manifest; None if intact or unknown."""
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      want = {k: tuple(v) for k, v in json.load(f).items()}
  except (OSError, ValueError):
    return 'its manifest is unreadable'
  have = _files(step_dir)
  for rel, (size, digest) in sorted(want.items()):
    if rel not in have:
      return f'{rel} is missing'
    if have[rel][0] != size:
      return f'{rel} has {have[rel][0]} bytes, {size} were written'
    if have[rel][1] != digest:
      return f'{rel} does not match its checksum'
  return None


class Checkpointer:
  """The run's two checkpoint managers behind one small interface."""

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
    self.workdir = os.path.abspath(workdir)
    self.read_only = read_only
    self.last = _manager(os.path.join(self.workdir, 'checkpoints'), keep, read_only)
    self.best = _manager(os.path.join(self.workdir, 'best'), 1, read_only)

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def best_step(self) -> int | None:
    return self.best.latest_step()

  def _dir(self, mngr: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(mngr.directory), str(step))

  def save(self, step: int, state: Any, meta: dict, best: bool = False) -> None:
    """Starts an asynchronous save; returns before the bytes are on disk."""
    mngr, other = (self.best, self.last) if best else (self.last, self.best)
    if step in mngr.all_steps():
      return
    if jax.process_count() > 1:
      # orbax keys its cross-process barriers by one process-wide operation counter, which a
      # save in flight on one manager can read after a save on the other bumped it: the
      # processes then wait at different barriers until the coordinator aborts them (seen in
      # CI). Saves of the two managers therefore never overlap when there are several processes.
      other.wait_until_finished()
    self._write_manifests(mngr)  # of saves that committed since
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            meta=ocp.args.JsonSave(meta)))

  def _write_manifests(self, mngr: ocp.CheckpointManager) -> None:
    """Manifests for every committed checkpoint that has none (process 0 writes them)."""
    if self.read_only or jax.process_index() != 0:
      return
    pending = mngr.is_saving_in_progress()
    steps = mngr.all_steps()
    for step in steps:
      if pending and step == max(steps):
        continue  # may still be being written
      d = self._dir(mngr, step)
      if os.path.isdir(d) and not os.path.exists(os.path.join(d, MANIFEST)):
        write_manifest(d)

  def latest_verified_step(self) -> int | None:
    """The newest checkpoint whose manifest vouches for it (after finishing pending saves)."""
    self.wait()
    for step in sorted(self.last.all_steps(), reverse=True):
      d = self._dir(self.last, step)
      if os.path.exists(os.path.join(d, MANIFEST)) and damage(d) is None:
        return step
    return None

  def restore(self, abstract_state: Any, step: int | None = None,
              best: bool = False) -> tuple[Any, dict]:
    """Restores (state, meta) of the newest intact checkpoint (or of `step`) into the
    shardings carried by `abstract_state`.

    Raises:
      UserError: no checkpoint, no intact one, or one whose arrays do not fit the
        configured model.
    """
    mngr = self.best if best else self.last
    steps = [step] if step is not None else sorted(mngr.all_steps(), reverse=True)
    if not steps:
      raise UserError(f'no checkpoint in {mngr.directory}')
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), abstract_state)
    for s in steps:
      d = self._dir(mngr, s)
      problem = damage(d)
      if problem is None:
        try:
          out = mngr.restore(s, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
          return out.state, dict(out.meta)
        except (ValueError, KeyError, TypeError) as e:
          if os.path.exists(os.path.join(d, MANIFEST)):  # intact bytes: a different model
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise UserError(f'checkpoint {d} does not match the configured model/optimizer '
                            f'({first}); use another --workdir') from None
          problem = f'orbax cannot read it ({type(e).__name__})'
        except Exception as e:  # pylint: disable=broad-except
          problem = f'orbax cannot read it ({type(e).__name__}: {str(e)[:120]})'
      logging.warning('checkpoint %s is damaged (%s); skipping it', d, problem)
      if jax.process_index() == 0:
        print(f'warning: checkpoint {d} is damaged ({problem}); skipping it', flush=True)
      self._set_aside(mngr, s)
    raise UserError(f'no intact checkpoint in {mngr.directory} (nothing was deleted)')

  def _set_aside(self, mngr: ocp.CheckpointManager, step: int) -> None:
    """Training: renames a damaged checkpoint to <step>.damaged, so the step can be saved
    again; its bytes stay for inspection. Read-only modes leave it where it is."""
    if self.read_only:
      return
    if jax.process_index() == 0:
      d = self._dir(mngr, step)
      os.replace(d, d + '.damaged')
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
    mngr.reload()

  def wait(self) -> None:
    """Waits for pending saves and records the manifests of everything committed."""
    self.last.wait_until_finished()
    self.best.wait_until_finished()
    self._write_manifests(self.last)
    self._write_manifests(self.best)

  def close(self) -> None:
    self.last.close()
    self.best.close()
