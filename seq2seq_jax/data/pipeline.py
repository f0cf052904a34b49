"""Deterministic, resumable, length-bucketed batching in numpy.

Batch number `step` is a pure function of (data, seed, step): that is what makes a resumed
run exact (the trainer restores the step and asks for the same batch) and what lets every
process of a multi-host job load only its own rows without talking to the others.
"""
import dataclasses
from typing import Iterator, Sequence

import numpy as np

from seq2seq_jax.data.vocab import BOS_ID, EOS_ID
from seq2seq_jax.errors import UserError


@dataclasses.dataclass
class EvalSet:
  """Unique sources of an evaluation split with all their references."""
  sources: list[np.ndarray]      # id arrays, no EOS
  texts: list[str]               # the sources as text
  references: list[list[str]]    # every acceptable output, as text


def bucket_length(n: int, buckets: Sequence[int]) -> int | None:
  """The padded length for a sequence of n tokens.

  Args:
    n: tokens including BOS/EOS.
    buckets: the allowed padded lengths.

  Returns:
    The smallest bucket >= n, or None if n is longer than every bucket.
  """
  for b in sorted(buckets):
    if n <= b:
      return b
  return None


def pad_to(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
  """Stacks id sequences into one array.

  Args:
    seqs: id sequences, each at most `length` long.
    length: the padded length.

  Returns:
    int32 [len(seqs), length], each row right-padded with 0 (PAD_ID).
  """
  out = np.zeros((len(seqs), length), np.int32)
  for i, s in enumerate(seqs):
    if len(s) > length:
      raise ValueError(f'sequence of length {len(s)} does not fit in {length}')
    out[i, :len(s)] = s
  return out


def count_tokens(batch: dict[str, np.ndarray]) -> int:
  """Non-padding source plus target tokens of a batch (for tokens/second)."""
  return int(np.count_nonzero(batch['inputs']) + np.count_nonzero(batch['targets']))


class Batcher:
  """Length-bucketed batches of (source, target) pairs, a pure function of the step."""

  def __init__(self, src: Sequence[np.ndarray], tgt: Sequence[np.ndarray], *, batch_size: int,
               buckets: Sequence[int], seed: int, shuffle: bool = True,
               process_index: int = 0, process_count: int = 1):
    """Groups pairs by length.

    Args:
      src: source id arrays without BOS/EOS.
      tgt: target id arrays without BOS/EOS.
      batch_size: GLOBAL batch size (all processes together).
      buckets: padded lengths; a pair goes to the smallest bucket holding len + 1 of both
        sides (EOS on the source and target, BOS on the decoder input). Longer pairs are
        dropped and counted in `num_dropped`. Pairs of a bucket holding fewer than
        batch_size pairs never make a full training batch; `num_unbatched` counts them.
      seed: shuffling seed (>= 0).
      shuffle: False: get_batch walks the buckets in data order (epoch_batches never
        shuffles).
      process_index: which contiguous slice of each global batch this process loads.
      process_count: number of slices.
    """
    if len(src) != len(tgt):
      raise ValueError(f'{len(src)} sources but {len(tgt)} targets')
    if batch_size <= 0 or not buckets or min(buckets) < 2:
      raise UserError(f'need batch_size > 0 and buckets >= 2, got {batch_size}, {buckets}')
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index {process_index} not in [0, {process_count})')
    if batch_size % process_count:
      raise UserError(f'batch size {batch_size} is not divisible by {process_count} processes')
    self.batch_size = batch_size
    self.buckets = tuple(sorted(buckets))
    self.seed = seed
    self.shuffle = shuffle
    self.rows = batch_size // process_count
    self.row0 = process_index * self.rows
    self.src = list(src)
    self.tgt = list(tgt)
    need = np.array([max(len(s), len(t)) + 1 for s, t in zip(src, tgt)], np.int64)
    edges = np.asarray(self.buckets)
    which = np.searchsorted(edges, need, side='left')  # first bucket >= need
    self.num_dropped = int(np.sum(which >= len(edges)))
    self.members = [np.flatnonzero(which == b) for b in range(len(edges))]
    self.batches_per_epoch = sum(len(m) // batch_size for m in self.members)
    self.num_unbatched = sum(len(m) for m in self.members if len(m) < batch_size)
    if shuffle and self.batches_per_epoch == 0:
      raise UserError(f'no bucket holds a full batch of {batch_size} pairs '
                      f'({len(src)} pairs, buckets {self.buckets})')
    self._plan_epoch = -1
    self._plan: list[tuple[int, np.ndarray]] = []

  def _epoch_plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    """(bucket index, pair indices) of every full batch of an epoch, in batch order.

    Each epoch shuffles every bucket, cuts it into full single-bucket batches (the
    remainder, < batch_size pairs per bucket, waits for another epoch's shuffle) and
    shuffles the batch order, all from rng(seed, epoch): no state beyond the step.
    """
    if epoch != self._plan_epoch:
      rng = np.random.default_rng([self.seed, epoch])
      plan = []
      for b, members in enumerate(self.members):
        order = rng.permutation(members) if self.shuffle else members
        n = len(order) // self.batch_size
        plan += [(b, order[i * self.batch_size:(i + 1) * self.batch_size]) for i in range(n)]
      if self.shuffle:
        plan = [plan[i] for i in rng.permutation(len(plan))]
      self._plan = plan
      self._plan_epoch = epoch
    return self._plan

  def _make(self, bucket: int, idx: Sequence[int]) -> dict[str, np.ndarray]:
    length = self.buckets[bucket]
    rows = idx[self.row0:self.row0 + self.rows]
    src = [np.append(self.src[i], EOS_ID) for i in rows]
    dec = [np.insert(self.tgt[i], 0, BOS_ID) for i in rows]
    tgt = [np.append(self.tgt[i], EOS_ID) for i in rows]
    out = {'inputs': pad_to(src, length), 'decoder_inputs': pad_to(dec, length),
           'targets': pad_to(tgt, length)}
    if len(rows) < self.rows:  # padding rows of an eval batch: all zero, weight 0
      out = {k: np.pad(v, ((0, self.rows - len(rows)), (0, 0))) for k, v in out.items()}
    return out

  def get_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of global training batch number `step`.

    Args:
      step: 0-based global batch number; any order (a resumed run starts mid-epoch).

    Returns:
      int32 'inputs' (src + EOS), 'decoder_inputs' (BOS + tgt), 'targets' (tgt + EOS),
      each [batch_size // process_count, bucket length], right-padded with 0.
    """
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    if not self.batches_per_epoch:
      raise UserError(f'no bucket holds a full batch of {self.batch_size} pairs')
    epoch, i = divmod(step, self.batches_per_epoch)
    bucket, idx = self._epoch_plan(epoch)[i]
    return self._make(bucket, idx)

  def epoch_batches(self) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over every kept pair, for evaluation loss.

    Yields:
      Batches like get_batch's, bucket by bucket in data order; each bucket's last batch
      is padded with all-zero rows (weight 0), so every batch has the same row count.
    """
    for b, members in enumerate(self.members):
      for start in range(0, len(members), self.batch_size):
        yield self._make(b, members[start:start + self.batch_size])
