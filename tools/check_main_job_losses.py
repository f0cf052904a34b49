r"""Trains the main job (G2P Transformer) for 100 steps and compares its losses bit for bit.

The reference is tests/fixtures/g2p_main_job_first100_losses.json: `train/loss` of steps
1-100 of README's main command at commit 08b69df, logged every step. A change that should not
alter what the model computes (a refactor) must reproduce them exactly:

  python tools/check_main_job_losses.py [--data_dir=DIR]

Runs in process on one CPU device (about two minutes); exits 1 at the first differing step.
XLA compiles for the host's CPU, and hosts of one machine kind differ in the last bits (the
fixture was recorded on another host: step 3 gives 4.954860687 on some hosts, 4.954860210 in
the fixture, at 08b69df itself). On such a host, record 08b69df's losses there and compare:

  git worktree add /tmp/old 08b69df   # then run this file's copy there with --write=old.json
  python tools/check_main_job_losses.py --reference=old.json
"""
import argparse
import json
import os
import signal
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _count(path: str) -> int:
  with open(path) as f:
    return sum('train/loss' in line for line in f)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', default='', help='TFDS data dir ("" = the default)')
  parser.add_argument('--reference', default=os.path.join(
      ROOT, 'tests', 'fixtures', 'g2p_main_job_first100_losses.json'),
                      help='[[step, loss], ...] to compare with (default: 08b69df\'s)')
  parser.add_argument('--write', default='', help='also write the losses got to this file')
  args = parser.parse_args()
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  with open(args.reference) as f:
    expected = [tuple(x) for x in json.load(f)]
  config = config_lib.load_config(
      os.path.join(ROOT, 'experiments', 'g2p_cmudict_transformer.py'),
      [('log_every_steps', '1'), ('data.data_dir', args.data_dir)])
  # The main job runs 3,500 steps; stopping after 100 keeps its schedule (it follows
  # train_steps) and so its first 100 updates.
  with tempfile.TemporaryDirectory() as workdir:
    metrics = os.path.join(workdir, 'metrics.jsonl')

    def stop_at_100():   # SIGINT: the trainer stops after the current step, as a user's Ctrl-C
      while not stop_event.wait(0.2):
        if os.path.exists(metrics) and _count(metrics) >= 100:
          os.kill(os.getpid(), signal.SIGINT)
          return

    stop_event = threading.Event()
    watcher = threading.Thread(target=stop_at_100, daemon=True)
    watcher.start()
    try:
      train.train(config, workdir)
    finally:
      stop_event.set()
    with open(metrics) as f:
      rows = [json.loads(line) for line in f if line.strip()]
  got = [(r['step'], r['train/loss']) for r in rows if 'train/loss' in r][:100]
  if args.write:
    with open(args.write, 'w') as f:
      json.dump(got, f)
  for (s, want), (t, have) in zip(expected, got):
    if s != t or want != have:
      print(f'step {s}: loss {have!r}, expected {want!r} ({args.reference})')
      return 1
  if len(got) < len(expected):
    print(f'only {len(got)} steps logged')
    return 1
  print(f'the first {len(got)} train/loss values equal those of {args.reference}, bit for bit')
  return 0


if __name__ == '__main__':
  sys.exit(main())
