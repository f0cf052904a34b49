"""The one path from host data to sharded global batches.

`Feed(mesh, global_batch_size)` owns, for one global batch size:
  - the divisibility check (the batch must split evenly over the mesh's batch shards),
  - which rows of each global batch this process loads (`shard_index`, `num_shards`,
    `rows`): a contiguous slice, found from the devices this process holds,
  - the assembly of those rows into global arrays sharded over ('data', 'fsdp'),
  - token counting of a whole global batch.

Processes need not hold separate slices: with a mesh whose batch axes do not span the
processes (e.g. `mesh.data=1, mesh.tensor=2` over two hosts) every process holds the whole
batch, loads the same rows, and the global batch is as large as one process's rows, not
their sum.
"""
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from seq2seq_jax.data import pipeline
from seq2seq_jax.errors import UserError

BATCH_AXES = ('data', 'fsdp')  # the global batch is split over both


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of [batch, ...] arrays: batch split over data x fsdp."""
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_divisor(mesh: Mesh) -> int:
  """How many ways the batch is split; a global batch must be a multiple of it."""
  return mesh.shape['data'] * mesh.shape['fsdp']


class Feed:
  """What this process loads of each global batch, and its assembly into global arrays."""

  def __init__(self, mesh: Mesh, global_batch_size: int, what: str = 'batch_size'):
    """Checks the batch size against the mesh and finds this process's slice.

    Args:
      mesh: the device mesh (axes 'data', 'fsdp', 'tensor').
      global_batch_size: rows of a global batch (all processes together).
      what: the config key the size comes from, for the error message.

    Raises:
      UserError: the size does not split over the batch shards, or this process's devices
        do not hold a contiguous slice of the batch.
    """
    self.mesh = mesh
    self.global_batch_size = int(global_batch_size)
    self.sharding = batch_sharding(mesh)
    divisor = batch_divisor(mesh)
    if self.global_batch_size <= 0 or self.global_batch_size % divisor:
      raise UserError(f'{what}={global_batch_size} is not divisible by the {divisor} batch '
                      f'shards of mesh {dict(mesh.shape)}')
    n = self.global_batch_size
    index_map = self.sharding.addressable_devices_indices_map((n,))
    slices = sorted({(idx[0].start or 0, n if idx[0].stop is None else idx[0].stop)
                     for idx in index_map.values()})
    start, stop = slices[0][0], slices[-1][1]
    contiguous = all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
    span = stop - start
    if not contiguous or n % span or start % span:
      raise UserError("this process's devices do not hold a contiguous slice of the batch; "
                      'reorder the mesh axes')
    self.rows = span                     # rows this process loads
    self.shard_index = start // span     # which slice: rows [start, stop)
    self.num_shards = n // span          # distinct slices (processes may share one)

  @property
  def batcher_args(self) -> dict[str, int]:
    """The slice arguments every data.pipeline.Batcher takes."""
    return {'process_index': self.shard_index, 'process_count': self.num_shards}

  def local_rows(self, rows: Sequence[Any]) -> Sequence[Any]:
    """This process's part of a global batch's rows (a list or an array)."""
    return rows[self.shard_index * self.rows:(self.shard_index + 1) * self.rows]

  def to_global(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """This process's rows of every key -> global arrays sharded over the batch axes."""
    out = {}
    for k, v in local.items():
      if v.shape[0] != self.rows:
        raise ValueError(f'{k!r} has {v.shape[0]} rows; this process loads {self.rows}')
      out[k] = jax.make_array_from_process_local_data(
          self.sharding, v, (self.global_batch_size,) + v.shape[1:])
    return out

  def global_tokens(self, local: dict[str, np.ndarray]) -> int:
    """Source + target tokens of the whole global batch, from this process's rows (every
    slice of a batch holds about as many, so this counts without talking to the others)."""
    return pipeline.count_tokens(local) * self.num_shards
