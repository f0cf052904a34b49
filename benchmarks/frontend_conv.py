r"""The cnn frontend's convolutions and pooling: lax/reduce_window vs the im2col ones we use.

  python benchmarks/frontend_conv.py                      # digit strips: 64 x 32 x 256 x 1
  python benchmarks/frontend_conv.py --batch=32 --height=224 --width=224 --channels=3 \
      --cnn_channels=64,128,256,512

Times the gradient of a sum over the conv stack's output (3x3 conv + ReLU + 2x2 max pool per
stage: the frontend's stages) for both implementations, alternating, `--repeats` rounds of
`--steps` calls each, and prints one JSON line per implementation (median seconds per call,
FLOP/s of the convolutions' matmul FLOPs forward and backward) plus the host's float32 matmul
rate measured in the same process.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np

from seq2seq_jax.trainer import throughput
from seq2seq_jax.models import frontends


def _lax_stack(params, x):
  for p in params:
    y = jax.lax.conv_general_dilated(x, p['kernel'], (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    x = nn.max_pool(nn.relu(y + p['bias']), (2, 2), strides=(2, 2), padding='VALID')
  return x


def _ours_stack(params, x):
  for p in params:
    x = frontends.max_pool_2x2(nn.relu(frontends.Conv3x3(p['bias'].shape[0]).apply(
        {'params': p}, x)))
  return x


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--batch', type=int, default=64)
  ap.add_argument('--height', type=int, default=32)
  ap.add_argument('--width', type=int, default=256)
  ap.add_argument('--channels', type=int, default=1)
  ap.add_argument('--cnn_channels', default='32,64,128')
  ap.add_argument('--steps', type=int, default=5)
  ap.add_argument('--repeats', type=int, default=3)
  args = ap.parse_args()
  chans = [args.channels] + [int(c) for c in args.cnn_channels.split(',')]
  keys = jax.random.split(jax.random.key(0), len(chans))
  params = [{'kernel': jax.random.normal(k, (3, 3, a, b)) * (9 * a) ** -0.5,
             'bias': jnp.zeros((b,))} for k, a, b in zip(keys, chans[:-1], chans[1:])]
  x = jax.random.normal(keys[-1], (args.batch, args.height, args.width, args.channels))
  # Matmul FLOPs of the convolutions: forward, and twice that backward (input and kernel).
  flops, h, w = 0, args.height, args.width
  for a, b in zip(chans[:-1], chans[1:]):
    flops += 3 * 2 * args.batch * h * w * 9 * a * b
    h, w = h // 2, w // 2
  fns = {name: jax.jit(jax.grad(lambda p, x, f=f: jnp.sum(f(p, x) ** 2)))
         for name, f in (('lax_conv+reduce_window', _lax_stack), ('im2col+reshape', _ours_stack))}
  for f in fns.values():
    jax.block_until_ready(f(params, x))
  times = {name: [] for name in fns}
  for _ in range(args.repeats):
    for name, f in fns.items():          # alternating: both see the same host conditions
      t = time.perf_counter()
      for _ in range(args.steps):
        jax.block_until_ready(f(params, x))
      times[name].append((time.perf_counter() - t) / args.steps)
  peak = throughput.measured_matmul_flops_per_s()
  for name, ts in times.items():
    med = float(np.median(ts))
    print(json.dumps({'impl': name, 'shape': list(x.shape), 'cnn_channels': chans[1:],
                      'seconds_per_grad': round(med, 4), 'conv_flops': flops,
                      'flops_per_s': f'{flops / med:.3g}', 'host_matmul_flops_per_s':
                      f'{peak:.3g}', 'all_seconds': [round(t, 4) for t in ts]}))


if __name__ == '__main__':
  main()
