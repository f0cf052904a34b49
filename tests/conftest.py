"""Shared test setup. Eight simulated CPU devices, so sharding is exercised everywhere.

The flag must be set before jax is first imported, hence at the top of conftest.
"""
import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()
# Tests compile far more than they compute: LLVM's optimisation level 0 makes XLA's CPU
# compiles about 40% faster and the suite about 30% faster. It changes no floating-point
# semantics (no fast math either way); the processes tests start (runs.launch) inherit it, so
# losses compared across processes come from the same code. Set S2S_TEST_XLA_OPT=1 to test
# the optimised code instead.
if (not os.environ.get('S2S_TEST_XLA_OPT')
    and '--xla_backend_optimization_level' not in os.environ['XLA_FLAGS']):
  os.environ['XLA_FLAGS'] += ' --xla_backend_optimization_level=0'

# JAX's persistent compilation cache, one per test session and shared by every process the
# tests start (launch.py subprocesses inherit the variable): the same tiny programs are compiled
# by many tests and by every restarted run, and compiling is most of the suite's time. Each
# session starts empty, so nothing carries over between runs of the suite. S2S_TEST_JAX_CACHE
# names a directory to keep instead.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  import atexit  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  _cache = os.environ.get('S2S_TEST_JAX_CACHE') or tempfile.mkdtemp(prefix='s2s_jax_cache_')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  if not os.environ.get('S2S_TEST_JAX_CACHE'):
    atexit.register(shutil.rmtree, _cache, True)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.1')

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

# Test files that share a session fixture run in the same xdist worker (pytest.ini: each file
# whole in one worker), so the fixture is made once: test_reliability.py damages copies of
# test_launch.py's G2P run (g2p_run, ~30 s to train).
SAME_WORKER = {'test_reliability.py': 'test_launch.py'}


def pytest_xdist_make_scheduler(config, log):
  if config.getoption('dist') != 'loadfile':
    return None
  from xdist.scheduler import LoadFileScheduling  # pylint: disable=g-import-not-at-top

  class Scheduling(LoadFileScheduling):
    def _split_scope(self, nodeid: str) -> str:
      scope = super()._split_scope(nodeid)
      head, _, name = scope.rpartition('/')
      return f'{head}/{SAME_WORKER[name]}' if name in SAME_WORKER else scope

    def _assign_work_unit(self, node) -> None:
      # The longest files first (longest processing time first), so that the workers finish
      # together instead of one of them starting a long file at the end. Only the queue of
      # files is reordered: the workers' collections must stay as they are, since the tests
      # are sent to a worker as indices into its own collection.
      def cost(item):
        return -SECONDS.get(item[0].rpartition('/')[2], 1)
      queue = sorted(self.workqueue.items(), key=cost)
      self.workqueue.clear()
      self.workqueue.update(queue)
      super()._assign_work_unit(node)

  return Scheduling(config, log)


# Roughly what each file takes in one worker (seconds, from --durations at 1ef0b4f; it only
# orders them; test_launch.py's figure includes test_reliability.py, which runs beside it).
SECONDS = {'test_launch.py': 143, 'test_speech.py': 114, 'test_summarization.py': 112,
           'test_sharding.py': 107, 'test_rnn.py': 95, 'test_frontends.py': 93,
           'test_own_data.py': 61, 'test_scale.py': 52, 'test_transformer.py': 50,
           'test_captioning.py': 41, 'test_modalities.py': 41, 'test_remote_workdir.py': 40,
           'test_translation_e2e.py': 33,
           'test_old_runs.py': 30, 'test_sweep.py': 28, 'test_decoding.py': 27,
           'test_extending.py': 21, 'test_show_attend_tell.py': 19, 'test_rnn_parts.py': 15,
           'test_pretrained_text.py': 15, 'test_pretrained_tasks.py': 60,
           'test_pretrained_t5.py': 40, 'test_whisper_task.py': 42, 'test_whisper.py': 11,
           'test_translation.py': 10, 'test_export.py': 72, 'test_attention_maps.py': 9,
           'test_cmudict_data.py': 9, 'test_g2p_task.py': 8, 'test_audio_features.py': 7}


@pytest.fixture(scope='session')
def tfds_data_dir(tmp_path_factory) -> str:
  """The real CMUdict dataset, prepared once per test session (a few seconds).

  Set S2S_TEST_DATA_DIR to reuse a prepared directory across sessions.
  """
  from seq2seq_jax.datasets import cmudict as cmudict_builder  # pylint: disable=g-import-not-at-top
  data_dir = os.environ.get('S2S_TEST_DATA_DIR')
  if not data_dir:
    # One copy for the session's xdist workers (their temporary folders share a parent),
    # prepared by the first worker that needs it while the others wait (prepare's lock).
    root = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
      root = root.parent
    data_dir = str(root / 'tfds_cmudict')
  cmudict_builder.prepare(data_dir)
  return data_dir


# The G2P smoke config on one device (one bucket: one compiled train program), 16 steps with
# every loss logged, a checkpoint every 4 steps (8, 12 and 16 are kept: no way back after a
# divergence, test_reliability.py tests that) and evaluations at 8
# and 16: the run that launch.py's tests evaluate, predict from, damage and must reproduce.
G2P_SMOKE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'experiments', 'g2p_cmudict_transformer.py') + ':smoke'
G2P_TINY = ['--config.data.buckets=(24,)', '--config.mesh.data=1',
            '--config.log_every_steps=1', '--config.checkpoint_every_steps=4',
            '--config.eval_every_steps=8', '--config.train_steps=16',
            '--config.way_back_steps=0']   # (no extra checkpoint kept for a divergence)


@pytest.fixture(scope='session')
def g2p_run(tmp_path_factory, tfds_data_dir):
  """The tiny G2P run above, trained once per session in this process through launch.py's
  main (tests/runs.py: cli). Read it, never change it (copy it first).

  Returns:
    A namespace: args (launch.py's flags, without --workdir), workdir, stdout, losses
    ({step: train/loss}).
  """
  import types  # pylint: disable=g-import-not-at-top
  import runs  # pylint: disable=g-import-not-at-top  # tests/runs.py
  args = [f'--config={G2P_SMOKE}', *G2P_TINY, f'--config.data.data_dir={tfds_data_dir}']
  workdir = str(tmp_path_factory.mktemp('g2p_run'))
  code, out, err = runs.cli(*args, f'--workdir={workdir}')
  assert code == 0, (out + err)[-3000:]
  return types.SimpleNamespace(args=args, workdir=workdir, stdout=out,
                               losses=runs.losses(workdir))
