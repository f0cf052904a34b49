"""Example packing: several (source, target) pairs per fixed-length row.

Each row carries segment ids (1, 2, ... per pair; 0 = padding) and positions restarting at 0
for every pair, so the model's attention never crosses pairs (see models/transformer.py).
One fixed shape [batch, max_len] means one compiled train step and almost no padding.
Like pipeline.Batcher, batch `step` is a pure function of (data, seed, step).
"""
from typing import Iterator, Sequence

import numpy as np

from seq2seq_jax.data.vocab import BOS_ID, EOS_ID
from seq2seq_jax.errors import UserError

KEYS = ('inputs', 'decoder_inputs', 'targets', 'inputs_segmentation', 'inputs_position',
        'targets_segmentation', 'targets_position')


def pack_rows(src: Sequence[np.ndarray], tgt: Sequence[np.ndarray], order: np.ndarray,
              max_len: int) -> list[list[int]]:
  """Greedy sequential packing: pairs (in `order`) go into the current row while they fit."""
  rows, row, used_s, used_t = [], [], 0, 0
  for i in order:
    ls, lt = len(src[i]) + 1, len(tgt[i]) + 1
    if row and (used_s + ls > max_len or used_t + lt > max_len):
      rows.append(row)
      row, used_s, used_t = [], 0, 0
    row.append(int(i))
    used_s += ls
    used_t += lt
  if row:
    rows.append(row)
  return rows


class PackedBatcher:
  """Batches of packed rows; same interface as pipeline.Batcher."""

  def __init__(self, src: Sequence[np.ndarray], tgt: Sequence[np.ndarray], *, batch_size: int,
               max_len: int, seed: int, shuffle: bool = True, process_index: int = 0,
               process_count: int = 1):
    if batch_size % process_count:
      raise UserError(f'batch size {batch_size} is not divisible by {process_count} processes')
    keep = [i for i in range(len(src)) if len(src[i]) + 1 <= max_len and len(tgt[i]) + 1 <= max_len]
    self.num_dropped = len(src) - len(keep)
    self.src = [src[i] for i in keep]
    self.tgt = [tgt[i] for i in keep]
    self.batch_size, self.max_len, self.seed, self.shuffle = batch_size, max_len, seed, shuffle
    self.rows = batch_size // process_count
    self.row0 = process_index * self.rows
    self._plan_epoch, self._plan = -1, []
    self.batches_per_epoch = len(self._epoch_plan(0)) // batch_size
    if shuffle and self.batches_per_epoch == 0:
      raise UserError(f'{len(self.src)} pairs pack into fewer than one batch of {batch_size} rows')

  def _epoch_plan(self, epoch: int) -> list[list[int]]:
    if epoch != self._plan_epoch:
      n = len(self.src)
      order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
               else np.arange(n))
      self._plan = pack_rows(self.src, self.tgt, order, self.max_len)
      self._plan_epoch = epoch
    return self._plan

  def _make(self, rows: Sequence[list[int]]) -> dict[str, np.ndarray]:
    out = {k: np.zeros((self.rows, self.max_len), np.int32) for k in KEYS}
    for r, pairs in enumerate(rows[self.row0:self.row0 + self.rows]):
      ps = pt = 0
      for seg, i in enumerate(pairs, 1):
        s = np.append(self.src[i], EOS_ID)
        t = self.tgt[i]
        out['inputs'][r, ps:ps + len(s)] = s
        out['inputs_segmentation'][r, ps:ps + len(s)] = seg
        out['inputs_position'][r, ps:ps + len(s)] = np.arange(len(s))
        out['decoder_inputs'][r, pt:pt + len(t) + 1] = np.insert(t, 0, BOS_ID)
        out['targets'][r, pt:pt + len(t) + 1] = np.append(t, EOS_ID)
        out['targets_segmentation'][r, pt:pt + len(t) + 1] = seg
        out['targets_position'][r, pt:pt + len(t) + 1] = np.arange(len(t) + 1)
        ps += len(s)
        pt += len(t) + 1
    return out

  def get_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of global batch number `step` (0-based)."""
    epoch, i = divmod(step, self.batches_per_epoch)
    plan = self._epoch_plan(epoch)
    return self._make(plan[i * self.batch_size:(i + 1) * self.batch_size])

  def epoch_batches(self) -> Iterator[dict[str, np.ndarray]]:
    """One pass over every pair in data order; the last batch is padded with empty rows."""
    plan = pack_rows(self.src, self.tgt, np.arange(len(self.src)), self.max_len)
    for start in range(0, len(plan), self.batch_size):
      yield self._make(plan[start:start + self.batch_size])
