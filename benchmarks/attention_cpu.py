r"""Attention on XLA:CPU: the batched form against the one-(item, head)-at-a-time form.

  python benchmarks/attention_cpu.py
  python benchmarks/attention_cpu.py --shapes=8x1500x8x64 --rounds=5

For each shape BATCHxLENGTHxHEADSxHEAD_DIM (self-attention, no mask), times the forward pass
and the gradient of a sum over the output of seq2seq_jax.models.layers' two attention forms,
alternating, `--rounds` calls each after one untimed compile, and prints one JSON line per
shape and pass (median milliseconds per call, the ratio batched / per-head, the largest
difference between their outputs) and the host's float32 matmul rate. layers.attention picks
the per-head form on a single-device CPU run from layers.BLOCKED_MIN_SCORES scores per
(item, head); these are the measurements behind that threshold.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp

from seq2seq_jax.models import layers
from seq2seq_jax.trainer import throughput

DEFAULT_SHAPES = '64x20x4x32,32x64x8x64,8x256x8x64,8x600x8x64,8x1500x8x64'


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--shapes', default=DEFAULT_SHAPES)
  p.add_argument('--rounds', type=int, default=5)
  args = p.parse_args()
  print(json.dumps({'host_matmul_flops_per_s': float(f'{throughput.measured_matmul_flops_per_s():.3g}'),
                    'devices': jax.device_count(), 'backend': jax.default_backend()}), flush=True)
  for shape in args.shapes.split(','):
    b, t, h, d = (int(x) for x in shape.split('x'))
    x = jax.random.normal(jax.random.key(0), (b, t, h, d))
    forms = {
        'batched': lambda q: layers.attention(q, q, q, None, deterministic=False,
                                              blocked=False),
        'per_head': lambda q: layers.attention(q, q, q, None, deterministic=False,
                                               blocked=True)}
    outs = {k: jax.jit(f)(x) for k, f in forms.items()}
    diff = float(jnp.max(jnp.abs(outs['batched'] - outs['per_head'])))
    for kind in ('forward', 'gradient'):
      fns = {k: jax.jit(f if kind == 'forward' else jax.grad(lambda q, f=f: jnp.sum(jnp.sin(f(q)))))
             for k, f in forms.items()}
      for f in fns.values():
        jax.block_until_ready(f(x))
      times = {k: [] for k in fns}
      for _ in range(args.rounds):
        for k, f in fns.items():
          t0 = time.perf_counter()
          jax.block_until_ready(f(x))
          times[k].append(time.perf_counter() - t0)
      med = {k: statistics.median(v) * 1000 for k, v in times.items()}
      print(json.dumps({'shape': shape, 'pass': kind, 'batched_ms': round(med['batched'], 2),
                        'per_head_ms': round(med['per_head'], 2),
                        'batched_over_per_head': round(med['batched'] / med['per_head'], 2),
                        'max_abs_diff': diff}), flush=True)


if __name__ == '__main__':
  main()
