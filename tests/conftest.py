"""Shared test setup. Eight simulated CPU devices, so sharding is exercised everywhere.

The flag must be set before jax is first imported, hence at the top of conftest.
"""
import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()

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
