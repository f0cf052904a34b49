"""Deterministic, resumable batching in numpy: the Batcher interface and token batches.

Every batcher (bucketed tokens here, packed tokens in packing.py, images and audio features
in features.py) has one interface, `Batcher`: `get_batch(step)` for training,
`epoch_batches()` for evaluation loss, `num_dropped` and `batches_per_epoch`. Batch number
`step` is a pure function of (data, seed, step): that is what makes a resumed run exact (the
trainer restores the step and asks for the same batch) and what lets every process of a
multi-host job load only its own rows without talking to the others.
"""
import dataclasses
import sys
from typing import Iterator, Sequence

import numpy as np

from seq2seq_jax.data import token_cache
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID
from seq2seq_jax.errors import UserError


@dataclasses.dataclass
class EvalSet:
  """Unique sources of an evaluation split with all their references."""
  sources: list[np.ndarray]      # model inputs: id arrays (no EOS), features or images
  texts: list[str]               # the sources as text (a word, a sentence, a file path)
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
  """Non-padding source plus target tokens of a batch (for tokens/second).

  Source tokens are ids > 0 for token inputs, real frames ('inputs_mask') for features, 10 ms
  frames for waveforms (16 kHz samples / 160, what the audio frontends make of them), and
  none for images (a picture has no tokens; its targets still count); with cached encoder
  outputs, the encoder's positions.
  """
  if 'encoded_mask' in batch:   # cached encoder outputs (trainer/encoder_cache.py)
    source = np.count_nonzero(batch['encoded_mask'])
  elif 'inputs_mask' in batch:
    source = np.count_nonzero(batch['inputs_mask'])
    if batch['inputs'].ndim == 2 and np.issubdtype(batch['inputs'].dtype, np.floating):
      source //= 160
  elif np.issubdtype(batch['inputs'].dtype, np.integer):
    source = np.count_nonzero(batch['inputs'])
  else:
    source = 0
  return int(source + np.count_nonzero(batch['targets']))


def collate_tokens(sources: Sequence[np.ndarray], rows: int,
                   buckets: Sequence[int]) -> dict[str, np.ndarray]:
  """Source id arrays (no EOS) as a decoding batch of `rows` rows: EOS appended, padded to a
  length from `buckets` (or a multiple of 32 beyond them) so decoding compiles a bounded
  number of times; rows past len(sources) are all padding."""
  if len(sources) > rows:
    raise ValueError(f'{len(sources)} sources for {rows} rows')
  longest = max((len(s) for s in sources), default=0) + 1
  length = bucket_length(longest, buckets) or int(np.ceil(longest / 32) * 32)
  seqs = [np.append(s, EOS_ID).astype(np.int32) for s in sources]
  seqs += [np.zeros((0,), np.int32)] * (rows - len(seqs))
  return {'inputs': pad_to(seqs, length)}


def pad_targets(tgt: Sequence[np.ndarray], length: int) -> dict[str, np.ndarray]:
  """'decoder_inputs' (BOS + tgt) and 'targets' (tgt + EOS), right-padded to `length`."""
  return {'decoder_inputs': pad_to([np.insert(t, 0, BOS_ID) for t in tgt], length),
          'targets': pad_to([np.append(t, EOS_ID) for t in tgt], length)}


class Batcher:
  """The interface of every batcher, and the argument checks they share.

  Subclasses set `batches_per_epoch` and `num_dropped` (examples that fit no batch shape)
  and implement `get_batch` and `epoch_batches`.
  """
  batches_per_epoch: int = 0
  num_dropped: int = 0

  def __init__(self, num_examples: int, num_targets: int, *, batch_size: int, seed: int,
               shuffle: bool, process_index: int, process_count: int):
    """Checks the arguments every batcher takes.

    Args:
      num_examples: how many sources.
      num_targets: how many targets (must equal num_examples).
      batch_size: GLOBAL batch size (all processes together).
      seed: shuffling seed (>= 0).
      shuffle: False: batches in data order.
      process_index: which contiguous slice of each global batch this process loads.
      process_count: number of slices.
    """
    if num_examples != num_targets:
      raise ValueError(f'{num_examples} sources but {num_targets} targets')
    if batch_size <= 0:
      raise UserError(f'batch size must be > 0, got {batch_size}')
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index {process_index} not in [0, {process_count})')
    if batch_size % process_count:
      raise UserError(f'batch size {batch_size} is not divisible by {process_count} processes')
    self.batch_size = batch_size
    self.seed = seed
    self.shuffle = shuffle
    self.rows = batch_size // process_count
    self.row0 = process_index * self.rows

  def get_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of global training batch number `step` (0-based, any order)."""
    raise NotImplementedError

  def shape_examples(self) -> list[dict[str, np.ndarray]]:
    """One training batch (this process's rows) of every shape get_batch returns, so a step
    can be compiled for each before training (config.precompile_threads). Batchers of one
    shape: the first batch."""
    return [self.get_batch(0)]

  def epoch_batches(self) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over every kept example, for evaluation loss; the last batch is
    padded with all-zero rows (weight 0), so every batch has the same row count."""
    raise NotImplementedError

  def _check_step(self, step: int) -> None:
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    if not self.batches_per_epoch:
      raise UserError(f'the data make fewer than one batch of {self.batch_size}')


class BucketBatcher(Batcher):
  """Batches of one bucket (one padded shape) each; subclasses say how a batch is made.

  Each epoch shuffles every bucket, cuts it into full single-bucket batches (the remainder,
  < batch_size examples per bucket, waits for another epoch's shuffle) and shuffles the
  batch order, all from rng(seed, epoch): no state beyond the step.
  """

  def _set_buckets(self, which: np.ndarray, num_buckets: int) -> None:
    """which[i]: the bucket of example i (num_buckets or more: dropped, counted)."""
    self.num_dropped = int(np.sum(which >= num_buckets))
    self.members = [np.flatnonzero(which == b) for b in range(num_buckets)]
    self.batches_per_epoch = sum(len(m) // self.batch_size for m in self.members)
    self.num_unbatched = sum(len(m) for m in self.members if len(m) < self.batch_size)
    if self.shuffle and self.batches_per_epoch == 0:
      raise UserError(f'no bucket holds a full batch of {self.batch_size} examples '
                      f'({len(which)} examples, {self._describe_buckets()})')
    self._plan_epoch = -1
    self._plan: list[tuple[int, np.ndarray]] = []

  def _describe_buckets(self) -> str:
    return f'{len(self.members)} buckets'

  def _make(self, bucket: int, idx: Sequence[int]) -> dict[str, np.ndarray]:
    """The batch of examples `idx` (global rows) of `bucket`: this process's rows only."""
    raise NotImplementedError

  def _local(self, idx: Sequence[int]) -> Sequence[int]:
    return idx[self.row0:self.row0 + self.rows]

  def _pad_rows(self, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pads a short eval batch with all-zero rows (weight 0) to self.rows."""
    missing = self.rows - len(next(iter(out.values())))
    if missing <= 0:
      return out
    return {k: np.pad(v, ((0, missing),) + ((0, 0),) * (v.ndim - 1)) for k, v in out.items()}

  def _epoch_plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    """(bucket index, example indices) of every full batch of an epoch, in batch order."""
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

  def get_batch(self, step: int) -> dict[str, np.ndarray]:
    self._check_step(step)
    epoch, i = divmod(step, self.batches_per_epoch)
    bucket, idx = self._epoch_plan(epoch)[i]
    return self._make(bucket, idx)

  def shape_examples(self) -> list[dict[str, np.ndarray]]:
    """The first members of every bucket that makes training batches (one shape each)."""
    return [self._make(b, members[:self.batch_size]) for b, members in enumerate(self.members)
            if len(members) >= self.batch_size]

  def epoch_batches(self) -> Iterator[dict[str, np.ndarray]]:
    """Bucket by bucket in data order; see Batcher.epoch_batches."""
    for b, members in enumerate(self.members):
      for start in range(0, len(members), self.batch_size):
        yield self._make(b, members[start:start + self.batch_size])


class TokenBatcher(BucketBatcher):
  """Length-bucketed batches of (source ids, target ids) pairs."""

  def __init__(self, src, tgt=None, *, batch_size: int, buckets: Sequence[int], seed: int,
               shuffle: bool = True, process_index: int = 0, process_count: int = 1,
               target_length: int = 0, max_len: int = 0):
    """Groups pairs by length.

    Args:
      src: source id arrays without BOS/EOS, or a token_cache.Pairs (then tgt is None):
        pairs on disk are read a batch at a time, this process's rows only.
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
      target_length: > 0: buckets are by source length alone and every target row is padded
        to target_length (longer targets are dropped and counted): for tasks whose sources
        are much longer than their targets (summarization).
      max_len: > 0: pairs with max_len or more ids on a side are dropped and counted, whatever
        the buckets.
    """
    self.pairs = token_cache.as_pairs(src, tgt)
    super().__init__(len(self.pairs), len(self.pairs), batch_size=batch_size, seed=seed,
                     shuffle=shuffle, process_index=process_index, process_count=process_count)
    if not buckets or min(buckets) < 2:
      raise UserError(f'need buckets >= 2, got {buckets}')
    self.buckets = tuple(sorted(buckets))
    self.target_length = target_length
    src_lens = np.asarray(self.pairs.src_lens, np.int64)
    tgt_lens = np.asarray(self.pairs.tgt_lens, np.int64)
    if target_length:
      need = np.where(tgt_lens < target_length, src_lens + 1, sys.maxsize)
    else:
      need = np.maximum(src_lens, tgt_lens) + 1
    if max_len:
      need = np.where((src_lens < max_len) & (tgt_lens < max_len), need, sys.maxsize)
    self._set_buckets(np.searchsorted(np.asarray(self.buckets), need, side='left'),
                      len(self.buckets))  # first bucket >= need

  def _describe_buckets(self) -> str:
    return f'buckets {self.buckets}'

  def _make(self, bucket: int, idx: Sequence[int]) -> dict[str, np.ndarray]:
    length = self.buckets[bucket]
    srcs, tgts = self.pairs.get(self._local(idx))
    out = {'inputs': pad_to([np.append(s, EOS_ID) for s in srcs], length),
           **pad_targets(tgts, self.target_length or length)}
    return self._pad_rows(out)

  def get_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of global training batch number `step`.

    Args:
      step: 0-based global batch number; any order (a resumed run starts mid-epoch).

    Returns:
      int32 'inputs' (src + EOS), 'decoder_inputs' (BOS + tgt), 'targets' (tgt + EOS),
      each [batch_size // process_count, bucket length], right-padded with 0.
    """
    return super().get_batch(step)
