"""Shared test setup. Eight simulated CPU devices, so sharding is exercised everywhere.

The flag must be set before jax is first imported, hence at the top of conftest.
"""
import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()

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


@pytest.fixture(scope='session')
def tfds_data_dir(tmp_path_factory) -> str:
  """The real CMUdict dataset, prepared once per test session (a few seconds).

  Set S2S_TEST_DATA_DIR to reuse a prepared directory across sessions.
  """
  from seq2seq_jax.datasets import cmudict as cmudict_builder  # pylint: disable=g-import-not-at-top
  data_dir = os.environ.get('S2S_TEST_DATA_DIR') or str(tmp_path_factory.mktemp('tfds'))
  cmudict_builder.prepare(data_dir)
  return data_dir
