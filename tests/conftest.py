"""Shared test setup. Eight simulated CPU devices, so sharding is exercised everywhere.

The flag must be set before jax is first imported, hence at the top of conftest.
"""
import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()
