"""Step FLOPs counted on the jaxpr (scans included), the job's peak, and MFU in the loop."""
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax.trainer import throughput
from seq2seq_jax.trainer.metric_writer import Progress


def test_matmul_and_batched_matmul_flops():
  a, b = jnp.ones((8, 64)), jnp.ones((64, 32))
  assert throughput.step_flops(lambda x, y: x @ y, a, b) == 2 * 8 * 32 * 64
  q, k = jnp.ones((2, 4, 10, 16)), jnp.ones((2, 4, 12, 16))
  f = lambda q, k: jnp.einsum('bhqd,bhkd->bhqk', q, k)
  assert throughput.step_flops(f, q, k) == 2 * (2 * 4 * 10 * 12) * 16


def test_scan_counts_every_step_where_xla_counts_one():
  w, x = jnp.ones((64, 64)), jnp.ones((8, 64))

  def f(w, x):
    c, _ = jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=10)
    return c.sum()

  assert throughput.step_flops(f, w, x) == 10 * 2 * 8 * 64 * 64
  # XLA's own cost analysis sees the loop body once: the reason for counting on the jaxpr.
  xla = jax.jit(f).lower(w, x).compile().cost_analysis()
  xla = xla[0] if isinstance(xla, (list, tuple)) else xla
  assert xla['flops'] < 2 * 2 * 8 * 64 * 64
  # Inside jit, grad and remat too: forward + two backward matmuls per step.
  g = jax.jit(jax.grad(jax.checkpoint(f)))
  assert throughput.step_flops(g, w, x) == 10 * 2 * 8 * 64 * 64 * (1 + 1 + 2)


def test_meter_takes_the_flops_of_a_jaxpr_traced_ahead():
  """The trainer's ahead-of-time compile hands the meter its trace: the same count as the
  meter's own trace of the jitted step, per batch shape."""
  w = jnp.ones((64, 64))
  step = jax.jit(lambda w, batch: jnp.tanh(batch['x'] @ w).sum())
  meter = throughput.Meter()
  small, big = {'x': jnp.ones((8, 64))}, {'x': jnp.ones((16, 64))}
  meter.record(small, step.trace(w, small).jaxpr)
  assert meter.step_flops(step, w, small) == 2 * 8 * 64 * 64
  assert throughput.Meter().step_flops(step, w, small) == 2 * 8 * 64 * 64  # its own trace
  assert meter.step_flops(step, w, big) == 2 * 16 * 64 * 64  # not recorded: traced here
  # What was handed over is what it reports (no trace of its own): a step twice as costly.
  twice = jax.jit(lambda w, batch: (batch['x'] @ w @ w).sum())
  meter.record(small, twice.trace(w, small).jaxpr)
  assert meter.step_flops(step, w, small) == 2 * 2 * 8 * 64 * 64


def test_convolution_flops():
  x, k = jnp.ones((2, 16, 16, 3)), jnp.ones((3, 3, 3, 8))
  f = lambda x, k: jax.lax.conv_general_dilated(x, k, (2, 2), 'SAME',
                                                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  assert throughput.step_flops(f, x, k) == 2 * (2 * 8 * 8 * 8) * (3 * 3 * 3)


def test_peak_on_cpu_is_a_measured_matmul_and_accelerators_come_from_the_table():
  peak, source = throughput.peak_flops_per_s('float32')
  assert peak > 1e8 and 'measured' in source
  assert throughput.device_peak('TPU v4', 'bfloat16') == 275e12
  assert throughput.device_peak('NVIDIA H100 80GB HBM3', 'bfloat16') == 989e12
  assert throughput.device_peak('NVIDIA A100-SXM4-40GB', 'float32') == 156e12
  assert throughput.device_peak('Some new chip', 'float32') is None
  assert throughput.device_memory() is None  # CPU reports no memory stats


def test_progress_line_shows_mfu_and_memory_when_known():
  out = io.StringIO()
  now = [0.0]
  p = Progress(total_steps=100, start_step=0, stream=out, clock=lambda: now[0])
  now[0] = 2.0
  rates = p.update(10, loss=1.0, tokens=1000, flops=4e12, peak_flops_per_s=1e13,
                   memory_bytes=3 * 2 ** 30)
  assert rates['mfu'] == pytest.approx(0.2) and rates['device_peak_bytes'] == 3 * 2 ** 30
  assert 'MFU 20.0%' in out.getvalue() and 'mem 3.00 GiB' in out.getvalue()
  rates = p.update(20, loss=1.0, tokens=1000)  # no peak: no MFU
  assert 'mfu' not in rates and 'MFU' not in out.getvalue().splitlines()[-1]
