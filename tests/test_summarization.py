"""Summarization with copying: the pointer-generator's distribution, coverage, beam search over
the extended vocabulary against brute force, the task's readers and OOV ids, and a model that
learns to copy names no vocabulary holds (train, eval, predict on a (2, 2, 2) mesh, SIGKILL and
resume).

The corpora are made here: sentences of a few frequent words around a made-up name; the
summary repeats the name, which is out of the vocabulary, so only copying can produce it.
"""
import itertools
import os
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax.decoding import search as decoding
from seq2seq_jax.trainer import train
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, UNK_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.models.layers import copy_log_probs
from seq2seq_jax.tasks import get_task

import runs  # tests/runs.py

FILLERS = ('please', 'call', 'ask', 'the', 'friend', 'named', 'today', 'now')
STEPS = 150


# --- the final distribution -------------------------------------------------------------------
def test_copy_distribution_mixes_vocabulary_and_attention_by_hand():
  # V = 5, one source of 3 positions: ids 4, 6 (a temporary id), 4 again; p_gen = 0.25.
  logits = jnp.log(jnp.array([[[0.1, 0.2, 0.3, 0.2, 0.2]]]))
  attention = jnp.array([[[0.5, 0.3, 0.2]]])
  ext_ids = jnp.array([[4, 6, 4]])
  logp = copy_log_probs(logits, jnp.full((1, 1), np.log(0.25 / 0.75)), attention, ext_ids, 2)
  p = np.exp(np.asarray(logp[0, 0], np.float64))
  want = [0.025, 0.05, 0.075, 0.05, 0.05 + 0.75 * 0.7, 0.0, 0.75 * 0.3]
  np.testing.assert_allclose(p, want, atol=1e-6)
  assert p.sum() == pytest.approx(1.0, abs=1e-6)


TRANSFORMER = dict(name='transformer', emb_dim=8, num_heads=2, mlp_dim=16, num_encoder_layers=1,
                   num_decoder_layers=2, share_embeddings=True, copy=True, max_oovs=2,
                   dropout_rate=0.0, max_len=16)


def _tiny(**kw):
  if kw.pop('family', 'rnn') == 'transformer':
    return build_model(dict(TRANSFORMER, **kw), 6, 6)
  cfg = dict(name='rnn', emb_dim=8, hidden_dim=8, decoder_hidden_dim=8, encoder_layers=1,
             decoder_layers=1, attention='see', attention_dim=8, bridge='reduce',
             share_embeddings=True, copy=True, max_oovs=2, coverage=True, dropout_rate=0.0,
             readout_dim=8)
  cfg.update(kw)
  return build_model(cfg, 6, 6)


SOURCE = jnp.array([[4, 6, 5, 6, EOS_ID], [5, 4, EOS_ID, 0, 0]])
MODELS = [dict(attention='see'), dict(attention='bahdanau'), dict(family='transformer')]


@pytest.mark.parametrize('kw', MODELS, ids=['see', 'bahdanau', 'transformer'])
def test_decode_step_equals_teacher_forcing_with_copying(kw):
  model = _tiny(**kw)
  batch = {'inputs': SOURCE, 'decoder_inputs': jnp.array([[BOS_ID, 6, 4, 7], [BOS_ID, 5, 0, 0]])}
  params = model.init(jax.random.key(1), batch)['params']
  logp, state = model.apply({'params': params}, batch, mutable=['losses', 'intermediates'])
  assert logp.shape == (2, 4, 8)  # V + max_oovs
  np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, atol=1e-5)
  if 'attention' in kw:
    # The coverage loss: sum over real steps of sum_i min(a_i^t, sum_{t' < t} a_i^t').
    a = np.asarray(jax.tree.leaves(state['intermediates'])[0])       # [B, T, S]
    cov = np.cumsum(a, axis=1) - a
    real = np.asarray(batch['decoder_inputs'] > 0)
    want = np.sum(np.minimum(a, cov).sum(-1) * real)
    assert float(state['losses']['coverage'][0]) == pytest.approx(want, rel=1e-5)
    assert want > 0
  # One step at a time, feeding the extended ids back (7 has no source word: it embeds as UNK).
  cache = model.apply({'params': params}, SOURCE, 4, method='init_cache')
  for t in range(4):
    step, cache = model.apply({'params': params}, batch['decoder_inputs'][:, t], cache,
                              method='decode_step')
    np.testing.assert_allclose(step, logp[:, t], atol=1e-5)


@pytest.mark.parametrize('kw', MODELS[::2], ids=['rnn', 'transformer'])
def test_beam_search_over_the_extended_vocabulary_is_exhaustive_search(kw):
  """Beam as wide as every hypothesis of length <= 3 returns them all, scored as the model
  scores them teacher-forced, best first; the temporary id 6 (a source OOV) is among them."""
  model = _tiny(**kw)
  src = SOURCE[:1]
  params = model.init(jax.random.key(2), {'inputs': src, 'decoder_inputs': src})['params']
  real = (3, 4, 5, 6, 7)
  hyps = [body + (EOS_ID,) for n in range(3) for body in itertools.product(real, repeat=n)]
  hyps += list(itertools.product(real, repeat=3))
  cache = model.apply({'params': params}, src, 3, len(hyps), method='init_cache')
  fn = lambda tok, c: model.apply({'params': params}, tok, c, method='decode_step')
  seqs, scores = decoding.beam_search(fn, cache, batch_size=1, beam_size=len(hyps), max_len=3,
                                      bos_id=BOS_ID, eos_id=EOS_ID, alpha=0.0)
  dec = np.array([[BOS_ID] + list(h[:-1]) + [0] * (3 - len(h)) for h in hyps], np.int32)
  tgt = np.array([list(h) + [0] * (3 - len(h)) for h in hyps], np.int32)
  logp = model.apply({'params': params}, {'inputs': jnp.repeat(src, len(hyps), 0),
                                          'decoder_inputs': jnp.asarray(dec)})
  brute = np.sum(np.take_along_axis(np.asarray(logp), tgt[..., None], -1)[..., 0] * (tgt > 0), -1)
  order = np.argsort(-brute)
  np.testing.assert_allclose(np.asarray(scores[0]), brute[order], atol=1e-4)
  got = [tuple(int(t) for t in s if t) for s in np.asarray(seqs[0, :5])]
  assert got == [hyps[i] for i in order[:5]]
  # Hypotheses holding the temporary id score as the model says (it is reachable by copying).
  assert sum(6 in tuple(int(t) for t in s if t) for s in np.asarray(seqs[0])) > 10


def test_copy_settings_are_checked():
  with pytest.raises(UserError, match='additive attention'):
    _tiny(attention='general').init(jax.random.key(0), {'inputs': SOURCE,
                                                        'decoder_inputs': SOURCE})
  with pytest.raises(UserError, match='max_oovs'):
    _tiny(max_oovs=0).init(jax.random.key(0), {'inputs': SOURCE, 'decoder_inputs': SOURCE})


# --- the task ------------------------------------------------------------------------------------
def _sentence(rng, name: str) -> tuple[str, str]:
  words = list(rng.choice(FILLERS, size=int(rng.integers(2, 6))))
  words.insert(int(rng.integers(0, len(words) + 1)), name)
  return ' '.join(words), f'call {name} now'


def _names(rng, n: int) -> list[str]:
  return [''.join(rng.choice(list('bcdfghjklmnpqrstvwxz'), size=5)) for _ in range(n)]


def _write_tsv(path, pairs):
  with open(path, 'w') as f:
    f.write(''.join(f'{s}\t{t}\n' for s, t in pairs))
  return str(path)


EXPERIMENT = '''
import ml_collections
from common import mesh_and_rules, summarization_data

def get_config(arg=''):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = 'summarization'
  c.data = summarization_data(source='tsv', vocab_size=4 + len(FILLERS), lowercase=True,
                              max_source_len=12, max_target_len=6, buckets=(8, 13),
                              eval_batch_size=8, eval_max_examples=0, **TSV)
  c.batch_size = 16
  c.train_steps = STEPS
  c.log_every_steps = 10
  c.eval_every_steps = STEPS
  c.checkpoint_every_steps = STEPS
  c.keep_checkpoints = 20
  c.model = dict(name='rnn', cell='lstm', emb_dim=16, hidden_dim=16, decoder_hidden_dim=16,
                 encoder_layers=1, decoder_layers=1, attention='see', attention_dim=16,
                 bridge='reduce', share_embeddings=True, readout_dim=16, dropout_rate=0.0,
                 copy=arg != 'nocopy', max_oovs=4, coverage=arg == 'coverage')
  if arg == 'transformer':
    c.model = dict(name='transformer', emb_dim=32, num_heads=2, mlp_dim=64, num_encoder_layers=1,
                   num_decoder_layers=1, dropout_rate=0.0, share_embeddings=True, copy=True,
                   max_oovs=4, max_len=16)
  c.label_smoothing = 0.0
  c.optimizer = dict(name='adam', learning_rate=1e-2, schedule='constant', grad_clip_norm=2.0)
  c.decode = dict(beam_size=2, alpha=0.6, max_len=6)
  mesh_and_rules(c)
  return c
'''


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  folder = tmp_path_factory.mktemp('names')
  rng = np.random.default_rng(0)
  names = _names(rng, 160)
  pairs = [_sentence(rng, n) for n in names]
  tsv = dict(train_tsv=_write_tsv(folder / 'train.tsv', pairs[:128]),
             eval_tsv=_write_tsv(folder / 'eval.tsv', pairs[128:144]),
             test_tsv=_write_tsv(folder / 'test.tsv', pairs[144:]))
  path = folder / 'names_experiment.py'
  path.write_text(f'FILLERS = {FILLERS!r}\nSTEPS = {STEPS}\nTSV = {tsv!r}\n'
                  + textwrap.dedent(EXPERIMENT))
  return {'config': str(path), 'pairs': pairs}


def test_task_gives_source_oovs_temporary_ids_and_maps_them_back(corpus, tmp_path):
  config = config_lib.load_config(corpus['config'])
  task = get_task(config)
  task.setup(str(tmp_path))
  words = open(tmp_path / 'vocab.txt').read().split()
  assert sorted(words) == sorted(FILLERS)          # the names are too rare for the vocabulary
  src, tgt, unknown = task.encode_pair('Ask XYZ and qqq, xyz!', 'call xyz and qqq now')
  v = task.tgt_vocab_size
  # lowercase: xyz, and, qqq, ',' and '!' are OOVs in order of appearance; max_oovs=4 -> '!' UNK
  assert list(src[1:]) == [v, v + 1, v + 2, v + 3, v, UNK_ID]
  assert unknown == 6
  assert list(tgt) == [task._words['call'], v, v + 1, v + 2, task._words['now']]
  assert task.decode_prediction(list(tgt) + [EOS_ID, 0], 'Ask XYZ and qqq, xyz!') == (
      'call xyz and qqq now')
  assert task.decode_target(tgt) == 'call <unk> <unk> <unk> now'   # without its source
  # Truncation: at most max_source_len / max_target_len tokens.
  long_src, long_tgt, _ = task.encode_pair(' '.join(['now'] * 30), ' '.join(['now'] * 30))
  assert len(long_src) == 12 and len(long_tgt) == 6
  scores = task.score(['call bob now', 'x'], [['call bob now'], ['call ann now']])
  assert scores['rouge1'] == pytest.approx(50.0) and set(scores) == {
      'rouge1', 'rouge2', 'rougeL', 'bleu'}
  for key, value, error in (('data.buckets', '(8,)', 'must reach max_source_len'),
                            ('data.vocab_type', "'bpe'", 'vocab_type must be one of'),
                            ('model.max_oovs', '0', 'max_oovs >= 1')):
    with pytest.raises(UserError, match=error):
      get_task(config_lib.load_config(corpus['config'], [(key, value)]))
  # Without copying every OOV is UNK.
  plain = get_task(config_lib.load_config(corpus['config'] + ':nocopy'))
  plain.setup(str(tmp_path))
  assert list(plain.encode_pair('ask xyz', 'call xyz')[1]) == [plain._words['call'], UNK_ID]


def test_tfds_summarization_dataset_is_read_without_tensorflow(corpus, tmp_path):
  """A cnn_dailymail-shaped TFDS dataset (article -> highlights) made here gives the pairs."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  pairs = corpus['pairs']

  class TinyNews(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('3.4.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'article': tfds.features.Text(), 'highlights': tfds.features.Text(),
          'id': tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples(pairs[:8]), 'validation': self._generate_examples(pairs[8:12]),
              'test': self._generate_examples(pairs[12:16] + [('', 'empty article')])}

    def _generate_examples(self, rows):
      for i, (s, t) in enumerate(rows):
        yield i, {'article': s, 'highlights': t, 'id': str(i)}

  data_dir = str(tmp_path / 'tfds')
  TinyNews(data_dir=data_dir, file_format='array_record').download_and_prepare()
  config = config_lib.load_config(corpus['config'], [
      ('data.source', 'tfds'), ('data.tfds_name', 'tiny_news'), ('data.data_dir', data_dir),
      ('data.src_feature', 'article'), ('data.tgt_feature', 'highlights')])
  task = get_task(config)
  # TFDS stores examples in the order of its key hashes.
  assert sorted(task.pairs('train')) == sorted(pairs[:8])
  assert sorted(task.pairs('test')) == sorted(pairs[12:16])   # the empty article is skipped
  for features, error in (((), 'must name the features of tiny_news'),
                          ((('data.src_feature', 'article'), ('data.tgt_feature', 'summary')),
                           "features.*'summary'")):
    bad = get_task(config_lib.load_config(corpus['config'], [
        ('data.source', 'tfds'), ('data.tfds_name', 'tiny_news'), ('data.data_dir', data_dir),
        *features]))
    with pytest.raises(UserError, match=error):
      bad.pairs('train')


# --- end to end ----------------------------------------------------------------------------------
_TRAINED = {}


def _trained(corpus, tmp_path_factory, family='rnn'):
  """A run trained in this process once per model family: the Transformer's on the (2, 2, 2)
  mesh (the copy distribution's scatter into the extended vocabulary, sharded), the RNN's on
  one device (the mesh costs it 2.7x)."""
  if family not in _TRAINED:
    workdir = str(tmp_path_factory.mktemp(f'copy_{family}'))
    ways = '2' if family == 'transformer' else '1'
    config = config_lib.load_config(f'{corpus["config"]}:{family}', [
        ('mesh.data', ways), ('mesh.fsdp', ways), ('mesh.tensor', ways)])
    _TRAINED[family] = workdir, train.train(config, workdir)
  return _TRAINED[family]


@pytest.mark.parametrize('family', ['rnn', 'transformer'])
def test_copy_model_learns_names_only_copying_can_produce(corpus, tmp_path_factory, family):
  workdir, summary = _trained(corpus, tmp_path_factory, family)
  assert summary['best_metric'] == 'rougeL'
  assert summary['test/rougeL'] > 90, summary     # 16 unseen names, copied
  ref = runs.losses(workdir)
  assert ref[STEPS] < 0.2 * ref[10]
  # Predict: names never seen in training come out of the sources they are in.
  rng = np.random.default_rng(7)
  new = _names(rng, 3)
  vocab = open(os.path.join(workdir, 'vocab.txt')).read().split()
  assert not set(new) & set(vocab)
  lines = [_sentence(rng, new[0])[0], '', _sentence(rng, new[1])[0], _sentence(rng, new[2])[0]]
  out = list(train.predict(config_lib.load_config(f'{corpus["config"]}:{family}',
                                                  [('mesh.data', '1')]), workdir, lines))
  assert out[1] == ''
  assert [o.split() for i, o in enumerate(out) if i != 1] == [
      ['call', n, 'now'] for n in new]


def test_paper_config_has_the_papers_parameter_counts():
  """See et al. 2017, Sec. 5: 21,499,600 parameters, +1,153 for the pointer, +512 coverage."""
  path = os.path.join(runs.ROOT, 'experiments', 'cnndm_pointer_generator.py')
  counts = [train.count_params(config_lib.load_config(f'{path}:{v}'))
            for v in ('baseline', 'pointer', 'coverage')]
  assert counts == [21_499_600, 21_499_600 + 1_153, 21_499_600 + 1_153 + 512]


def test_coverage_phase_warm_starts_from_a_trained_copy_model(corpus, tmp_path_factory, tmp_path,
                                                              capsys):
  """See et al.'s final phase: the trained pointer-generator continues with coverage (a new
  parameter, w_c, and the coverage loss) from its parameters and vocabulary."""
  source, _ = _trained(corpus, tmp_path_factory)
  ref = runs.losses(source)
  workdir = str(tmp_path / 'coverage_phase')
  config = config_lib.load_config(f'{corpus["config"]}:coverage', [
      ('init_from', source), ('train_steps', '10'), ('mesh.data', '1')])
  summary = train.train(config, workdir)
  out = capsys.readouterr().out
  assert 'initialised here: decoder/attention/coverage; left out: none' in out, out[-2000:]
  assert 'vocabulary from' in out
  assert open(os.path.join(workdir, 'vocab.txt')).read() == open(
      os.path.join(source, 'vocab.txt')).read()
  warm = runs.losses(workdir)
  assert warm[10] < 0.3 * ref[10], (warm, ref[10])    # it starts where the copy model was
  assert summary['test/rougeL'] > 80
  with pytest.raises(UserError, match='config.init_from: no checkpoints in'):
    train.train(config_lib.load_config(corpus['config'], [('init_from', str(tmp_path))]),
                str(tmp_path / 'nothing'))
