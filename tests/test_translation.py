"""Translation: corpora and their error paths, SentencePiece, packing, TFDS, BLEU, end to end."""
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
import sacrebleu
import tensorflow_datasets as tfds

from seq2seq_jax.data import corpus, packing, spm
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.steps import cross_entropy
from seq2seq_jax.tasks import translation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'experiments'))
from common import translation_data  # pylint: disable=g-import-not-at-top,wrong-import-position


def write(path, lines):
  path.write_text(''.join(l + '\n' for l in lines), encoding='utf-8')
  return str(path)


# --- corpora -------------------------------------------------------------------------------
def test_aligned_files_and_tsv_read(tmp_path):
  s = write(tmp_path / 's.txt', ['hello world', 'good night'])
  t = write(tmp_path / 't.txt', ['hallo welt', 'gute nacht'])
  assert corpus.read_aligned_files(s, t).pairs == [('hello world', 'hallo welt'),
                                                   ('good night', 'gute nacht')]
  tsv = write(tmp_path / 'c.tsv', ['a b\tc d', 'e\tf'])
  assert corpus.read_tsv(tsv).pairs == [('a b', 'c d'), ('e', 'f')]


@pytest.mark.parametrize('src_lines,tgt_lines,where,skipped', [
    (['a', '', 'c'], ['x', 'y', 'z'], 's.txt:2', 1),          # empty source line
    (['a', 'b', 'c'], ['x', '   ', 'z'], 't.txt:2', 1),       # whitespace-only target
    (['a', 'b', 'c', 'd'], ['x', 'y'], 't.txt:3', 2),         # target file shorter
])
def test_bad_pairs_error_names_file_and_line_or_are_skipped(tmp_path, src_lines, tgt_lines,
                                                             where, skipped):
  s = write(tmp_path / 's.txt', src_lines)
  t = write(tmp_path / 't.txt', tgt_lines)
  with pytest.raises(UserError, match=where.replace('.', r'\.')):
    corpus.read_aligned_files(s, t, 'error')
  c = corpus.read_aligned_files(s, t, 'skip')
  assert c.skipped == skipped
  assert len(c.pairs) == min(len(src_lines), len(tgt_lines)) - (skipped if len(src_lines) ==
                                                                  len(tgt_lines) else 0)
  assert all(a and b for a, b in c.pairs)


def test_tsv_with_wrong_columns(tmp_path):
  tsv = write(tmp_path / 'c.tsv', ['a\tb', 'only one column', 'x\ty\tz', 'c\t'])
  with pytest.raises(UserError, match=r'c\.tsv:2: expected 2 tab-separated columns, found 1'):
    corpus.read_tsv(tsv, 'error')
  c = corpus.read_tsv(tsv, 'skip')
  assert c.pairs == [('a', 'b')] and c.skipped == 3


def test_missing_corpus_file_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match='corpus file not found'):
    corpus.read_tsv(str(tmp_path / 'nope.tsv'))


# --- sentencepiece ---------------------------------------------------------------------------
def test_sentencepiece_train_load_round_trip_and_reuse(tmp_path):
  from num2words import num2words  # pylint: disable=g-import-not-at-top
  sentences = [num2words(n) for n in range(2000)]
  path = str(tmp_path / 'spm' / 'shared.model')
  spm.train_once(lambda: sentences, path, vocab_size=200, model_type='bpe')
  sp = spm.load(path)
  assert sp.get_piece_size() <= 200
  assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
  text = 'three hundred and forty-two'
  ids = sp.encode(text)
  assert sp.decode(ids) == text and 0 not in ids
  mtime = os.path.getmtime(path)
  calls = []
  spm.train_once(lambda: calls.append(1) or sentences, path, vocab_size=200)
  assert not calls and os.path.getmtime(path) == mtime  # reused, not retrained
  assert spm.load(path).encode(text) == ids


# --- packing -----------------------------------------------------------------------------------
def test_packed_batch_gives_the_same_per_pair_loss_as_unpacked_pairs():
  rng = np.random.default_rng(0)
  src = [rng.integers(4, 30, n).astype(np.int32) for n in (3, 5, 2, 4, 6)]
  tgt = [rng.integers(4, 30, n).astype(np.int32) for n in (4, 2, 5, 3, 2)]
  batcher = packing.PackedBatcher(src, tgt, batch_size=2, max_len=16, seed=0, shuffle=False)
  batch = next(batcher.epoch_batches())
  assert batch['inputs_segmentation'].max() >= 2  # really packed
  model = build_model(dict(name='transformer', emb_dim=32, num_heads=4, mlp_dim=64,
                           num_encoder_layers=1, num_decoder_layers=1), 30, 30)
  params = nn.unbox(model.init(jax.random.key(0), batch, train=False)['params'])
  logits = model.apply({'params': params}, batch, train=False)
  for r in range(batch['inputs'].shape[0]):
    for seg in range(1, int(batch['targets_segmentation'][r].max()) + 1):
      cols = batch['targets_segmentation'][r] == seg
      w = cols.astype(np.float32)
      packed_loss = float(cross_entropy(logits[r:r + 1], batch['targets'][r:r + 1], w[None])[0])
      # The same pair on its own, unpacked.
      s_cols = batch['inputs_segmentation'][r] == seg
      single = {'inputs': batch['inputs'][r][s_cols][None],
                'decoder_inputs': batch['decoder_inputs'][r][cols][None]}
      alone = model.apply({'params': params}, single, train=False)
      alone_loss = float(cross_entropy(alone, batch['targets'][r][cols][None],
                                       np.ones((1, int(cols.sum())), np.float32))[0])
      assert packed_loss == pytest.approx(alone_loss, rel=1e-5)


def test_packing_is_deterministic_and_drops_overlong_pairs():
  rng = np.random.default_rng(1)
  src = [rng.integers(4, 30, rng.integers(1, 10)).astype(np.int32) for _ in range(300)]
  tgt = [rng.integers(4, 30, rng.integers(1, 10)).astype(np.int32) for _ in range(300)]
  src.append(np.arange(4, 40, dtype=np.int32))  # too long for max_len 16
  tgt.append(np.array([5], np.int32))
  a = packing.PackedBatcher(src, tgt, batch_size=4, max_len=16, seed=3)
  b = packing.PackedBatcher(src, tgt, batch_size=4, max_len=16, seed=3)
  assert a.num_dropped == 1
  for step in (0, 7, a.batches_per_epoch + 1):
    for k, v in a.get_batch(step).items():
      np.testing.assert_array_equal(v, b.get_batch(step)[k])
  assert set(a.get_batch(0)) == set(packing.KEYS)
  # Packing at least halves the padding of one pair per 16-token row.
  tokens = sum(len(t) + 1 for t in tgt[:-1])
  packed_rows = sum(b['targets'].shape[0] for b in a.epoch_batches())
  assert tokens / (packed_rows * 16) > 1.5 * tokens / (len(tgt[:-1]) * 16)


# --- TFDS translation datasets (offline: a local dataset with WMT's feature spec) ------------
class Wmt14Translate(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Same name, config and features as tfds' wmt14_translate, with a few made-up pairs."""
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name='de-en')]

  def _info(self):
    return tfds.core.DatasetInfo(builder=self,
                                 features=tfds.features.Translation(languages=('de', 'en')),
                                 supervised_keys=('de', 'en'))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(4), 'validation': self._generate_examples(2)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {'de': f'satz nummer {i}', 'en': f'sentence number {i}'}


def test_tfds_translation_dataset_read_by_name_in_both_directions(tmp_path):
  Wmt14Translate(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  c = corpus.read_tfds('wmt14_translate/de-en', 'train', 'en', 'de', str(tmp_path))
  assert sorted(c.pairs) == [(f'sentence number {i}', f'satz nummer {i}') for i in range(4)]
  back = corpus.read_tfds('wmt14_translate/de-en', 'validation', 'de', 'en', str(tmp_path))
  assert sorted(back.pairs) == [(f'satz nummer {i}', f'sentence number {i}') for i in range(2)]
  with pytest.raises(UserError, match='not'):
    corpus.read_tfds('wmt14_translate/de-en', 'train', 'en', 'fr', str(tmp_path))
  with pytest.raises(UserError):
    corpus.read_tfds('wmt14_translate/de-en', 'train', 'en', 'de', str(tmp_path / 'empty'))


def test_task_vocab_sizes_need_no_data():
  cfg = ml_collections.ConfigDict({'seed': 0, 'data': translation_data(
      shared_vocab=False, src_vocab_size=160_000, tgt_vocab_size=80_000)})
  task = translation.Task(cfg)
  assert (task.src_vocab_size, task.tgt_vocab_size) == (160_000, 80_000)


# --- BLEU ----------------------------------------------------------------------------------------
def test_bleu_and_chrf_equal_sacrebleu():
  hyps = ['the cat sat on the mat', 'a quick brown dog jumps']
  refs = [['the cat is on the mat'], ['a fast brown fox jumps']]
  ours = translation.bleu_chrf(hyps, refs)
  assert ours['bleu'] == pytest.approx(sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs]]).score)
  assert ours['chrf'] == pytest.approx(sacrebleu.corpus_chrf(hyps, [[r[0] for r in refs]]).score)
  assert translation.bleu_chrf(['x y z w'], [['x y z w']])['bleu'] == pytest.approx(100.0)


# --- end to end -----------------------------------------------------------------------------------
def test_offline_translation_experiment_runs_end_to_end(tmp_path):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1',
             JAX_PLATFORMS='cpu')
  workdir = str(tmp_path / 'n2w')
  cmd = [sys.executable, os.path.join(ROOT, 'launch.py'),
         f'--config={os.path.join(ROOT, "experiments", "num2words_transformer.py")}:smoke',
         f'--workdir={workdir}']
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.exists(os.path.join(workdir, 'spm', 'shared.model'))
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(l) for l in f]
  assert any('eval/bleu' in r and 'eval/chrf' in r for r in rows)
  assert 'BLEU signature: nrefs:1' in proc.stdout
  pred = subprocess.run(cmd + ['--mode=predict'], input='twenty-one\n\nseven hundred\n',
                        capture_output=True, text=True, env=env, timeout=300)
  assert pred.returncode == 0, pred.stderr[-3000:]
  assert len(pred.stdout.split('\n')) == 4 and pred.stdout.split('\n')[1] == ''
