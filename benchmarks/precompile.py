r"""Compiling a bucketed run's train step ahead: one shape at a time against N at a time.

  python benchmarks/precompile.py                                   # spoken digits, Transformer
  python benchmarks/precompile.py --config=experiments/spoken_digits.py --threads=2,4
  XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/precompile.py

A run compiles its train step once per batch shape (one per length bucket); without
config.precompile_threads it does so as the steps first meet each shape, one after another.
This times train.precompile (what launch.py runs before the first step) over the config's
training shapes with 1 thread and with each --threads value, each in a fresh process (JAX's
compile cache would otherwise serve the second), alternating the settings --repeats times.
One JSON line per measurement: threads, shapes, seconds, and the host's float32 matmul rate
timed in the same process. The data must exist (run the config once, or its smoke variant).
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(spec: str, threads: int) -> dict:
  """In this process: builds the run, its training batcher, and times train.precompile."""
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import throughput  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(spec)
  run = train.setup(config)
  with tempfile.TemporaryDirectory() as workdir:
    run.task.setup(workdir)
    batcher, feed = train.make_input(run, run.task.train_data(),
                                     batch_size=int(config.batch_size), shuffle=True)
    batches = [feed.to_global(b) for b in batcher.shape_examples()]
  t = time.perf_counter()
  shapes = train.precompile(run, batches, threads)
  seconds = time.perf_counter() - t
  return {'config': spec, 'threads': threads, 'shapes': shapes, 'seconds': round(seconds, 1),
          'matmul_flops_per_s': float('%.3g' % throughput.measured_matmul_flops_per_s())}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--config', default='experiments/spoken_digits.py:transformer')
  p.add_argument('--threads', default='2', help='comma-separated thread counts beside 1')
  p.add_argument('--repeats', type=int, default=2)
  p.add_argument('--worker', type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.worker:
    print(json.dumps(measure(args.config, args.worker)), flush=True)
    return
  settings = [1] + [int(t) for t in args.threads.split(',') if int(t) != 1]
  for _ in range(args.repeats):
    for threads in settings:
      out = subprocess.run([sys.executable, os.path.abspath(__file__), f'--config={args.config}',
                            f'--worker={threads}'], cwd=ROOT, capture_output=True, text=True,
                           check=False)
      lines = [l for l in out.stdout.splitlines() if l.startswith('{')]
      if out.returncode or not lines:
        sys.exit(f'worker with {threads} thread(s) failed: {out.stderr.strip()[-500:]}')
      print(lines[-1], flush=True)


if __name__ == '__main__':
  main()
