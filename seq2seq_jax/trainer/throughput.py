"""How fast a run uses the hardware: step FLOPs, the devices' peak, MFU and device memory.

  step_flops(fn, *args)     FLOPs of one call, counted on its jaxpr: every dot_general and
                            convolution, scans multiplied by their length (XLA's cost analysis
                            counts a while loop's body once, so it misses all but one step of
                            an RNN's time loop)
  peak_flops_per_s(dtype)   the job's peak: a table of accelerators' dense matmul peaks, or on
                            CPU (and unknown devices) a large matmul timed here
  device_memory()           peak bytes in use on this process's devices, where the backend
                            reports it (GPU, TPU; not CPU)
  Meter                     what the training loop keeps: the peak, FLOPs per batch shape

MFU here is the FLOPs the step executes (matmuls and convolutions, including any
rematerialized recomputation; elementwise work left out, as is usual) per second, over the
peak of every device in the job.
"""
import concurrent.futures
import math
import threading
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from seq2seq_jax.trainer import sharding

# Dense matmul peak FLOP/s per chip (vendors' figures, without sparsity), by a fragment of
# jax's `device_kind`, for the compute dtypes. float32: TF32 on NVIDIA Ampere and later, which
# XLA uses for float32 matmuls at default precision; on TPUs default-precision float32 matmuls
# run as bfloat16 passes, so the bfloat16 peak.
PEAKS: dict[str, dict[str, float]] = {
    'TPU v2': {'bfloat16': 45e12, 'float32': 45e12},
    'TPU v3': {'bfloat16': 123e12, 'float32': 123e12},
    'TPU v4': {'bfloat16': 275e12, 'float32': 275e12},
    'TPU v5 lite': {'bfloat16': 197e12, 'float32': 197e12},
    'TPU v5e': {'bfloat16': 197e12, 'float32': 197e12},
    'TPU v5p': {'bfloat16': 459e12, 'float32': 459e12},
    'TPU v5': {'bfloat16': 459e12, 'float32': 459e12},
    'TPU v6 lite': {'bfloat16': 918e12, 'float32': 918e12},
    'TPU v6e': {'bfloat16': 918e12, 'float32': 918e12},
    'H200': {'bfloat16': 989e12, 'float32': 494e12},
    'H100': {'bfloat16': 989e12, 'float32': 494e12},
    'A100': {'bfloat16': 312e12, 'float32': 156e12},
    'A10G': {'bfloat16': 70e12, 'float32': 35e12},
    'L4': {'bfloat16': 121e12, 'float32': 60e12},
    'V100': {'bfloat16': 125e12, 'float32': 15.7e12},  # no bf16 tensor cores: fp16's figure
}


def _subjaxprs(params: dict) -> list[tuple[Any, float]]:
  """(jaxpr, times) for the sub-computations of an equation other than scan / cond."""
  out = []
  for v in params.values():
    for item in (v if isinstance(v, (tuple, list)) else (v,)):
      inner = getattr(item, 'jaxpr', item)
      if hasattr(inner, 'eqns'):
        out.append((inner, 1.0))
  return out


def _eqn_flops(eqn) -> float:
  name = eqn.primitive.name
  p = eqn.params
  if name == 'dot_general':
    (lhs_contract, _), _ = p['dimension_numbers']
    lhs = eqn.invars[0].aval.shape
    k = math.prod(lhs[d] for d in lhs_contract)
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * k
  if name == 'conv_general_dilated':
    rhs = eqn.invars[1].aval.shape
    out_feature_dim = p['dimension_numbers'].rhs_spec[0]
    per_output = math.prod(rhs) / rhs[out_feature_dim]  # in-features per group x window
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output
  if name == 'scan':
    return p['length'] * jaxpr_flops(p['jaxpr'].jaxpr)
  if name == 'cond':
    return max(jaxpr_flops(b.jaxpr) for b in p['branches'])
  if name == 'while':  # the trip count is not known statically: one pass of the body
    return jaxpr_flops(p['body_jaxpr'].jaxpr) + jaxpr_flops(p['cond_jaxpr'].jaxpr)
  return sum(t * jaxpr_flops(j) for j, t in _subjaxprs(p))


def jaxpr_flops(jaxpr) -> float:
  """Matmul and convolution FLOPs of a jaxpr, scans counted `length` times."""
  return float(sum(_eqn_flops(e) for e in jaxpr.eqns))


def step_flops(fn: Callable, *args) -> float:
  """FLOPs of one call of `fn(*args)` (global, unpartitioned shapes)."""
  return jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


_MEASURED: dict[str, float] = {}


def measured_matmul_flops_per_s(dtype: str = 'float32', n: int = 2048, reps: int = 5) -> float:
  """FLOP/s of an n x n matmul on the default device, timed here (once per process)."""
  if dtype not in _MEASURED:
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = 0.0
    for _ in range(reps):
      t = time.perf_counter()
      f(a, a).block_until_ready()
      best = max(best, 2.0 * n ** 3 / (time.perf_counter() - t))
    _MEASURED[dtype] = best
  return _MEASURED[dtype]


def device_peak(kind: str, dtype: str) -> float | None:
  """A chip's peak from the table, or None for a kind it does not know."""
  for fragment, peaks in PEAKS.items():
    if fragment.lower() in kind.lower():
      return peaks['bfloat16' if dtype == 'bfloat16' else 'float32']
  return None


def peak_flops_per_s(dtype: str = 'float32') -> tuple[float, str]:
  """(peak FLOP/s of every device in the job, where the figure comes from).

  CPU devices (also the fake ones of --xla_force_host_platform_device_count) share the host's
  cores, so a host counts once: its measured matmul rate times the number of processes."""
  dev = jax.devices()[0]
  if dev.platform == 'cpu':
    return (measured_matmul_flops_per_s(dtype) * jax.process_count(),
            f'measured {dtype} matmul x {jax.process_count()} process(es)')
  table = device_peak(dev.device_kind, dtype)
  if table is not None:
    return table * jax.device_count(), f'{dev.device_kind} table x {jax.device_count()}'
  return (measured_matmul_flops_per_s(dtype) * jax.device_count(),
          f'measured {dtype} matmul on {dev.device_kind} x {jax.device_count()}')


def device_memory() -> int | None:
  """Peak bytes in use on the most loaded local device, or None where not reported."""
  peaks = []
  for d in jax.local_devices():
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if stats:
      peaks.append(int(stats.get('peak_bytes_in_use', stats.get('bytes_in_use', 0))))
  return max(peaks) if peaks else None


def _signature(tree) -> tuple:
  return tuple((str(p), tuple(x.shape)) for p, x in jax.tree_util.tree_leaves_with_path(tree))


class Meter:
  """The job's peak, and the train step's FLOPs per batch shape (one trace per shape)."""

  def __init__(self, dtype: str = 'float32'):
    self.peak, self.peak_source = peak_flops_per_s(dtype)
    self._flops: dict[tuple, float] = {}

  def step_flops(self, fn: Callable, state, batch) -> float:
    key = _signature(batch)
    if key not in self._flops:
      self._flops[key] = step_flops(fn, state, batch)
    return self._flops[key]

  def record(self, batch, closed_jaxpr) -> None:
    """The FLOPs of the step for `batch`'s shapes, from a jaxpr traced elsewhere (the
    trainer's ahead-of-time compile), so step_flops need not trace it again."""
    self._flops[_signature(batch)] = jaxpr_flops(closed_jaxpr.jaxpr)


def precompile(run, batches: Sequence[dict[str, Any]], threads: int,
               meter: Meter | None = None) -> int:
  """Compiles run.train_step (run: a train.Run) for every distinct signature of `batches`
  (global arrays) ahead of the loop, `threads` compiles at a time: XLA compiles outside the
  GIL, so the shapes of a bucketed run compile side by side instead of one by one as the steps
  first meet them, and jit's cache serves the loop. Tracing, which holds the GIL anyway, takes
  turns; its jaxpr also gives `meter` the step's FLOPs (no second trace). Returns the number of
  signatures compiled."""
  todo: dict[tuple, dict[str, Any]] = {}
  for b in batches:
    todo.setdefault(tuple((k, v.shape, str(v.dtype)) for k, v in sorted(b.items())), b)
  tracing = threading.Lock()

  def compile_one(batch):
    with tracing, sharding.activate(run.mesh, run.rules):
      traced_step = run.train_step.trace(run.abstract_state, batch)
      if meter is not None:
        meter.record(batch, traced_step.jaxpr)
      lowered = traced_step.lower()
    lowered.compile()

  with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
    list(pool.map(compile_one, todo.values()))
  return len(todo)
