"""Translation data without a model: corpus readers and their error paths, SentencePiece,
packing, and TFDS translation datasets read by name (offline)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

from seq2seq_jax.data import corpus, packing, spm
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID
from seq2seq_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, lines, end='\n'):
  path.write_bytes(''.join(l + end for l in lines).encode('utf-8'))
  return str(path)


# --- aligned files and TSV -----------------------------------------------------------------------
def test_aligned_files_and_tsv_are_read_in_order(tmp_path):
  s = write(tmp_path / 's.txt', ['hello world', ' good night '])
  t = write(tmp_path / 't.txt', ['hallo welt', 'gute nacht'], end='\r\n')  # Windows lines
  c = corpus.read_aligned_files(s, t)
  assert c.pairs == [('hello world', 'hallo welt'), ('good night', 'gute nacht')]
  assert c.skipped == 0
  tsv = tmp_path / 'c.tsv'
  tsv.write_bytes(b'\xef\xbb\xbfa b\tc d\ne\tf')  # BOM, no final newline
  assert corpus.read_tsv(str(tsv)).pairs == [('a b', 'c d'), ('e', 'f')]


def test_a_lone_carriage_return_does_not_shift_alignment(tmp_path):
  s = write(tmp_path / 's.txt', ['one\rstill one', 'two'])
  t = write(tmp_path / 't.txt', ['eins', 'zwei'])
  assert [p[1] for p in corpus.read_aligned_files(s, t).pairs] == ['eins', 'zwei']


@pytest.mark.parametrize('src_lines,tgt_lines,where,kept', [
    (['a', '', 'c'], ['x', 'y', 'z'], 's.txt:2', 2),          # empty source line
    (['a', 'b', 'c'], ['x', '   ', 'z'], 't.txt:2', 2),       # one-sided: blank target
    (['a', '', 'c'], ['x', '', 'z'], 's.txt:2', 2),           # empty on both sides
    (['a', 'b', 'c', 'd'], ['x', 'y'], 't.txt:3', 2),         # target file shorter
    (['a'], ['x', 'y', 'z'], 's.txt:2', 1),                   # source file shorter
])
def test_bad_aligned_lines_error_names_file_and_line_or_are_skipped(tmp_path, src_lines,
                                                                    tgt_lines, where, kept):
  s = write(tmp_path / 's.txt', src_lines)
  t = write(tmp_path / 't.txt', tgt_lines)
  with pytest.raises(UserError, match=rf'{where.replace(".", "[.]")}: .*bad_pairs=skip'):
    corpus.read_aligned_files(s, t, 'error')
  c = corpus.read_aligned_files(s, t, 'skip')
  assert len(c.pairs) == kept
  assert c.skipped == max(len(src_lines), len(tgt_lines)) - kept
  assert all(a.strip() and b.strip() for a, b in c.pairs)


def test_undecodable_bytes_name_the_file_and_line(tmp_path):
  s = tmp_path / 's.txt'
  s.write_bytes(b'ok\n\xff\xfe broken\nfine\n')
  t = write(tmp_path / 't.txt', ['gut', 'kaputt', 'fein'])
  with pytest.raises(UserError, match=r's[.]txt:2: line is not valid UTF-8'):
    corpus.read_aligned_files(str(s), t)
  assert corpus.read_aligned_files(str(s), t, 'skip').pairs == [('ok', 'gut'), ('fine', 'fein')]


def test_tsv_with_wrong_column_counts_and_empty_sides(tmp_path):
  tsv = write(tmp_path / 'c.tsv', ['a\tb', 'only one column', 'x\ty\tz', 'c\t', '\td', 'e\tf'])
  with pytest.raises(UserError, match=r'c[.]tsv:2: expected 2 tab-separated columns, found 1'):
    corpus.read_tsv(tsv, 'error')
  c = corpus.read_tsv(tsv, 'skip')
  assert c.pairs == [('a', 'b'), ('e', 'f')] and c.skipped == 4
  one_sided = write(tmp_path / 'd.tsv', ['a\tb', '\tonly target'])
  with pytest.raises(UserError, match=r'd[.]tsv:2: the source column is empty'):
    corpus.read_tsv(one_sided)


def test_missing_file_and_unknown_policy_are_user_errors(tmp_path):
  with pytest.raises(UserError, match='corpus file not found'):
    corpus.read_tsv(str(tmp_path / 'nope.tsv'))
  tsv = write(tmp_path / 'c.tsv', ['a\tb'])
  with pytest.raises(UserError, match='bad_pairs'):
    corpus.read_tsv(tsv, 'ignore')


def test_num2words_split_is_fixed_by_the_number():
  val = corpus.read_num2words('validation', 'en', 'de', 400)
  test = corpus.read_num2words('test', 'en', 'de', 400)
  train = corpus.read_num2words('train', 'en', 'de', 400)
  assert len(val.pairs) + len(test.pairs) + len(train.pairs) == 400
  assert not {s for s, _ in val.pairs} & {s for s, _ in train.pairs}
  # A number's split does not depend on how many numbers there are.
  fewer = corpus.read_num2words('test', 'en', 'de', 200).pairs
  assert fewer and fewer == test.pairs[:len(fewer)]
  assert ('twenty-one', 'einundzwanzig') in train.pairs + val.pairs + test.pairs
  with pytest.raises(UserError, match='num2words has no language'):
    corpus.read_num2words('train', 'en', 'xx', 10)


# --- SentencePiece -------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def number_sentences():
  from num2words import num2words  # pylint: disable=g-import-not-at-top
  return [num2words(n) for n in range(0, 3000, 3)]


@pytest.mark.parametrize('model_type', ['bpe', 'unigram', 'word'])
def test_sentencepiece_train_load_round_trip_and_reuse(tmp_path, number_sentences, model_type):
  path = str(tmp_path / 'spm' / 'shared.model')
  assert spm.train_once(lambda: number_sentences, path, vocab_size=120, model_type=model_type)
  sp = spm.load(path)
  assert sp.get_piece_size() <= 120
  assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
  text = 'three hundred and forty-two'
  ids = sp.encode(text)
  assert sp.decode(ids) == text and min(ids) > 3
  mtime = os.path.getmtime(path)
  calls = []
  assert not spm.train_once(lambda: calls.append(1) or number_sentences, path, vocab_size=120,
                            model_type=model_type)
  assert not calls and os.path.getmtime(path) == mtime  # reused, not retrained
  assert spm.load(path).encode(text) == ids


def test_sentencepiece_refuses_other_settings_for_an_existing_model(tmp_path, number_sentences):
  path = str(tmp_path / 'shared.model')
  spm.train_once(lambda: number_sentences, path, vocab_size=120)
  with pytest.raises(UserError, match='vocab_size=120 but the config asks for 200'):
    spm.train_once(lambda: number_sentences, path, vocab_size=200)
  with pytest.raises(UserError, match="model_type='bpe'"):
    spm.train_once(lambda: number_sentences, path, vocab_size=120, model_type='unigram')
  with pytest.raises(UserError, match='spm_model_type'):
    spm.train(number_sentences, str(tmp_path / 'x.model'), vocab_size=100, model_type='wordpiece')


def test_concurrent_processes_train_sentencepiece_once(tmp_path):
  script = textwrap.dedent(f"""
      import sys, time
      sys.path.insert(0, {ROOT!r})
      from seq2seq_jax.data import spm
      def sentences():
        time.sleep(1.0)  # the other process arrives while this one trains
        return ['w%d x%d y%d' % (i, i % 7, i % 13) for i in range(3000)]
      print(spm.train_once(sentences, {str(tmp_path / 'spm' / 'shared.model')!r},
                           vocab_size=100))
  """)
  procs = [subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
  assert [p.returncode for p in procs] == [0, 0]
  assert outs == ['False', 'True']  # one trained, the other waited and loaded
  assert not [f for f in os.listdir(tmp_path / 'spm') if '.tmp' in f]


# --- packing -------------------------------------------------------------------------------------
def random_pairs(n, seed, lo=1, hi=12):
  rng = np.random.default_rng(seed)
  src = [rng.integers(4, 50, rng.integers(lo, hi)).astype(np.int32) for _ in range(n)]
  tgt = [rng.integers(4, 50, rng.integers(lo, hi)).astype(np.int32) for _ in range(n)]
  return src, tgt


def unpack(batch):
  """(row, segment) -> (source ids, target ids) recovered from a packed batch, checking the
  per-segment layout (EOS/BOS, positions, contiguity) on the way."""
  out = {}
  for r in range(batch['inputs'].shape[0]):
    for seg in range(1, int(batch['inputs_segmentation'][r].max()) + 1):
      s_cols = np.flatnonzero(batch['inputs_segmentation'][r] == seg)
      t_cols = np.flatnonzero(batch['targets_segmentation'][r] == seg)
      assert np.all(np.diff(s_cols) == 1) and np.all(np.diff(t_cols) == 1)
      np.testing.assert_array_equal(batch['inputs_position'][r, s_cols], np.arange(len(s_cols)))
      np.testing.assert_array_equal(batch['targets_position'][r, t_cols], np.arange(len(t_cols)))
      src, tgt = batch['inputs'][r, s_cols], batch['targets'][r, t_cols]
      dec = batch['decoder_inputs'][r, t_cols]
      assert src[-1] == EOS_ID and tgt[-1] == EOS_ID and dec[0] == BOS_ID
      np.testing.assert_array_equal(dec[1:], tgt[:-1])
      out[r, seg] = (tuple(src[:-1]), tuple(tgt[:-1]))
    pad = batch['inputs_segmentation'][r] == 0
    assert np.all(batch['inputs'][r][pad] == 0) and np.all(batch['inputs_position'][r][pad] == 0)
    pad = batch['targets_segmentation'][r] == 0
    assert np.all(batch['targets'][r][pad] == 0) and np.all(batch['decoder_inputs'][r][pad] == 0)
  return out


def test_packed_rows_hold_every_pair_once_with_segments_and_positions():
  src, tgt = random_pairs(300, 0)
  src.append(np.arange(4, 40, dtype=np.int32))  # longer than a row: dropped
  tgt.append(np.array([5], np.int32))
  b = packing.PackedBatcher(src, tgt, batch_size=4, max_len=24, seed=3, shuffle=False)
  assert b.num_dropped == 1
  seen = []
  for batch in b.epoch_batches():
    assert set(batch) == set(packing.KEYS)
    assert all(v.dtype == np.int32 and v.shape == (4, 24) for v in batch.values())
    seen += list(unpack(batch).values())
  assert sorted(seen) == sorted((tuple(s), tuple(t)) for s, t in zip(src[:-1], tgt[:-1]))
  assert max(seg for batch in b.epoch_batches() for seg in
             batch['inputs_segmentation'].max(axis=1)) >= 3  # really packed


def test_packed_batches_are_a_pure_function_of_seed_and_step():
  src, tgt = random_pairs(400, 1)
  a = packing.PackedBatcher(src, tgt, batch_size=4, max_len=32, seed=5)
  b = packing.PackedBatcher(src, tgt, batch_size=4, max_len=32, seed=5)
  other = packing.PackedBatcher(src, tgt, batch_size=4, max_len=32, seed=6)
  steps = (0, 7, a.batches_per_epoch, 3 * a.batches_per_epoch + 2)
  for step in reversed(steps):  # any order, as after a resume
    for k in packing.KEYS:
      np.testing.assert_array_equal(a.get_batch(step)[k], b.get_batch(step)[k])
  assert not np.array_equal(a.get_batch(0)['inputs'], other.get_batch(0)['inputs'])
  assert not np.array_equal(a.get_batch(0)['inputs'], a.get_batch(a.batches_per_epoch)['inputs'])
  # Epoch 0 defines the epoch length, so it never wraps around: no pair repeats in it.
  epoch = [p for s in range(a.batches_per_epoch) for p in unpack(a.get_batch(s)).values()]
  assert len(epoch) == len(set(epoch)) > 0.8 * len(src)
  assert all(v.shape == (4, 32) for v in a.get_batch(10 ** 6).values())


def test_each_process_builds_its_slice_of_the_global_batch():
  src, tgt = random_pairs(300, 2)
  whole = packing.PackedBatcher(src, tgt, batch_size=8, max_len=32, seed=0)
  parts = [packing.PackedBatcher(src, tgt, batch_size=8, max_len=32, seed=0, process_index=p,
                                 process_count=2) for p in range(2)]
  for k in packing.KEYS:
    np.testing.assert_array_equal(
        np.concatenate([p.get_batch(9)[k] for p in parts]), whole.get_batch(9)[k])
  with pytest.raises(UserError, match='not divisible'):
    packing.PackedBatcher(src, tgt, batch_size=7, max_len=32, seed=0, process_count=2)
  with pytest.raises(UserError, match='fewer than one batch'):
    packing.PackedBatcher(src[:10], tgt[:10], batch_size=8, max_len=32, seed=0)


def test_first_fit_packing_fills_rows_better_than_sequential_packing():
  src, tgt = random_pairs(2000, 3, hi=20)
  lens_s = np.array([len(s) for s in src])
  lens_t = np.array([len(t) for t in tgt])
  order = np.arange(len(src))
  sequential = packing.pack(lens_s, lens_t, order, 32, open_rows=1)
  first_fit = packing.pack(lens_s, lens_t, order, 32)
  assert len(first_fit) < 0.95 * len(sequential)
  for rows in (sequential, first_fit):
    assert sorted(i for r in rows for i in r) == list(range(len(src)))
    assert all(sum(lens_s[r] + 1) <= 32 and sum(lens_t[r] + 1) <= 32 for r in rows)


# --- TFDS translation datasets by name -----------------------------------------------------------
# tfds.testing.mock_data cannot stand in here in tfds 4.9.10 without TensorFlow: it needs the
# registered wmt14_translate class (whose module `import tensorflow_datasets` does not load)
# and its mocked data source fails on __getitems__. So a local builder with the name, config,
# version and feature spec of wmt14_translate/de-en (translate/wmt.py: Translation(('de',
# 'en')), supervised_keys ('de', 'en')) is prepared as array_record and read back by name
# through the same code path as a real prepared WMT directory.
class Wmt14Translate(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name='de-en')]

  def _info(self):
    return tfds.core.DatasetInfo(builder=self,
                                 features=tfds.features.Translation(languages=('de', 'en')),
                                 supervised_keys=('de', 'en'))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(5), 'validation': self._generate_examples(2)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {'de': f'Satz Nummer {i} für Ärger' if i != 3 else '',  # 3: empty side
                'en': f'sentence number {i}'}


@pytest.fixture(scope='module')
def wmt_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  Wmt14Translate(data_dir=data_dir, file_format='array_record').download_and_prepare()
  return data_dir


def test_tfds_translation_dataset_read_by_name_in_both_directions(wmt_dir):
  c = corpus.read_tfds('wmt14_translate/de-en', 'train', 'en', 'de', wmt_dir, chunk_size=2)
  want = [(f'sentence number {i}', f'Satz Nummer {i} für Ärger') for i in (0, 1, 2, 4)]
  assert sorted(c.pairs) == want and c.skipped == 1  # the empty side is skipped, counted
  back = corpus.read_tfds('wmt14_translate/de-en', 'validation', 'de', 'en', wmt_dir)
  assert sorted(back.pairs) == [(f'Satz Nummer {i} für Ärger', f'sentence number {i}')
                                for i in range(2)]
  assert len(corpus.read_tfds('wmt14_translate/de-en', 'train[:2]', 'en', 'de', wmt_dir).pairs) == 2


def test_tfds_errors_are_user_errors(wmt_dir, tmp_path):
  with pytest.raises(UserError, match=r"languages \['de', 'en'\]"):
    corpus.read_tfds('wmt14_translate/de-en', 'train', 'en', 'fr', wmt_dir)
  with pytest.raises(UserError, match=r"cannot read split 'test'"):
    corpus.read_tfds('wmt14_translate/de-en', 'test', 'en', 'de', wmt_dir)
  with pytest.raises(UserError, match='not prepared in .*tfds build wmt14_translate/fr-en'):
    corpus.read_tfds('wmt14_translate/fr-en', 'train', 'en', 'fr', str(tmp_path))
  with pytest.raises(UserError, match='not prepared'):
    corpus.read_tfds('wmt17_translate/de-en', 'train', 'en', 'de', str(tmp_path / 'none'))
