"""The translation task: config checks, SentencePiece in the workdir, the trainer's data,
packing versus the model, and BLEU/chrF against sacreBLEU."""
import os
import sys

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
import sacrebleu
from num2words import num2words

from seq2seq_jax.metrics import bleu
from seq2seq_jax.data import packing, pipeline
from seq2seq_jax.data.vocab import EOS_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.trainer.steps import cross_entropy
from seq2seq_jax.tasks import get_task, translation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'experiments'))
from common import translation_data  # pylint: disable=g-import-not-at-top,wrong-import-position


def write(path, lines):
  path.write_text(''.join(l + '\n' for l in lines), encoding='utf-8')
  return str(path)


@pytest.fixture(scope='module')
def corpus_files(tmp_path_factory):
  """Aligned English/German number words: train, validation and test file pairs."""
  d = tmp_path_factory.mktemp('corpus')
  files = {}
  for split, numbers in (('train', range(0, 1500, 2)), ('eval', range(1, 80, 2)),
                         ('test', range(81, 160, 2))):
    files[split] = (write(d / f'{split}.en', [num2words(n) for n in numbers]),
                    write(d / f'{split}.de', [num2words(n, lang='de') for n in numbers]))
  return files


def make_config(corpus_files, **data):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = 'translation'
  c.data = translation_data(**{
      'source': 'files', 'train_files': corpus_files['train'],
      'eval_files': corpus_files['eval'], 'test_files': corpus_files['test'], 'src_lang': 'en',
      'tgt_lang': 'de', 'vocab_size': 150, 'max_len': 32, **data})
  c.model = dict(name='transformer', positions='sinusoidal', max_len=64)
  return c


# --- config --------------------------------------------------------------------------------------
def test_vocab_sizes_come_from_the_config_without_data():
  cfg = ml_collections.ConfigDict({'seed': 0, 'task': 'translation', 'data': translation_data(
      shared_vocab=False, src_vocab_size=160_000, tgt_vocab_size=80_000)})
  task = get_task(cfg)  # wmt14 is not prepared here: nothing may be read
  assert (task.src_vocab_size, task.tgt_vocab_size) == (160_000, 80_000)
  assert (task.best_metric, task.best_mode) == ('bleu', 'max')


@pytest.mark.parametrize('change,message', [
    (dict(source='csv'), 'data.source must be one of'),
    (dict(bad_pairs='ignore'), 'bad_pairs'),
    (dict(spm_model_type='wordpiece'), 'spm_model_type'),
    (dict(tgt_lang='en'), "both 'en'"),
    (dict(vocab_size=0), 'data.vocab_size must be set'),
    (dict(source='num2words', num2words_max=1000, tgt_lang='xx'), 'num2words has no language'),
])
def test_config_mistakes_are_user_errors(corpus_files, change, message):
  cfg = make_config(corpus_files)
  cfg.data.update(change)
  with pytest.raises(UserError, match=message):
    translation.Task(cfg)


def test_missing_key_and_short_learned_positions_are_user_errors(corpus_files):
  cfg = make_config(corpus_files)
  del cfg.data['train_files']
  with pytest.raises(UserError, match='config.data.train_files is missing'):
    translation.Task(cfg)
  cfg = make_config(corpus_files)
  cfg.model.update(positions='learned', max_len=16)
  with pytest.raises(UserError, match='model.max_len=16 is shorter than the data rows'):
    translation.Task(cfg)


# --- SentencePiece in the workdir ----------------------------------------------------------------
def test_setup_trains_once_then_reuses_without_reading_data(corpus_files, tmp_path, capsys):
  cfg = make_config(corpus_files)
  task = translation.Task(cfg)
  task.setup(str(tmp_path))
  model = tmp_path / 'spm' / 'shared.model'
  assert model.exists() and 'trained' in capsys.readouterr().err
  mtime = os.path.getmtime(model)
  text = 'three hundred and forty-two'
  ids, unknown = task.encode_source(text)
  assert unknown == 0 and 0 < len(ids) < len(text)
  # A resumed run or predict mode: same ids, the model is not retrained, and the corpus
  # is not read (its path now points nowhere).
  cfg2 = make_config(corpus_files)
  cfg2.data.train_files = (str(tmp_path / 'gone.en'), str(tmp_path / 'gone.de'))
  again = translation.Task(cfg2)
  again.setup(str(tmp_path))
  assert 'loaded' in capsys.readouterr().err
  assert os.path.getmtime(model) == mtime
  np.testing.assert_array_equal(again.encode_source(text)[0], ids)
  # Shared vocabulary: a source sentence's ids decode as target text.
  assert again.decode_target(np.concatenate([ids, [EOS_ID, 0, 0]])) == text


def test_separate_vocabularies(corpus_files, tmp_path):
  cfg = make_config(corpus_files, shared_vocab=False, src_vocab_size=100, tgt_vocab_size=130,
                    spm_model_type='unigram')
  task = translation.Task(cfg)
  task.setup(str(tmp_path))
  src = task._sp_src  # pylint: disable=protected-access
  tgt = task._sp_tgt  # pylint: disable=protected-access
  assert src.get_piece_size() <= 100 and tgt.get_piece_size() <= 130
  pieces = [{sp.id_to_piece(i) for i in range(sp.get_piece_size())} for sp in (src, tgt)]
  assert '▁hundred' in pieces[0] - pieces[1]
  de = 'dreihundertzweiundvierzig'
  assert task.decode_target(tgt.encode(de)) == de
  assert sorted(os.listdir(tmp_path / 'spm')) == [
      'source.json', 'source.model', 'source.model.lock', 'source.vocab',
      'target.json', 'target.model', 'target.model.lock', 'target.vocab']


# --- the trainer's data --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def ready_task(corpus_files, tmp_path_factory):
  task = translation.Task(make_config(corpus_files))
  task.setup(str(tmp_path_factory.mktemp('work')))
  return task


def test_train_and_eval_data(ready_task, corpus_files):
  pairs, none = ready_task.train_data()  # data.token_cache: pairs on disk (test_token_cache)
  assert none is None and len(pairs) == 750
  src, tgt = pairs.get(range(len(pairs)))
  assert all(s.dtype == np.int32 and len(s) and EOS_ID not in s for s in src + tgt)
  assert ready_task.decode_target(tgt[21]) == num2words(42, lang='de')
  ev = ready_task.eval_set('test')
  assert ev.texts[:2] == [num2words(81), num2words(83)]
  assert ev.references[:2] == [[num2words(81, lang='de')], [num2words(83, lang='de')]]
  loss_src, loss_tgt = ready_task.eval_loss_data('test')
  assert len(loss_src) == len(ev.sources) == 40
  np.testing.assert_array_equal(loss_src[5], ev.sources[5])


def test_every_segment_is_scored_with_its_own_reference(corpus_files, tmp_path):
  # A source that occurs twice stays two segments (as sacreBLEU scores WMT test sets).
  ev = (write(tmp_path / 'e.en', ['one', 'two', 'one', 'four']),
        write(tmp_path / 'e.de', ['eins', 'zwei', 'ein', 'vier']))
  task = translation.Task(make_config(corpus_files, eval_files=ev))
  task.setup(str(tmp_path))
  s = task.eval_set('validation')
  assert s.texts == ['one', 'two', 'one', 'four']
  assert s.references == [['eins'], ['zwei'], ['ein'], ['vier']]
  # eval_max_examples takes segments spread over the split, for loss and BLEU alike.
  task = translation.Task(make_config(corpus_files, eval_files=ev, eval_max_examples=2))
  task.setup(str(tmp_path))
  assert task.eval_set('validation').texts == ['one', 'four']
  src, tgt = task.eval_loss_data('validation')
  assert [task.decode_target(t) for t in tgt] == ['eins', 'vier']


@pytest.mark.parametrize('policy', ['error', 'skip'])
def test_a_bad_test_file_is_found_before_training(corpus_files, tmp_path, capsys, policy):
  bad = (write(tmp_path / 't.en', ['one', 'two', 'three']),
         write(tmp_path / 't.de', ['eins', '', 'drei']))
  task = translation.Task(make_config(corpus_files, test_files=bad, bad_pairs=policy))
  task.setup(str(tmp_path))
  if policy == 'error':
    with pytest.raises(UserError, match=r't[.]de:2: empty line'):
      task.train_data()
  else:
    task.train_data()
    assert 'test: 2 pairs' in capsys.readouterr().err
    assert task.eval_set('test').texts == ['one', 'three']


def test_make_batcher_packs_or_buckets_and_drops_long_pairs(ready_task):
  src = [np.arange(4, 4 + n, dtype=np.int32) for n in [3, 5, 40, 7] * 10]
  tgt = [np.arange(4, 4 + n, dtype=np.int32) for n in [4, 2, 5, 31] * 10]
  kw = dict(batch_size=2, seed=0, shuffle=True, process_index=0, process_count=1)
  packed = ready_task.make_batcher(src, tgt, **kw)
  assert isinstance(packed, packing.PackedBatcher) and packed.num_dropped == 10
  assert set(packed.get_batch(0)) == set(packing.KEYS)
  ready_task.data.packing = False
  try:
    bucketed = ready_task.make_batcher(src, tgt, **kw)
  finally:
    ready_task.data.packing = True
  assert isinstance(bucketed, pipeline.TokenBatcher)
  assert bucketed.num_dropped == 10  # data.max_len applies too: 40 + EOS fits bucket 64
  assert set(bucketed.get_batch(0)) == {'inputs', 'decoder_inputs', 'targets'}


# --- packing versus the model --------------------------------------------------------------------
def test_a_packed_batch_gives_each_pair_the_loss_it_has_alone():
  rng = np.random.default_rng(0)
  src = [rng.integers(4, 40, n).astype(np.int32) for n in (3, 5, 2, 4, 6, 1)]
  tgt = [rng.integers(4, 40, n).astype(np.int32) for n in (4, 2, 5, 3, 2, 6)]
  packed = next(packing.PackedBatcher(src, tgt, batch_size=2, max_len=16, seed=0,
                                      shuffle=False).epoch_batches())
  assert packed['inputs_segmentation'].max() >= 3
  # The same pairs unpacked: one per row, right-padded.
  alone = next(pipeline.TokenBatcher(src, tgt, batch_size=6, buckets=(8,), seed=0,
                                shuffle=False).epoch_batches())
  model = build_model(dict(name='transformer', emb_dim=32, num_heads=4, mlp_dim=64,
                           num_encoder_layers=1, num_decoder_layers=1, pre_norm=False), 40, 40)
  params = nn.unbox(model.init(jax.random.key(0), alone, train=False)['params'])
  apply = jax.jit(lambda b: model.apply({'params': params}, b, train=False))
  logits_packed, logits_alone = np.asarray(apply(packed)), np.asarray(apply(alone))
  found = 0
  for r in range(packed['inputs'].shape[0]):
    for seg in range(1, packed['targets_segmentation'][r].max() + 1):
      cols = packed['targets_segmentation'][r] == seg
      # Which pair is it? Match its target against the unpacked rows.
      (row,) = [i for i in range(6) if np.array_equal(alone['targets'][i][:cols.sum()],
                                                      packed['targets'][r][cols])]
      n = int(cols.sum())
      np.testing.assert_allclose(logits_packed[r][cols], logits_alone[row][:n], atol=1e-4)
      w = cols.astype(np.float32)[None]
      loss_packed = cross_entropy(logits_packed[r:r + 1], packed['targets'][r:r + 1], w, 0.1)[0]
      loss_alone = cross_entropy(logits_alone[row:row + 1, :n], alone['targets'][row:row + 1, :n],
                                 np.ones((1, n), np.float32), 0.1)[0]
      assert float(loss_packed) == pytest.approx(float(loss_alone), rel=1e-5)
      found += 1
  assert found == 6


# --- BLEU and chrF -------------------------------------------------------------------------------
HYPS = ['the cat sat on the mat', 'a quick brown dog jumps over it', 'hello']
REFS = [['the cat is on the mat'], ['a fast brown fox jumps over it'], ['hello there']]


def test_bleu_and_chrf_equal_sacrebleu_and_the_signature_is_printed_once(ready_task, capsys):
  streams = [[r[0] for r in REFS]]
  got = ready_task.score(HYPS, REFS)
  assert got['bleu'] == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams).score)
  assert got['chrf'] == pytest.approx(sacrebleu.corpus_chrf(HYPS, streams).score)
  assert 0 < got['bleu'] < 100
  assert 'sacreBLEU signature: BLEU nrefs:1|case:mixed|eff:no|tok:13a' in capsys.readouterr().err
  assert ready_task.score(HYPS[:1], REFS[:1]) and 'signature' not in capsys.readouterr().err
  assert ready_task.score(['x y z w'], [['x y z w']])['bleu'] == pytest.approx(100.0)


def test_several_references_per_segment():
  refs = [REFS[0] + ['the cat sat on a mat'], REFS[1], REFS[2] + ['hello', 'hi']]
  got, signature = bleu.corpus_scores(HYPS, refs)
  assert 'nrefs:var' in signature or 'nrefs:3' in signature
  # Repeating a segment's own reference to fill the missing streams changes neither metric.
  filled = [[r[min(j, len(r) - 1)] for r in refs] for j in range(3)]
  assert got['bleu'] == pytest.approx(sacrebleu.corpus_bleu(HYPS, filled).score)
  assert got['chrf'] == pytest.approx(sacrebleu.corpus_chrf(HYPS, filled).score)
  assert got['bleu'] > bleu.corpus_scores(HYPS, REFS)[0]['bleu']  # more refs, more matches
  with pytest.raises(ValueError, match='no reference'):
    bleu.corpus_scores(HYPS, [[], ['a'], ['b']])


def test_chinese_targets_use_sacrebleus_chinese_tokenizer():
  _, signature = bleu.corpus_scores(['我们的猫'], [['我的猫']], tgt_lang='zh')
  assert 'tok:zh' in signature
  same = ['猫 が マット の 上 に 座った']
  scores, signature = bleu.corpus_scores(same, [same], tgt_lang='ja')
  assert 'tok:ja-mecab' in signature or 'tok:13a' in signature  # 13a without MeCab
  assert scores['bleu'] == pytest.approx(100.0)
