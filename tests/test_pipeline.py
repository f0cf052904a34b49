"""The bucketed batcher: determinism, coverage, buckets, row layout and per-process shards."""
import collections
import time

import numpy as np
import pytest

from seq2seq_jax.data.pipeline import TokenBatcher as Batcher, bucket_length, count_tokens, pad_to
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID
from seq2seq_jax.errors import UserError

BUCKETS = (6, 9, 13)


def _pairs(n, seed=0, max_len=12):
  """n distinct random (src, tgt) pairs of ids >= 4, lengths 1..max_len-1."""
  rng = np.random.default_rng(seed)
  seen, src, tgt = set(), [], []
  while len(src) < n:
    s = rng.integers(4, 30, rng.integers(1, max_len)).astype(np.int32)
    t = rng.integers(4, 30, rng.integers(1, max_len)).astype(np.int32)
    if (tuple(s), tuple(t)) not in seen:
      seen.add((tuple(s), tuple(t)))
      src.append(s)
      tgt.append(t)
  return src, tgt


def _rows(batch):
  """The (src, tgt) pairs of a batch's non-padding rows, checking the row layout."""
  out = []
  for inp, dec, tgt in zip(batch['inputs'], batch['decoder_inputs'], batch['targets']):
    if not tgt.any():  # an eval padding row: all zero everywhere
      assert not inp.any() and not dec.any()
      continue
    n, m = int(np.count_nonzero(inp)), int(np.count_nonzero(tgt))
    assert inp[n - 1] == EOS_ID and not inp[n:].any()          # src + EOS, then padding
    assert tgt[m - 1] == EOS_ID and not tgt[m:].any()          # tgt + EOS, then padding
    assert dec[0] == BOS_ID and (dec[1:m] == tgt[:m - 1]).all() and not dec[m:].any()
    out.append((tuple(inp[:n - 1]), tuple(tgt[:m - 1])))
  return out


def _key(src, tgt):
  return [(tuple(s), tuple(t)) for s, t in zip(src, tgt)]


def test_a_batch_is_a_pure_function_of_seed_and_step():
  src, tgt = _pairs(500)
  a = Batcher(src, tgt, batch_size=16, buckets=BUCKETS, seed=1)
  b = Batcher(src, tgt, batch_size=16, buckets=BUCKETS, seed=1)
  c = Batcher(src, tgt, batch_size=16, buckets=BUCKETS, seed=2)
  # b is asked out of order and across epochs (as after a resume); a walks in order.
  walk = {s: a.get_batch(s) for s in range(2 * a.batches_per_epoch + 2)}
  for step in (2 * a.batches_per_epoch + 1, 5, a.batches_per_epoch + 3, 0, 5):
    x, y = walk[step], b.get_batch(step)
    assert set(x) == {'inputs', 'decoder_inputs', 'targets'}
    for k in x:
      assert x[k].dtype == np.int32
      np.testing.assert_array_equal(x[k], y[k])
  differs = [not np.array_equal(a.get_batch(s)['targets'], c.get_batch(s)['targets'])
             for s in range(4)]
  assert all(differs)


def test_each_pair_once_per_epoch_when_buckets_divide_evenly():
  # 8 pairs per bucket-length class, so every bucket splits into whole batches of 8.
  rng = np.random.default_rng(3)
  src, tgt = [], []
  for length, count in ((3, 24), (7, 16), (11, 32)):
    for _ in range(count):
      src.append(rng.integers(4, 99, length).astype(np.int32))
      tgt.append(rng.integers(4, 99, rng.integers(1, length + 1)).astype(np.int32))
  bt = Batcher(src, tgt, batch_size=8, buckets=BUCKETS, seed=0)
  assert bt.batches_per_epoch == 9 and bt.num_dropped == 0 and bt.num_unbatched == 0
  epochs = []
  for e in range(2):
    seen = [r for s in range(e * 9, (e + 1) * 9) for r in _rows(bt.get_batch(s))]
    assert collections.Counter(seen) == collections.Counter(_key(src, tgt))
    epochs.append(seen)
  assert epochs[0] != epochs[1]  # a new order every epoch
  # Batch order is shuffled too, so the buckets interleave rather than run short-to-long.
  lengths = [bt.get_batch(s)['inputs'].shape[1] for s in range(9)]
  assert sorted(lengths) == [6] * 3 + [9] * 2 + [13] * 4 and lengths != sorted(lengths)


def test_epoch_leaves_out_only_bucket_remainders_and_respects_buckets():
  src, tgt = _pairs(400)
  bt = Batcher(src, tgt, batch_size=8, buckets=BUCKETS, seed=0)
  seen = []
  for step in range(bt.batches_per_epoch):
    batch = bt.get_batch(step)
    length = batch['inputs'].shape[1]
    assert all(v.shape == (8, length) for v in batch.values())
    for s, t in _rows(batch):
      assert bucket_length(max(len(s), len(t)) + 1, BUCKETS) == length  # smallest that fits
    seen += _rows(batch)
  assert len(seen) == len(set(seen)) == 8 * bt.batches_per_epoch
  per_bucket = collections.Counter(bucket_length(max(len(s), len(t)) + 1, BUCKETS)
                                   for s, t in zip(src, tgt))
  assert bt.batches_per_epoch == sum(n // 8 for n in per_bucket.values())
  assert set(seen) <= set(_key(src, tgt))


def test_too_long_pairs_are_dropped_and_counted():
  src, tgt = _pairs(300, max_len=16)
  bt = Batcher(src, tgt, batch_size=4, buckets=BUCKETS, seed=0, shuffle=False)
  too_long = [k for k, s, t in zip(_key(src, tgt), src, tgt) if max(len(s), len(t)) + 1 > 13]
  assert too_long and bt.num_dropped == len(too_long)
  covered = [r for b in bt.epoch_batches() for r in _rows(b)]
  assert not set(too_long) & set(covered)
  assert len(covered) == len(src) - len(too_long)


def test_small_buckets_are_counted_as_unbatched():
  src, tgt = _pairs(200)
  bt = Batcher(src, tgt, batch_size=64, buckets=(3, 13), seed=0)
  small = sum(max(len(s), len(t)) + 1 <= 3 for s, t in zip(src, tgt))
  assert 0 < small < 64 and bt.num_unbatched == small
  lengths = {bt.get_batch(s)['inputs'].shape[1] for s in range(3 * bt.batches_per_epoch)}
  assert lengths == {13}


@pytest.mark.parametrize('shuffle', [True, False])
def test_process_shards_concatenate_to_the_global_batch(shuffle):
  src, tgt = _pairs(300)
  whole = Batcher(src, tgt, batch_size=12, buckets=BUCKETS, seed=0, shuffle=shuffle)
  parts = [Batcher(src, tgt, batch_size=12, buckets=BUCKETS, seed=0, shuffle=shuffle,
                   process_index=i, process_count=3) for i in range(3)]
  for step in (0, 4, whole.batches_per_epoch + 1):
    shards = [p.get_batch(step) for p in parts]
    for k, v in whole.get_batch(step).items():
      assert all(s[k].shape == (4, v.shape[1]) for s in shards)
      np.testing.assert_array_equal(np.concatenate([s[k] for s in shards]), v)
  eval_shards = zip(*[p.epoch_batches() for p in parts])
  for full, shards in zip(whole.epoch_batches(), eval_shards, strict=True):
    for k, v in full.items():
      np.testing.assert_array_equal(np.concatenate([s[k] for s in shards]), v)


def test_unshuffled_batches_follow_data_order():
  src, tgt = _pairs(200)
  bt = Batcher(src, tgt, batch_size=8, buckets=(13,), seed=0, shuffle=False)
  seen = [r for s in range(bt.batches_per_epoch) for r in _rows(bt.get_batch(s))]
  assert seen == _key(src, tgt)[:len(seen)]


def test_epoch_batches_cover_everything_once_and_pad_with_zero_rows():
  src, tgt = _pairs(50)
  bt = Batcher(src, tgt, batch_size=8, buckets=BUCKETS, seed=0, shuffle=False)
  batches = list(bt.epoch_batches())
  assert all(b['inputs'].shape[0] == 8 for b in batches)
  covered = [r for b in batches for r in _rows(b)]
  assert collections.Counter(covered) == collections.Counter(_key(src, tgt))
  padding_rows = sum(int((~b['targets'].any(axis=1)).sum()) for b in batches)
  assert padding_rows == 8 * len(batches) - 50 > 0
  # Independent of the seed: evaluation is always the same pass.
  other = list(Batcher(src, tgt, batch_size=8, buckets=BUCKETS, seed=5).epoch_batches())
  assert all(np.array_equal(x['inputs'], y['inputs']) for x, y in zip(batches, other))


def test_bad_arguments():
  src, tgt = _pairs(20)
  with pytest.raises(UserError, match='divisible'):
    Batcher(src, tgt, batch_size=10, buckets=(13,), seed=0, process_count=3)
  with pytest.raises(UserError, match='full batch'):
    Batcher(src, tgt, batch_size=64, buckets=(13,), seed=0)
  with pytest.raises(ValueError):
    Batcher(src, tgt[:-1], batch_size=4, buckets=(13,), seed=0)


def test_plan_for_a_dictionary_sized_dataset_is_fast():
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 20, 2 * 135_000)
  seqs = np.split(rng.integers(4, 30, lengths.sum()).astype(np.int32), np.cumsum(lengths)[:-1])
  src, tgt = seqs[::2], seqs[1::2]
  t0 = time.perf_counter()
  bt = Batcher(src, tgt, batch_size=256, buckets=(10, 14, 20, 30), seed=0)
  bt.get_batch(bt.batches_per_epoch + 7)  # builds the epoch-1 plan and one batch
  # ~0.1 s on one busy core; a generous bound so a loaded machine does not flake.
  assert time.perf_counter() - t0 < 3.0


def test_bucket_length_pad_to_and_count_tokens():
  assert bucket_length(1, (9, 5)) == 5 and bucket_length(5, (9, 5)) == 5
  assert bucket_length(6, (9, 5)) == 9 and bucket_length(10, (9, 5)) is None
  out = pad_to([np.array([5, 6]), np.array([7]), np.array([], np.int32)], 4)
  assert out.dtype == np.int32
  np.testing.assert_array_equal(out, [[5, 6, 0, 0], [7, 0, 0, 0], [0, 0, 0, 0]])
  with pytest.raises(ValueError):
    pad_to([np.arange(5)], 4)
  batch = {'inputs': out, 'decoder_inputs': out, 'targets': out[:2, :1]}
  assert count_tokens(batch) == 3 + 2


def test_feature_batches_pad_targets_to_their_frame_buckets_longest():
  """Speech-style batches: the targets of each frame bucket are padded to its longest target
  (+ EOS) rounded up to 8, at most target_len; every row keeps its whole target."""
  from seq2seq_jax.data.features import FeatureBatcher  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  # Short inputs carry 1-5 ids, long ones 10-30 (and 40: dropped, as 40 + EOS > 32).
  src = [np.zeros((int(rng.integers(5, 10)), 3), np.float32) for _ in range(8)]
  src += [np.zeros((int(rng.integers(11, 20)), 3), np.float32) for _ in range(9)]
  tgt = [rng.integers(4, 30, int(rng.integers(1, 6))).astype(np.int32) for _ in range(8)]
  tgt += [rng.integers(4, 30, n).astype(np.int32) for n in (10, 12, 20, 30, 11, 13, 15, 17, 40)]
  batcher = FeatureBatcher(src, tgt, batch_size=4, target_len=32, seed=0, frame_buckets=(10, 20))
  assert batcher.bucket_target_len == [8, 32] and batcher.num_dropped == 1
  seen = 0
  for step in range(batcher.batches_per_epoch):
    batch = batcher.get_batch(step)
    frames = batch['inputs'].shape[1]
    assert batch['targets'].shape == batch['decoder_inputs'].shape
    assert batch['targets'].shape[1] == (8 if frames == 10 else 32)
    for row, dec in zip(batch['targets'], batch['decoder_inputs']):
      n = int(np.argmax(row == EOS_ID))
      assert row[n] == EOS_ID and dec[0] == BOS_ID and np.array_equal(dec[1:n + 1], row[:n])
      assert any(np.array_equal(row[:n], t) for t in tgt)
      seen += 1
  assert seen == 16


def _signature(batch):
  return tuple((k, v.shape, str(v.dtype)) for k, v in sorted(batch.items()))


def test_shape_examples_are_one_batch_of_every_shape_training_meets():
  """What the trainer compiles ahead (config.precompile_threads): one batch per shape, and
  exactly the shapes three epochs of get_batch return, a bucket too small for a batch left
  out; feature batches carry their bucket's own target width."""
  from seq2seq_jax.data.features import FeatureBatcher  # pylint: disable=g-import-not-at-top
  src, tgt = _pairs(300)
  rng = np.random.default_rng(1)
  frames = [int(n) for n in rng.integers(3, 40, 300)]
  batchers = [Batcher(src, tgt, batch_size=16, buckets=(3,) + BUCKETS, seed=0),
              FeatureBatcher([np.zeros((n, 2), np.float32) for n in frames], tgt, batch_size=16,
                             target_len=16, seed=0, frame_buckets=(4, 10, 20, 40))]
  for bt in batchers:
    ahead = [_signature(b) for b in bt.shape_examples()]
    met = {_signature(bt.get_batch(s)) for s in range(3 * bt.batches_per_epoch)}
    assert len(ahead) == len(set(ahead)) == len(met) >= 3 and set(ahead) == met, (ahead, met)
    # The left-out bucket is really there, holding fewer examples than a batch.
    assert 0 < min(len(m) for m in bt.members) < 16
