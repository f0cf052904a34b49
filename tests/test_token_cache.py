"""The token cache (data/token_cache.py): tokenized pairs in array_record, built once, read a
batch at a time by the batchers, per process; and the translation task over it."""
import multiprocessing
import os
import sys

import ml_collections
import numpy as np
import pytest

from seq2seq_jax.data import packing, pipeline, spm, token_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'experiments'))
from common import translation_data  # pylint: disable=g-import-not-at-top,wrong-import-position


def _text_pairs(n, seed=0):
  rng = np.random.default_rng(seed)
  return [(' '.join(map(str, rng.integers(0, 500, rng.integers(1, 12)))),
           ' '.join(map(str, rng.integers(0, 500, rng.integers(1, 12))))) for _ in range(n)]


def _encode(chunk):
  """Words -> ids (each word is a number): a vocabulary without a model file."""
  return ([np.array([int(w) + 4 for w in s.split()], np.int32) for s, _ in chunk],
          [np.array([int(w) + 4 for w in t.split()], np.int32) for _, t in chunk])


def _chunks(pairs, size=64):
  for i in range(0, len(pairs), size):
    yield pairs[i:i + size]


@pytest.mark.parametrize('vocab_size,dtype', [(504, 'uint16'), (70_000, 'int32')])
def test_cache_round_trips_every_pair(tmp_path, vocab_size, dtype):
  pairs = _text_pairs(300)
  cached = token_cache.build(str(tmp_path / 'c' / 'train'), _chunks(pairs), _encode,
                             vocab_size=vocab_size, source={'k': 1})
  src, tgt = _encode(pairs)
  assert cached.meta['dtype'] == dtype and cached.meta['num_pairs'] == len(cached) == 300
  np.testing.assert_array_equal(cached.src_lens, [len(s) for s in src])
  np.testing.assert_array_equal(cached.tgt_lens, [len(t) for t in tgt])
  idx = [299, 0, 7, 7, 150]  # any order, repeats
  got_src, got_tgt = cached.get(idx)
  for i, s, t in zip(idx, got_src, got_tgt):
    assert s.dtype == np.int32
    np.testing.assert_array_equal(s, src[i])
    np.testing.assert_array_equal(t, tgt[i])
  assert sorted(os.listdir(tmp_path / 'c')) == ['train.array_record', 'train.json',
                                                 'train.lengths.npy']


def test_open_or_build_builds_once_and_rebuilds_for_another_source(tmp_path):
  prefix = str(tmp_path / 'train')
  pairs = _text_pairs(100)
  calls = []

  def chunks():
    calls.append(1)
    return _chunks(pairs)

  a, built_a = token_cache.open_or_build(prefix, chunks, _encode, vocab_size=600,
                                         source={'corpus': 'x'})
  b, built_b = token_cache.open_or_build(prefix, chunks, _encode, vocab_size=600,
                                         source={'corpus': 'x'})
  assert (built_a, built_b, len(calls)) == (True, False, 1)  # the second never tokenized
  np.testing.assert_array_equal(a.src_lens, b.src_lens)
  c, built_c = token_cache.open_or_build(prefix, lambda: _chunks(pairs[:40]), _encode,
                                         vocab_size=600, source={'corpus': 'y'})
  assert built_c and len(c) == 40


def test_an_interrupted_build_leaves_no_cache_that_looks_complete(tmp_path):
  prefix = str(tmp_path / 'train')

  def failing():
    yield from _chunks(_text_pairs(64))
    raise KeyboardInterrupt  # the user pressed Ctrl-C half way

  with pytest.raises(KeyboardInterrupt):
    token_cache.build(prefix, failing(), _encode, vocab_size=600, source={})
  assert [f for f in os.listdir(tmp_path) if not f.endswith('.lock')] == []
  _, built = token_cache.open_or_build(prefix, lambda: _chunks(_text_pairs(10)), _encode,
                                       vocab_size=600, source={})
  assert built


def _build_in_process(prefix, out):
  _, built = token_cache.open_or_build(prefix, lambda: _chunks(_text_pairs(2000)), _encode,
                                       vocab_size=600, source={'corpus': 'shared'})
  out.put(built)


def test_concurrent_processes_build_once(tmp_path):
  """Processes of one job sharing a workdir: one tokenizes, the others wait and open it."""
  ctx = multiprocessing.get_context('spawn')
  out = ctx.Queue()
  procs = [ctx.Process(target=_build_in_process, args=(str(tmp_path / 'train'), out))
           for _ in range(3)]
  for p in procs:
    p.start()
  for p in procs:
    p.join(120)
  assert [p.exitcode for p in procs] == [0, 0, 0]
  assert sorted(out.get(timeout=5) for _ in procs) == [False, False, True]


class _CountingPairs(token_cache.CachedPairs):
  """The real cache, recording which records were read."""

  def __init__(self, prefix):
    super().__init__(prefix)
    self.read = []

  def get(self, indices):
    self.read.extend(int(i) for i in indices)
    return super().get(indices)


@pytest.mark.parametrize('packed', [True, False])
def test_batches_from_the_cache_equal_batches_from_memory_and_each_process_reads_its_rows(
    tmp_path, packed):
  pairs = _text_pairs(600)
  token_cache.build(str(tmp_path / 'train'), _chunks(pairs), _encode, vocab_size=600,
                    source={})
  src, tgt = _encode(pairs)

  def make(data, **kw):
    if packed:
      return packing.PackedBatcher(*data, batch_size=8, max_len=10, seed=3, **kw)
    return pipeline.TokenBatcher(*data, batch_size=8, buckets=(4, 8, 12), max_len=10, seed=3,
                                 **kw)

  in_memory = make((src, tgt))
  whole = make((_CountingPairs(str(tmp_path / 'train')), None))
  halves = [make((_CountingPairs(str(tmp_path / 'train')), None), process_index=p,
                 process_count=2) for p in range(2)]
  assert whole.num_dropped == in_memory.num_dropped > 0  # pairs of 10+ ids
  for step in (0, 5, whole.batches_per_epoch + 2):  # into the second epoch
    want = in_memory.get_batch(step)
    got = whole.get_batch(step)
    parts = [h.get_batch(step) for h in halves]
    assert set(got) == set(want)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])
      np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), want[k])
  # Each process read only the pairs of its own rows: together what the whole read.
  assert not set(halves[0].pairs.read) & set(halves[1].pairs.read)
  assert sorted(halves[0].pairs.read + halves[1].pairs.read) == sorted(whole.pairs.read)


def test_reservoir_sample_is_uniform_deterministic_and_holds_small_corpora_whole():
  items = [str(i) for i in range(10)]
  assert spm._sample(iter(items), 20, seed=0) == items  # pylint: disable=protected-access
  counts = np.zeros(1000)
  for seed in range(400):
    sample = spm._sample((str(i) for i in range(1000)), 100, seed)  # pylint: disable=protected-access
    assert len(set(sample)) == 100
    counts[[int(s) for s in sample]] += 1
  assert spm._sample(map(str, range(1000)), 100, 7) == spm._sample(map(str, range(1000)), 100, 7)  # pylint: disable=protected-access
  # Each item is kept with probability 0.1: 40 of 400 draws expected; the first and the
  # last hundred items alike (a biased reservoir favours one end).
  assert 30 < counts[:100].mean() < 50 and 30 < counts[-100:].mean() < 50


def _task_config(tmp_path, **data):
  from seq2seq_jax.tasks import translation  # pylint: disable=g-import-not-at-top
  src, tgt = tmp_path / 'train.en', tmp_path / 'train.de'
  pairs = _text_pairs(400, seed=1)
  src.write_text(''.join(s + '\n' for s, _ in pairs))
  tgt.write_text(''.join(t + '\n' for _, t in pairs))
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = translation_data(source='files', train_files=(str(src), str(tgt)),
                            eval_files=(str(src), str(tgt)), test_files=(str(src), str(tgt)),
                            vocab_size=120, max_len=16, spm_train_sentences=300, **data)
  return c, translation.Task


def test_translation_trains_from_the_cache_reads_it_on_restart_and_rebuilds_for_new_files(
    tmp_path, capfd):
  config, task_class = _task_config(tmp_path)
  workdir = str(tmp_path / 'w')
  batches = {}
  for cache in (False, True, True):  # in memory; first start with the cache; a restart
    config.data.token_cache = cache
    task = task_class(config)
    task.setup(workdir)
    data = task.train_data()
    assert isinstance(data[0], token_cache.CachedPairs) == cache
    b = task.make_batcher(*data, batch_size=4, seed=0, shuffle=True).get_batch(11)
    batches.setdefault('batch', b)
    for k in b:
      np.testing.assert_array_equal(b[k], batches['batch'][k])
  err = capfd.readouterr().err
  assert err.count('tokenizing into') == 1 and 'read from the token cache' in err
  # The training file changes: the cache is rebuilt from it, not read stale.
  with open(config.data.train_files[0], 'a') as f, open(config.data.train_files[1], 'a') as g:
    f.write('1 2 3\n')
    g.write('4 5\n')
  os.utime(config.data.train_files[0], (1, 1))  # another size and time
  task = task_class(config)
  task.setup(workdir)
  data = task.train_data()
  assert len(data[0]) == 401
  assert 'rebuilding' in capfd.readouterr().err
