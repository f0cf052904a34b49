"""Checkpoints with orbax: the last few by step, and the best by a validation metric.

  DIR/checkpoints/<step>/  kept: the last `keep_checkpoints` (saved asynchronously)
  DIR/best/<step>/         kept: one, the best so far by the task's best_metric
Each holds the sharded TrainState plus a small JSON of run metadata. Every process takes
part in saving and restoring (orbax writes each process's shards); restoring onto a different
mesh works because the target shardings come from the abstract state, not the file.

Damage is detected, not trusted away. The manifest, `<step>/MANIFEST.json` (the size and
SHA-256 of every data file), is part of committing a checkpoint: process 0 writes it into
orbax's temporary directory after all the bytes are written and before orbax renames the
directory into place, so every committed checkpoint of this version has one. (On gs://,
where orbax writes the step directory in place and commits it by writing commit_success.txt,
the manifest goes into the step directory just before that file.) Restoring tries
the verified checkpoints (manifest present and matching) newest first; a damaged one is named
in one warning line and skipped. A checkpoint without a manifest (a crash between commit and
manifest in an older version, or copied in by hand) is unverified: it is skipped while a
verified one exists and used only when none does, and then only if every array it holds is
finite; it is never given a manifest afterwards. Training moves a skipped checkpoint aside to
`<step>.damaged` / `<step>.unverified` (kept, never deleted), so the resumed run can save that
step again.

A workdir whose checkpoints are all unusable is refused (`no intact checkpoint ...`), also on
every later run: `set_aside_steps` sees the kept copies, and only an explicit
`--restart_from_scratch` starts over (`start_over`).

Divergence keeps a way back. Each checkpoint is noted healthy or not (`note_health`: its
training loss finite and at most `loss_spike` times the lowest so far); besides the last
`keep_checkpoints`, the manager keeps the newest healthy checkpoint at least `way_back_steps`
older than the newest one (`way_back`), and the oldest healthy one after it (which becomes
the way back as training goes on). A run that hits a NaN names it; `--checkpoint=STEP`
resumes from it (`rewind`: the later checkpoints are set aside as `<step>.before_restart`).
"""
import dataclasses
import hashlib
import json
import logging
import os
import re
import sys
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from seq2seq_jax import paths
from seq2seq_jax.errors import UserError
from seq2seq_jax.trainer.run_files import io_errors

MANIFEST = 'MANIFEST.json'
# Orbax's own bookkeeping in a step directory, rewritten when it commits: not in manifests.
_COMMIT_FILES = ('_CHECKPOINT_METADATA', 'commit_success.txt')
_TMP = '.orbax-checkpoint-tmp'
SET_ASIDE = re.compile(r'^(\d+)\.(damaged|unverified|before_restart)(\.\d+)?$')

NO_INTACT_HOW = ('rerun with --restart_from_scratch to start over from step 0 (the kept '
                 'checkpoints and metrics stay), or use a new --workdir')


def _warn(msg: str) -> None:
  """One line on stderr (predict's stdout is predictions only), process 0 only."""
  if jax.process_index() == 0:
    print(f'warning: {msg}', file=sys.stderr, flush=True)


@dataclasses.dataclass
class _AlsoKeep:
  """An orbax preservation policy: keeps the steps `steps(all steps)` names."""
  steps: Callable[[list[int]], set[int]]

  def should_preserve(self, checkpoints, *, context):
    del context
    keep = self.steps([c.step for c in checkpoints])
    return [c.step in keep for c in checkpoints]


class _QuietReadOnly(logging.Filter):
  """Drops orbax's 'Given directory is read only' warning (absl's logger), which every eval
  and predict would print though reading is all they asked for."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith('Given directory is read only')


def _manager(path: str, keep: int, read_only: bool,
             on_commit: Callable[[], None] | None = None,
             also_keep: Callable[[list[int]], set[int]] | None = None) -> ocp.CheckpointManager:
  if read_only:  # eval / predict: never writes (and orbax warns if given saving options)
    options = ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0,
                                           create=False)
  else:
    policies = [ocp.checkpoint_managers.LatestN(n=keep)]
    if also_keep is not None:
      policies.append(_AlsoKeep(also_keep))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        create=True, enable_async_checkpointing=True,
        async_options=ocp.AsyncOptions(post_finalization_callback=on_commit))
  if not read_only:
    return ocp.CheckpointManager(path, options=options)
  quiet, absl_logger = _QuietReadOnly(), logging.getLogger('absl')
  absl_logger.addFilter(quiet)
  try:
    return ocp.CheckpointManager(path, options=options)
  finally:
    absl_logger.removeFilter(quiet)


def _files(step_dir: str) -> dict[str, tuple[int, str]]:
  """{relative path: (size, sha256)} of every file under step_dir but the manifest."""
  out = {}
  for rel, path in paths.walk_files(step_dir):
    if rel.startswith(MANIFEST) or rel in _COMMIT_FILES:  # the manifest; orbax's commit
      continue
    digest, size = hashlib.sha256(), 0
    with paths.open_file(path, 'rb') as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        digest.update(block)
        size += len(block)
    out[rel] = (size, digest.hexdigest())
  return out


def write_manifest(step_dir: str) -> None:
  """Records the committed checkpoint's files (written atomically)."""
  files = _files(step_dir)
  paths.write_atomic(os.path.join(step_dir, MANIFEST),
                     json.dumps({k: list(v) for k, v in sorted(files.items())}))


def verified(step_dir: str) -> bool:
  return paths.exists(os.path.join(step_dir, MANIFEST))


def damage(step_dir: str) -> str | None:
  """What is wrong with a checkpoint directory by its manifest; None if intact or unknown
  (no manifest: see `verified`)."""
  path = os.path.join(step_dir, MANIFEST)
  if not paths.exists(path):
    return None
  try:
    want = {k: tuple(v) for k, v in json.loads(paths.read_text(path)).items()}
  except (OSError, ValueError):
    return 'its manifest is unreadable'
  have = _files(step_dir)
  for rel, (size, digest) in sorted(want.items()):
    if rel in _COMMIT_FILES:  # listed by manifests before they left orbax's bookkeeping out
      continue
    if rel not in have:
      return f'{rel} is missing'
    if have[rel][0] != size:
      return f'{rel} has {have[rel][0]} bytes, {size} were written'
    if have[rel][1] != digest:
      return f'{rel} does not match its checksum'
  return None


def all_finite(tree: Any) -> bool:
  """Whether every floating-point array of a (restored) pytree is finite."""
  ok = [jax.numpy.all(jax.numpy.isfinite(x)) for x in jax.tree.leaves(tree)
        if hasattr(x, 'dtype') and jax.numpy.issubdtype(x.dtype, jax.numpy.floating)]
  return bool(np.all(jax.device_get(ok))) if ok else True


class Checkpointer:
  """The run's two checkpoint managers behind one small interface."""

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False,
               way_back_steps: int = 0):
    self.workdir = paths.resolve(workdir)
    self.read_only = read_only
    self._saving: dict[str, int] = {}      # the step each manager is committing
    self._saved: set[str] = set()          # step dirs this run saved (the only ones it seals)
    self.way_back_steps = int(way_back_steps)   # 0: no way back is kept
    self.healthy: dict[int, bool] = {}     # step -> its loss was finite and below the spike
    self.last = _manager(os.path.join(self.workdir, 'checkpoints'), keep, read_only,
                         lambda: self._seal('checkpoints'),
                         self._way_back_keeps if self.way_back_steps else None)
    self.best = _manager(os.path.join(self.workdir, 'best'), 1, read_only,
                         lambda: self._seal('best'))

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def best_step(self) -> int | None:
    return self.best.latest_step()

  def _dir(self, mngr: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(mngr.directory), str(step))

  # --- the way back after a divergence -------------------------------------------------------
  def note_health(self, step: int, healthy: bool) -> None:
    """Records whether checkpoint `step` (saved or restored) may be a way back."""
    self.healthy[int(step)] = bool(healthy)

  def way_back(self, steps: list[int] | None = None, newest: int | None = None) -> int | None:
    """The newest healthy checkpoint at least way_back_steps before `newest` (by default the
    newest checkpoint), among `steps` (by default the checkpoints on disk)."""
    if not self.way_back_steps:
      return None
    steps = sorted(self.last.all_steps()) if steps is None else sorted(steps)
    if newest is None:
      newest = max(steps, default=0)
    good = [s for s in steps if self.healthy.get(s) and s <= newest - self.way_back_steps]
    return good[-1] if good else None

  def _way_back_keeps(self, steps: list[int]) -> set[int]:
    """What the preservation policy keeps besides the newest: the way back and the oldest
    healthy checkpoint after it (the next way back)."""
    back = self.way_back(steps)
    after = [s for s in sorted(steps) if self.healthy.get(s) and (back is None or s > back)]
    return {s for s in (back, after[0] if after else None) if s is not None}

  def rewind(self, step: int) -> list[str]:
    """Training from an earlier checkpoint (--checkpoint=STEP): the checkpoints after it, and
    a best one after it, are set aside as <step>.before_restart (kept). Returns their paths."""
    steps = self.last.all_steps()
    if step not in steps:
      raise UserError(f'--checkpoint={step}: {self.workdir}/checkpoints has no step {step} '
                      f'(it has {", ".join(map(str, sorted(steps))) or "none"})')
    moved = []
    for mngr in (self.last, self.best):
      for s in sorted(mngr.all_steps()):
        if s > step:
          moved.append(self._dir(mngr, s))
          self._set_aside(mngr, s, 'before_restart')
    return moved

  def set_aside_steps(self) -> list[str]:
    """The checkpoints of DIR/checkpoints that earlier runs moved aside as unusable."""
    names = paths.listdir(os.path.join(self.workdir, 'checkpoints'))
    return sorted((n for n in names if SET_ASIDE.match(n) and 'restart' not in n),
                  key=lambda n: int(n.split('.')[0]))

  def start_over(self) -> list[str]:
    """--restart_from_scratch: moves the best checkpoint aside too (`<step>.before_restart`),
    so that the new run's best is its own. Returns what it moved."""
    moved = []
    for mngr in (self.best,):
      for step in mngr.all_steps():
        self._set_aside(mngr, step, 'before_restart')
        moved.append(self._dir(mngr, step))
    return moved

  def save(self, step: int, state: Any, meta: dict, best: bool = False) -> None:
    """Starts an asynchronous save; returns before the bytes are on disk. The manifest is
    written as part of the commit (`_seal`)."""
    mngr, other = (self.best, self.last) if best else (self.last, self.best)
    if step in mngr.all_steps():
      return
    if jax.process_count() > 1:
      # orbax keys its cross-process barriers by one process-wide operation counter, which a
      # save in flight on one manager can read after a save on the other bumped it: the
      # processes then wait at different barriers until the coordinator aborts them (seen in
      # CI). Saves of the two managers therefore never overlap when there are several processes.
      other.wait_until_finished()
    with io_errors(f'saving checkpoint {step}', str(mngr.directory)):
      mngr.wait_until_finished()  # one save per manager in flight: _saving names it
      self._write_manifests(mngr)
      self._saving[os.path.basename(str(mngr.directory))] = step
      self._saved.add(self._dir(mngr, step))
      mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                              meta=ocp.args.JsonSave(meta)))

  def _seal(self, which: str) -> None:
    """orbax's post-finalization callback: every process's bytes are written, the directory
    not yet renamed into place. Process 0 writes the manifest into it."""
    if jax.process_index() != 0:
      return
    step = self._saving[which]
    tmp = os.path.join(self.workdir, which, f'{step}{_TMP}')
    if paths.is_remote(tmp):
      # gs://: an object store has no atomic rename, so orbax writes the step directory in
      # place and commits it by writing commit_success.txt after this callback: the manifest
      # goes into the step directory itself, still before the commit.
      final = os.path.join(self.workdir, which, str(step))
      if paths.isdir(final):
        write_manifest(final)
    elif os.path.isdir(tmp):   # (a filesystem where orbax commits in place: _write_manifests)
      write_manifest(tmp)

  def _write_manifests(self, mngr: ocp.CheckpointManager) -> None:
    """Manifests for checkpoints this run saved whose commit wrote none (process 0)."""
    if self.read_only or jax.process_index() != 0 or mngr.is_saving_in_progress():
      return
    for step in mngr.all_steps():
      d = self._dir(mngr, step)
      if d in self._saved and paths.isdir(d) and not verified(d):
        write_manifest(d)

  def latest_verified_step(self) -> int | None:
    """The newest checkpoint whose manifest vouches for it (after finishing pending saves)."""
    self.wait()
    for step in sorted(self.last.all_steps(), reverse=True):
      d = self._dir(self.last, step)
      if verified(d) and damage(d) is None:
        return step
    return None

  def restore(self, abstract_state: Any, step: int | None = None,
              best: bool = False) -> tuple[Any, dict]:
    """Restores (state, meta) of the newest verified checkpoint (or of `step`) into the
    shardings carried by `abstract_state`; with none verified, the newest unverified one
    whose arrays are all finite.

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

    def load(s):
      out = mngr.restore(s, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
      return out.state, dict(out.meta)

    unverified = [s for s in steps if not verified(self._dir(mngr, s))]
    for s in steps:
      d = self._dir(mngr, s)
      if s in unverified:
        continue
      problem = damage(d)
      if problem is None:
        try:
          out = load(s)
        except (ValueError, KeyError, TypeError) as e:  # intact bytes: a different model
          first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
          raise UserError(f'checkpoint {d} does not match the configured model/optimizer '
                          f'({first}); use another --workdir') from None
        except Exception as e:  # pylint: disable=broad-except
          problem = f'orbax cannot read it ({type(e).__name__}: {str(e)[:120]})'
        else:
          for u in (u for u in unverified if u > s):  # newer but unchecked: not trusted
            _warn(f'checkpoint {self._dir(mngr, u)} has no manifest (never verified); '
                  f'using the verified step {s}')
            self._set_aside(mngr, u, 'unverified')
          return out
      _warn(f'checkpoint {d} is damaged ({problem}); skipping it')
      self._set_aside(mngr, s, 'damaged')
    for s in unverified:  # no verified one: an unverified one, if it reads and is finite
      d = self._dir(mngr, s)
      try:
        state, meta = load(s)
        problem = None if all_finite(state) else 'it holds non-finite numbers'
      except Exception as e:  # pylint: disable=broad-except
        problem = f'orbax cannot read it ({type(e).__name__})'
      if problem is None:
        _warn(f'checkpoint {d} has no manifest; using it (it reads and its arrays are '
              'finite)')
        return state, meta
      _warn(f'checkpoint {d} has no manifest and is damaged ({problem}); skipping it')
      self._set_aside(mngr, s, 'damaged')
    how = '(nothing was deleted)' if self.read_only else (
        f'(the damaged ones are kept as <step>.damaged); {NO_INTACT_HOW}')
    raise UserError(f'no intact checkpoint in {mngr.directory} {how}')

  def _set_aside(self, mngr: ocp.CheckpointManager, step: int, why: str) -> None:
    """Training: renames a checkpoint to <step>.<why>, so the step can be saved again; its
    bytes stay for inspection. Read-only modes leave it where it is."""
    if self.read_only:
      return
    if jax.process_index() == 0:
      d = self._dir(mngr, step)
      dst, n = f'{d}.{why}', 1
      while paths.exists(dst):   # the same step set aside before: keep both
        n += 1
        dst = f'{d}.{why}.{n}'
      with io_errors(f'moving checkpoint {step} aside', d):
        paths.rename(d, dst)   # (gs://: copied, then deleted)
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
    mngr.reload()

  def check_best(self) -> bool:
    """Training, on resume: sets a damaged best checkpoint aside. True if it did (the run
    then saves a new best at its next evaluation)."""
    step = self.best_step()
    if step is None or self.read_only:
      return False
    d = self._dir(self.best, step)
    problem = damage(d)
    if problem is None:
      return False
    _warn(f'best checkpoint {d} is damaged ({problem}); it is set aside and the next '
          'evaluation saves a new best')
    self._set_aside(self.best, step, 'damaged')
    return True

  def wait(self) -> None:
    """Waits for pending saves and records the manifests of everything committed."""
    for mngr in (self.last, self.best):
      with io_errors('saving a checkpoint', str(mngr.directory)):
        mngr.wait_until_finished()
        self._write_manifests(mngr)

  def close(self) -> None:
    self.last.close()
    self.best.close()
