"""The training loop's periodic actions, each in one named place, and what they share.

  TrainLoop.log(step)         fetch buffered step metrics, stop on a non-finite loss, progress
                              line and metrics.jsonl (tokens/s, MFU, device memory)
  TrainLoop.evaluate(step)    validation metrics; save the best checkpoint
  TrainLoop.checkpoint(step)  save the step's checkpoint (asynchronously)
  TrainLoop.should_stop()     a SIGTERM / SIGINT has arrived, agreed on by every process (it
                              also abandons a validation evaluation between two batches)

Time is booked where it is spent: `seconds['eval']` (validation and test evaluation),
`seconds['checkpoint']` (the blocking part of saves, waits and manifests) and
`seconds['train']` (the training loop minus both). They are carried in every checkpoint's
metadata, so a resumed run keeps counting, and end up in summary.json.
"""
import contextlib
import math
import signal
import threading
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from seq2seq_jax.trainer import metric_writer
from seq2seq_jax.trainer import throughput
from seq2seq_jax.errors import UserError

SECTIONS = ('train', 'eval', 'checkpoint')


# How many steps the Python loop may dispatch ahead of the device (TrainLoop.record_step):
# enough to keep the device busy, few enough that a stop acts within a step or two.
DISPATCH_AHEAD = 2


class Abandoned(Exception):
  """An evaluation stopped because a stop signal arrived (TrainLoop.evaluate)."""


class StopSignal:
  """Turns SIGTERM / SIGINT into a request to stop after the current step.

  Spot VMs, preemptible TPUs and SLURM send SIGTERM some time before they kill. A second
  signal (of either kind) stops at once: the first one hands both back to the operating
  system's default, which ends the process even while it waits on the device (the
  checkpoints saved so far are committed atomically and stay).
  """

  def __init__(self):
    self.received: str | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    self.received = name
    for sig in self._previous:   # the second signal: the default action, at once
      signal.signal(sig, signal.SIG_DFL)
    if jax.process_index() == 0:
      print(f'{name} received: stopping after this step, with a checkpoint (a second signal '
            'stops at once)', flush=True)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def agreed(self) -> bool:
    """True on every process as soon as any process got a signal, so they all stop at the
    same step (one tiny all-gather per step with several processes)."""
    local = self.received is not None
    if jax.process_count() == 1:
      return local
    flags = multihost_utils.process_allgather(np.array([local], np.int32))
    return bool(np.max(flags))


class TrainLoop:
  """State the periodic actions share; the trainer's loop calls one method per action."""

  def __init__(self, *, run, ckpt, writer, progress, workdir: str, best: float | None,
               seconds: dict[str, float], evaluate: Callable[[Any, str], dict],
               stop: StopSignal, meter=None, loss_spike: float = 2.0,
               low_loss: float | None = None):
    self.run, self.ckpt, self.writer, self.progress = run, ckpt, writer, progress
    self.workdir = workdir
    self.best = best
    self.seconds = {k: float(seconds.get(k, 0.0)) for k in SECTIONS}
    self._evaluate = evaluate
    self.stop = stop
    self.meter = meter  # throughput.Meter: FLOPs per step, the job's peak
    self.flops = 0.0
    self.pending: list[tuple[int, Any]] = []
    self.tokens = 0
    self._started = time.perf_counter()
    self._booked = 0.0  # eval + checkpoint time spent since _started
    # A checkpoint is a way back after a divergence if the training loss logged before it was
    # finite and at most loss_spike times the lowest logged so far (checkpoint.py).
    self.loss_spike = float(loss_spike)
    self.low_loss = low_loss
    self.last_loss: float | None = None

  @contextlib.contextmanager
  def timed(self, section: str) -> Iterator[None]:
    """Books the time of the block to `section` (and not to training)."""
    t = time.perf_counter()
    try:
      yield
    finally:
      dt = time.perf_counter() - t
      self.seconds[section] += dt
      self._booked += dt

  def totals(self) -> dict[str, float]:
    """Seconds per section so far, training being the rest of the loop's wall time."""
    out = dict(self.seconds)
    out['train'] += time.perf_counter() - self._started - self._booked
    return out

  def meta(self, step: int) -> dict:
    """What a checkpoint carries besides the state."""
    return {'step': step, 'best': self.best, 'best_metric': self.run.task.best_metric,
            **{f'{k}_seconds': v for k, v in self.totals().items()}}

  def healthy(self) -> bool:
    """Whether the loss logged last is finite and no spike (at most loss_spike x the lowest)."""
    loss, low = self.last_loss, self.low_loss
    if loss is None or not math.isfinite(loss):
      return False
    return low is None or low <= 0 or loss <= self.loss_spike * low

  def way_back_message(self, nan_step: int) -> str:
    """Where a diverged run can resume from: the newest healthy checkpoint far enough back."""
    if not self.ckpt.way_back_steps:
      return ''
    back = self.ckpt.way_back(newest=nan_step)
    if back is None:
      return (f' No checkpoint at least {self.ckpt.way_back_steps} steps back had a finite '
              f'loss below {self.loss_spike:g}x the lowest (config.way_back_steps, '
              'config.loss_spike).')
    return (f' The way back: checkpoint {back}, at least {self.ckpt.way_back_steps} steps '
            f'before and with a loss below {self.loss_spike:g}x the lowest; resume from it '
            f'with --checkpoint={back} (e.g. with a lower learning rate).')

  def record_step(self, step: int, metrics: Any, tokens: int, flops: float = 0.0) -> None:
    """Buffers a step's metrics (fetched at the next log). The loop may run at most
    DISPATCH_AHEAD steps ahead of the device: otherwise Python queues every step up to the
    next log, and a stop signal waits for all of them."""
    self.pending.append((step, metrics))
    self.tokens += tokens
    self.flops += flops
    if len(self.pending) > DISPATCH_AHEAD:
      jax.block_until_ready(self.pending[-1 - DISPATCH_AHEAD][1])

  # --- the periodic actions -----------------------------------------------------------------
  def log(self, step: int) -> None:
    """Fetches buffered step metrics; stops the run at the first non-finite loss."""
    del step
    if not self.pending:
      return
    fetched = jax.device_get([m for _, m in self.pending])
    for (s, _), m in zip(self.pending, fetched):
      if not np.isfinite(m['loss']):
        with self.timed('checkpoint'):
          good = self.ckpt.latest_verified_step()
        kept = (f'The last verified checkpoint (step {good}) is kept in {self.workdir}'
                if good is not None else f'No verified checkpoint is in {self.workdir}')
        raise UserError(f'loss became {m["loss"]} at step {s}; stopping. {kept}.'
                        + self.way_back_message(s))
    s, m = self.pending[-1][0], fetched[-1]
    means = {k: float(np.mean([f[k] for f in fetched])) for k in m}
    self.last_loss = means['loss']
    self.low_loss = (means['loss'] if self.low_loss is None
                     else min(self.low_loss, means['loss']))
    rates = self.progress.update(
        s, means['loss'], self.tokens, flops=self.flops,
        peak_flops_per_s=self.meter.peak if self.meter else 0.0,
        memory_bytes=throughput.device_memory() if self.meter else None)
    self.writer.write(s, {f'train/{k}': v for k, v in means.items()}
                      | {f'train/{k}': v for k, v in rates.items()})
    self.pending.clear()
    self.tokens = 0
    self.flops = 0.0

  def restart_rates(self, step: int) -> None:
    """Rates count from `step` on: its tokens and FLOPs, and the time so far, are left out
    (its loss is still logged)."""
    self.progress.restart(step)
    self.tokens = 0
    self.flops = 0.0

  def evaluate(self, step: int, state: Any) -> None:
    """Validation metrics at `step`; the best checkpoint if they are the best so far."""
    self.log(step)
    self.progress.pause()
    samples = []
    try:
      with self.timed('eval'):
        ev = self._evaluate(state.params, 'validation', samples=samples)
    except Abandoned:   # a stop signal: the caller saves this step and exits
      self.progress.resume()
      if jax.process_index() == 0:
        print(f'evaluation at step {step} abandoned for the stop', flush=True)
      return
    self.writer.write(step, {f'eval/{k}': v for k, v in ev.items()})
    if samples:
      self.writer.text(step, 'eval/samples', metric_writer.samples_markdown(samples))
    if jax.process_index() == 0:
      print(f'eval step {step}: ' + ', '.join(f'{k} {v:.4g}' for k, v in ev.items()),
            flush=True)
    value = ev[self.run.task.best_metric]
    better = (self.best is None or (value < self.best if self.run.task.best_mode == 'min'
                                    else value > self.best))
    if better:
      self.best = value
      with self.timed('checkpoint'):
        self.ckpt.save(step, state, self.meta(step), best=True)
    self.progress.resume()

  def checkpoint(self, step: int, state: Any) -> None:
    self.log(step)
    self.ckpt.note_health(step, self.healthy())
    kept = set(self.ckpt.last.all_steps()) | {step}
    meta = {**self.meta(step), 'loss': self.last_loss, 'low_loss': self.low_loss,
            'healthy_steps': sorted(s for s in kept if self.ckpt.healthy.get(s))}
    with self.timed('checkpoint'):
      self.ckpt.save(step, state, meta)

  def should_stop(self) -> bool:
    return self.stop.agreed()
