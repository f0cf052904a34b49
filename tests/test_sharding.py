"""Sharding: the same run on different meshes, processes and restores gives the same losses.

Runs on the 8 simulated CPU devices set up in conftest.py.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

import runs  # tests/runs.py

from seq2seq_jax import config as config_lib
from seq2seq_jax.trainer import feed as feed_lib
from seq2seq_jax.trainer import sharding
from seq2seq_jax.trainer import train
from seq2seq_jax.trainer.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, 'launch.py')
SPEC = os.path.join(ROOT, 'experiments', 'g2p_cmudict_transformer.py') + ':smoke'
STEPS = 4


def tiny_config(data_dir: str, mesh: tuple[int, int, int]):
  d, f, t = mesh
  return config_lib.load_config(SPEC, [
      ('data.data_dir', data_dir), ('data.buckets', '(24,)'), ('batch_size', '16'),
      ('mesh.data', str(d)), ('mesh.fsdp', str(f)), ('mesh.tensor', str(t)),
      # Sizes divisible by every mesh axis, so each rule really splits its dimension.
      ('model.emb_dim', '32'), ('model.num_heads', '4'), ('model.mlp_dim', '64')])


def _ways(mesh, axes) -> int:
  names = axes if isinstance(axes, tuple) else (axes,) if axes else ()
  return int(np.prod([mesh.shape[n] for n in names]))


def run_steps(run: train.Run, state, start: int, n: int) -> tuple[object, list[float]]:
  batcher, feed = train.make_input(run, run.task.train_data(), batch_size=16, shuffle=True)
  losses = []
  for step in range(start, start + n):
    batch = feed.to_global(batcher.get_batch(step))
    state, metrics = train.traced(run, run.train_step, state, batch)
    losses.append(float(metrics['loss']))
  return state, losses


@pytest.fixture(scope='module')
def reference(tfds_data_dir):
  run = train.setup(tiny_config(tfds_data_dir, (1, 1, 1)))
  state = run.init_state(jax.random.key(0))
  _, losses = run_steps(run, state, 0, STEPS)
  return losses


@pytest.mark.parametrize('mesh', [(8, 1, 1), (2, 2, 2), (1, 2, 4)])
def test_same_losses_on_every_mesh_and_params_sharded_by_rules(mesh, reference, tfds_data_dir):
  run = train.setup(tiny_config(tfds_data_dir, mesh))
  state = run.init_state(jax.random.key(0))
  assert dict(run.mesh.shape) == dict(zip(sharding.MESH_AXES, mesh))

  # Every parameter's actual sharding is what the logical rules say for its names.
  with sharding.activate(run.mesh, run.rules):
    boxed = jax.eval_shape(lambda r: run.model.init(
        {'params': r}, run.task.dummy_batch(feed_lib.batch_divisor(run.mesh)), train=False),
                           jax.random.key(0))['params']
  specs = nn.get_partition_spec(boxed)
  leaves = jax.tree_util.tree_leaves_with_path(state.params)
  expected = dict(jax.tree_util.tree_leaves_with_path(
      nn.logical_to_mesh(specs, run.rules), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)))
  split = 0
  for path, leaf in leaves:
    spec = tuple(expected[path]) + (None,) * (leaf.ndim - len(expected[path]))
    # A dimension the mesh axes do not divide (e.g. a 43-symbol vocabulary) stays whole.
    spec = [a if d % _ways(run.mesh, a) == 0 else None for d, a in zip(leaf.shape, spec)]
    want = jax.sharding.NamedSharding(run.mesh, jax.sharding.PartitionSpec(*spec))
    assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (path, leaf.sharding, want)
    shard_shape = leaf.addressable_shards[0].data.shape
    split += shard_shape != leaf.shape
  if mesh[1] * mesh[2] > 1:
    assert split > 0, 'fsdp/tensor axes must really split some parameters'
  else:
    assert split == 0

  _, losses = run_steps(run, state, 0, STEPS)
  np.testing.assert_allclose(losses, reference, rtol=2e-5, atol=2e-5)


def test_checkpoint_restores_onto_another_mesh(tmp_path, reference, tfds_data_dir):
  run_a = train.setup(tiny_config(tfds_data_dir, (8, 1, 1)))
  state, first = run_steps(run_a, run_a.init_state(jax.random.key(0)), 0, 2)
  ckpt = Checkpointer(str(tmp_path))
  ckpt.save(2, state, {'step': 2})
  ckpt.wait()

  run_b = train.setup(tiny_config(tfds_data_dir, (1, 2, 4)))
  restored, meta = Checkpointer(str(tmp_path)).restore(run_b.abstract_state)
  assert meta['step'] == 2 and int(restored.step) == 2
  some = jax.tree.leaves(restored.params)
  assert all(x.sharding.mesh.shape == run_b.mesh.shape for x in some)
  _, rest = run_steps(run_b, restored, 2, STEPS - 2)
  np.testing.assert_allclose(first + rest, reference, rtol=2e-5, atol=2e-5)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _report(outs: list[str]) -> str:
  """Both processes' errors (the first failure often only shows in the other one's output)."""
  keys = ('error', 'Error', 'F1', 'F2', 'Check failed', 'Fatal', 'barrier', 'Terminating')
  parts = []
  for i, out in enumerate(outs):
    lines = out.splitlines()
    hits = [l for l in lines if any(k in l for k in keys)][:20]
    parts.append(f'--- process {i}: error lines ---\n' + '\n'.join(hits) +
                 f'\n--- process {i}: tail ---\n' + '\n'.join(lines[-25:]))
  return '\n'.join(parts)


# One two-process run (jax.distributed over gloo, one simulated device per process) that
# proves at once: with mesh.data=1, mesh.tensor=2 the processes share the whole batch (each
# loads the same rows) and split the model between them; process 1 alone gets SIGTERM early on,
# and both processes must stop after the same step with one checkpoint and exit 0; a restart
# of both continues from it to the losses of the same run in one process (here, in this
# process, on two of its devices); only process 0 reports, and MFU counts both processes.
def test_two_processes_share_the_batch_stop_together_and_match_one_process(tmp_path,
                                                                           tfds_data_dir):
  common = [f'--config={SPEC}', f'--config.data.data_dir={tfds_data_dir}',
            '--config.data.buckets=(24,)', '--config.batch_size=16', '--config.train_steps=6',
            '--config.log_every_steps=1', '--config.eval_every_steps=6',
            '--config.checkpoint_every_steps=3', '--config.data.eval_batch_size=16',
            '--config.data.eval_max_examples=16', '--config.mesh.data=1',
            '--config.mesh.tensor=2']
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=runs.xla_flags(1))

  def start(workdir, extra=()):
    return subprocess.Popen([sys.executable, LAUNCH, *common, f'--workdir={workdir}', *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=ROOT)

  multi_dir = tmp_path / 'multi'
  def start_both():
    port = _free_port()
    return [start(multi_dir, [f'--coordinator_address=127.0.0.1:{port}',
                              '--num_processes=2', f'--process_id={i}'])
            for i in range(2)]

  procs = start_both()
  head = ''
  while 'parameters' not in head and procs[0].poll() is None:
    head += procs[0].stdout.readline()
  procs[1].send_signal(signal.SIGTERM)
  outs = [head + procs[0].communicate(timeout=400)[0], procs[1].communicate(timeout=400)[0]]
  assert [p.returncode for p in procs] == [0, 0], _report(outs)
  stopped = re.findall(r'stopped by a signal to another process after step (\d+) of 6', outs[0])
  assert len(stopped) == 1 and 'SUMMARY' not in outs[0], outs[0][-3000:]
  step = int(stopped[0])
  assert 0 < step < 6 and str(step) in os.listdir(multi_dir / 'checkpoints')

  # Meanwhile (the processes are done: the CPUs are free) the one-process run.
  code, out, err = runs.cli(*common, f'--workdir={tmp_path / "single"}')
  assert code == 0, (out + err)[-3000:]

  procs = start_both()
  outs = [p.communicate(timeout=400)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], _report(outs)
  assert 'SUMMARY' in outs[0] and 'SUMMARY' not in outs[1]  # only process 0 reports
  assert f'resumed from step {step} ' in outs[0]

  def losses(d):
    from seq2seq_jax.trainer import metric_writer  # pylint: disable=g-import-not-at-top
    rows = metric_writer.read(str(d))   # as the run stands after the resume
    return [r['train/loss'] for r in rows if 'train/loss' in r]
  a, b = losses(tmp_path / 'single'), losses(multi_dir)
  assert len(a) == len(b) == 6
  # The job's MFU is measured in multi-process runs too (peak: the matmul x 2 processes).
  with open(multi_dir / 'metrics.jsonl') as f:
    mfu = [json.loads(line).get('train/mfu') for line in f]
  assert 'x 2 process(es)' in outs[0] and all(0 < m < 1 for m in mfu if m is not None)
  assert sum(m is not None for m in mfu) >= 3
  np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-5)
  # Both processes wrote their shards into the same checkpoints.
  assert {'3', '6'} <= set(os.listdir(multi_dir / 'checkpoints'))
