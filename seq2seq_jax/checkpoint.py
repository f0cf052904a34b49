"""Checkpoints with orbax: the last few by step, and the best by a validation metric.

  DIR/checkpoints/<step>/  kept: the last `keep_checkpoints` (saved asynchronously)
  DIR/best/<step>/         kept: one, the best so far by the task's best_metric
Each holds the sharded TrainState plus a small JSON of run metadata. Every process takes
part in saving and restoring (orbax writes each process's shards); restoring onto a different
mesh works because the target shardings come from the abstract state, not the file.
"""
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from seq2seq_jax.errors import UserError


def _manager(path: str, keep: int, read_only: bool) -> ocp.CheckpointManager:
  if read_only:  # eval / predict: never writes (and orbax warns if given saving options)
    options = ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0,
                                           create=False)
  else:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True)
  return ocp.CheckpointManager(path, options=options)


class Checkpointer:
  """The run's two checkpoint managers behind one small interface."""

  def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
    self.workdir = os.path.abspath(workdir)
    self.last = _manager(os.path.join(self.workdir, 'checkpoints'), keep, read_only)
    self.best = _manager(os.path.join(self.workdir, 'best'), 1, read_only)

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def best_step(self) -> int | None:
    return self.best.latest_step()

  def save(self, step: int, state: Any, meta: dict, best: bool = False) -> None:
    """Starts an asynchronous save; returns before the bytes are on disk."""
    mngr = self.best if best else self.last
    if step in mngr.all_steps():
      return
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            meta=ocp.args.JsonSave(meta)))

  def restore(self, abstract_state: Any, step: int | None = None,
              best: bool = False) -> tuple[Any, dict]:
    """Restores (state, meta) into the shardings carried by `abstract_state`.

    Raises:
      UserError: no checkpoint, or one whose arrays do not fit the configured model.
    """
    mngr = self.best if best else self.last
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise UserError(f'no checkpoint in {mngr.directory}')
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), abstract_state)
    try:
      out = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
      raise UserError(f'checkpoint {mngr.directory}/{step} does not match the configured '
                      f'model/optimizer ({first}); use another --workdir') from None
    return out.state, dict(out.meta)

  def wait(self) -> None:
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.last.close()
    self.best.close()
