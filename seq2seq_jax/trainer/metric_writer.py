"""Where metrics go: DIR/metrics.jsonl, TensorBoard event files in DIR, and a progress line.

Only process 0 writes (other processes construct a disabled writer).
"""
import collections
import json
import math
import os
import sys
import time
from typing import Any, Sequence

from seq2seq_jax import paths
from seq2seq_jax.trainer import run_files


def _fmt_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def _fmt_count(x: float) -> str:
  for unit, scale in (('M', 1e6), ('k', 1e3)):
    if x >= scale:
      return f'{x / scale:.1f}{unit}'
  return f'{x:.0f}'


def current(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The rows of metrics.jsonl that describe the run as it now stands: a restart record
  (MetricWriter) supersedes the rows before it of later steps."""
  out: list[dict[str, Any]] = []
  for row in rows:
    if 'restart/from_step' in row:
      out = [r for r in out if r.get('step', 0) <= row['restart/from_step']]
    else:
      out.append(row)
  return out


def read(workdir: str) -> list[dict[str, Any]]:
  """DIR/metrics.jsonl as the run now stands (torn lines dropped with a warning)."""
  return current(run_files.read_jsonl(os.path.join(workdir, 'metrics.jsonl')))


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  """{'a.b': value} of a nested dict (None values dropped: TensorBoard has no null)."""
  out = {}
  for k, v in (tree or {}).items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(_flatten(v, key + '.'))
    elif v is not None:
      out[key] = v
  return out


def samples_markdown(samples: Sequence[tuple[str, str, Sequence[str]]]) -> str:
  """A Markdown table of (input, output, references) rows for TensorBoard."""
  def cell(text: str) -> str:
    return str(text).replace('|', '\\|').replace('\n', ' ')[:300]
  lines = ['| input | output | reference |', '|---|---|---|']
  lines += [f'| {cell(src)} | {cell(hyp)} | {cell(" / ".join(refs))} |'
            for src, hyp, refs in samples]
  return '\n'.join(lines)


class _ObjectEventFile:
  """A TensorBoard event file on an object store (gs://), written through seq2seq_jax.paths
  like the run's other files: the bytes so far are uploaded whole at each flush (an object
  cannot be appended to), and nothing is uploaded after close().

  tensorboardX's own gs:// writer uploads its file again from __del__, also after close(),
  and tensorboardX keeps every writer it made until the interpreter exits (an atexit hook):
  so at exit each event file the process wrote was uploaded once more, and where the store
  could no longer be reached (a network gone, the tests' emulator stopped), google-api-core
  retried each upload for 120 s before the process could end. For the same reason close()
  lets go of the bytes.
  """

  def __init__(self, path: str):
    self.path = path
    self._data = bytearray()
    self._uploaded = -1   # len(self._data) at the last upload
    self.closed = False

  def write(self, data: bytes) -> None:
    if self.closed:
      raise ValueError(f'{self.path}: written after close')
    self._data += data

  def flush(self) -> None:
    if not self.closed and self._uploaded != len(self._data):
      paths.write_atomic(self.path, bytes(self._data))
      self._uploaded = len(self._data)

  def close(self) -> None:
    self.flush()
    self.closed = True
    self._data = bytearray()


class _ObjectEventFiles:
  """tensorboardX's writer factory (record_writer.register_writer_factory) for a scheme."""

  def open(self, path: str) -> _ObjectEventFile:
    return _ObjectEventFile(path)

  def directory_check(self, path: str) -> None:
    del path   # an object store has no directories to make


def summary_writer(logdir: str, **kwargs):
  """tensorboardX's SummaryWriter for `logdir`, local or remote (see _ObjectEventFile); the
  caller closes it."""
  from tensorboardX import SummaryWriter, record_writer  # pylint: disable=g-import-not-at-top
  if paths.is_remote(logdir):
    record_writer.register_writer_factory(paths.scheme(logdir), _ObjectEventFiles())
  return SummaryWriter(logdir=logdir, **kwargs)


class MetricWriter:
  """Appends one JSON object per logged step and mirrors scalars to TensorBoard."""

  def __init__(self, workdir: str, enabled: bool = True, resumed_at: int | None = None):
    """Opens DIR/metrics.jsonl for appending (it is only ever appended to).

    Args:
      workdir: the run directory.
      enabled: False on non-zero processes.
      resumed_at: the step the run starts from. If the file already has rows of later steps
        (a run that went on past its last checkpoint, or one restarted from scratch), a row
        {'step': S, 'restart/from_step': S, 'restart/rows_after': N} records that the
        steps after S are computed again; `current` drops the rows it supersedes.
    """
    self.enabled = enabled
    if not enabled:
      return
    self.path = os.path.join(workdir, 'metrics.jsonl')
    later = 0
    if resumed_at is not None:
      later = sum(1 for r in run_files.read_jsonl(self.path)
                  if r.get('step', 0) > resumed_at)
    with run_files.io_errors('opening the metrics log', self.path):
      run_files.end_with_newline(self.path)
      if paths.is_remote(self.path):
        # An object cannot be appended to: the log is kept here and the object rewritten
        # whole at each row (an upload is seen whole or not at all, so never torn).
        self._file = None
        self._text = paths.read_bytes(self.path) if paths.exists(self.path) else b''
      else:
        self._file = open(self.path, 'a')
      if later:
        self._append({'step': int(resumed_at), 'restart/from_step': int(resumed_at),
                      'restart/rows_after': later})
      # One logical run per workdir: a resumed run's events go to a new file in the same
      # directory, and purge_step tells TensorBoard to drop the earlier files' events from the
      # resumed step on (the steps that are computed again), so no step appears twice.
      self._tb = summary_writer(workdir, flush_secs=30,
                                purge_step=int(resumed_at) if later else None)

  def _append(self, row: dict[str, Any]) -> None:
    line = json.dumps(row) + '\n'
    if self._file is None:
      self._text += line.encode('utf-8')
      paths.write_atomic(self.path, self._text)
      return
    self._file.write(line)
    self._file.flush()

  def write(self, step: int, scalars: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {'step': int(step)}
    row.update({k: float(v) for k, v in scalars.items()})
    with run_files.io_errors(f'logging step {step}', self.path):
      self._append(row)
      for k, v in row.items():
        if k != 'step':
          self._tb.add_scalar(k, v, step)

  def hparams(self, config: dict[str, Any], metrics: Sequence[str]) -> None:
    """The run's settings (flattened, dotted keys) for TensorBoard's HParams dashboard, with
    the metric tags it shows beside them (scalars this run writes, e.g. 'eval/wer')."""
    if not self.enabled:
      return
    from tensorboardX.summary import hparams  # pylint: disable=g-import-not-at-top
    flat = {k: (v if isinstance(v, (bool, int, float, str)) else json.dumps(v))
            for k, v in _flatten(config).items()}
    with run_files.io_errors('logging the settings', self.path):
      writer = self._tb._get_file_writer()  # pylint: disable=protected-access
      for summary in hparams(flat, {m: float('nan') for m in metrics}):
        writer.add_summary(summary)

  def text(self, step: int, tag: str, markdown: str) -> None:
    """A piece of Markdown for TensorBoard's Text dashboard (e.g. decoded samples)."""
    if not self.enabled:
      return
    with run_files.io_errors(f'logging step {step}', self.path):
      self._tb.add_text(tag, markdown, int(step))

  def close(self) -> None:
    """Flushes and closes the log and the event file (again: nothing)."""
    if self.enabled:
      if self._file is not None:
        self._file.close()
      self._tb.close()

  def __enter__(self) -> 'MetricWriter':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class Progress:
  """One line per logged step: step, loss, steps/s, tokens/s, ETA.

  The ETA divides the steps left by the rate over the last `window` reports, so a slow start
  (compilation, a stalled or shared machine) stops weighing on it once it has passed.
  """

  def __init__(self, total_steps: int, start_step: int, enabled: bool = True, stream=None,
               window: int = 20, clock=time.perf_counter):
    self.total = total_steps
    self.enabled = enabled
    self.stream = stream or sys.stdout
    self.eta_s = float('inf')
    self._clock = clock
    # (step, time) of the last window + 1 reports; the newest is the previous report.
    self._recent = collections.deque([(start_step, clock())], maxlen=window + 1)

  def update(self, step: int, loss: float, tokens: float, flops: float = 0.0,
             peak_flops_per_s: float = 0.0, memory_bytes: float | None = None,
             extra: str = '') -> dict[str, float]:
    """Reports progress since the previous call; returns the rates it printed (and MFU, the
    FLOPs done over the interval per second over `peak_flops_per_s`, when that is given)."""
    now = self._clock()
    prev_step, prev_t = self._recent[-1]
    if step <= prev_step:   # the step `restart` was called at: no interval to rate yet
      if self.enabled:
        print(f'step {step}/{self.total} | loss {loss:.4f} | rates from the next log on'
              f'{extra}', file=self.stream, flush=True)
      return {}
    dt = max(now - prev_t, 1e-9)
    rates = {'steps_per_s': (step - prev_step) / dt, 'tokens_per_s': tokens / dt}
    if peak_flops_per_s > 0:
      rates['mfu'] = flops / dt / peak_flops_per_s
    if memory_bytes is not None:
      rates['device_peak_bytes'] = float(memory_bytes)
    self._recent.append((step, now))
    first_step, first_t = self._recent[0]
    recent = (step - first_step) / max(now - first_t, 1e-9)
    eta = (self.total - step) / recent if recent > 0 else float('inf')
    if self.enabled:
      width = 20
      filled = int(width * step / max(self.total, 1))
      bar = '#' * filled + '.' * (width - filled)
      more = f' | MFU {100 * rates["mfu"]:.1f}%' if 'mfu' in rates else ''
      if memory_bytes is not None:
        more += f' | mem {memory_bytes / 2 ** 30:.2f} GiB'
      print(f'[{bar}] step {step}/{self.total} | loss {loss:.4f} | '
            f'{rates["steps_per_s"]:.2f} steps/s | {_fmt_count(rates["tokens_per_s"])} tok/s'
            f'{more} | ETA {_fmt_duration(eta)}{extra}', file=self.stream, flush=True)
    self.eta_s = eta
    return rates

  def restart(self, step: int) -> None:
    """Rates and ETA count from now, at `step`: what came before (restoring, compiling the
    first step) is left out."""
    self._recent = collections.deque([(step, self._clock())], maxlen=self._recent.maxlen)

  def pause(self) -> None:
    """Excludes the time until the next `resume` (e.g. evaluation) from the rates."""
    self._paused = self._clock()

  def resume(self) -> None:
    gap = self._clock() - self._paused
    self._recent = collections.deque(((st, t + gap) for st, t in self._recent),
                                     maxlen=self._recent.maxlen)
