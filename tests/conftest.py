"""Shared test setup. Eight simulated CPU devices, so sharding is exercised everywhere.

The flag must be set before jax is first imported, hence at the top of conftest.

Compiles are most of the suite's time, and many tests compile the same step (the same tiny
config set up again, the same run relaunched in a subprocess after a kill). JAX's persistent
compilation cache, shared through the environment with every launch.py subprocess, compiles
each of them once per test session: a fresh directory, removed at exit (S2S_TEST_JAX_CACHE
names one to keep between sessions).
"""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()

if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = os.environ.get('S2S_TEST_JAX_CACHE') or tempfile.mkdtemp(prefix='s2s-jax-cache-')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  if not os.environ.get('S2S_TEST_JAX_CACHE'):
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope='session')
def tfds_data_dir(tmp_path_factory) -> str:
  """The real CMUdict dataset, prepared once per test session (a few seconds).

  Set S2S_TEST_DATA_DIR to reuse a prepared directory across sessions.
  """
  from seq2seq_jax.data import cmudict_builder  # pylint: disable=g-import-not-at-top
  data_dir = os.environ.get('S2S_TEST_DATA_DIR') or str(tmp_path_factory.mktemp('tfds'))
  cmudict_builder.prepare(data_dir)
  return data_dir
