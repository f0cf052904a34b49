"""--mode=export: a translation Transformer as a CTranslate2 model directory
(seq2seq_jax/export/ctranslate2.py).

The exported model.bin is read back with our reader (pretrained/ctranslate2.py) and checked
against the checkpoint's parameters by what each variable does (a CTranslate2 weight W acts
as x -> W x, so W x must equal our projection of x), not by restating the writer's reshapes;
the files beside it and the refusals are checked through launch.py. Where an environment with
ctranslate2 exists ($S2S_CTRANSLATE2_PYTHON, default /work/whisper_env/bin/python; it is never a
dependency of this project), CTranslate2 itself loads the exports: its teacher-forced
log-probabilities must equal ours, and its beam output our beam search's.
"""
import json
import os
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from seq2seq_jax.decoding import search
from seq2seq_jax.export import ctranslate2 as export_lib
from seq2seq_jax.models.transformer import Model
from seq2seq_jax.pretrained import ctranslate2 as ct2_format
from seq2seq_jax.trainer import inference

import runs  # tests/runs.py

ROOT = runs.ROOT
EXPERIMENTS = os.path.join(ROOT, 'experiments')
SMOKE = os.path.join(EXPERIMENTS, 'num2words_transformer.py') + ':smoke'
# One device; checkpoints at 4 and 8, the best (by validation BLEU) evaluated at 8.
ARGS = [f'--config={SMOKE}', '--config.mesh.data=1', '--config.train_steps=8',
        '--config.checkpoint_every_steps=4', '--config.eval_every_steps=8']
CT2_PYTHON = os.environ.get('S2S_CTRANSLATE2_PYTHON', '/work/whisper_env/bin/python')


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """The num2words smoke Transformer (pre-LN, shared and tied embeddings, sinusoids), trained
  8 steps in this process through launch.py, and its export of the best checkpoint (also
  through launch.py, reading DIR/config.json): (workdir, export dir)."""
  root = tmp_path_factory.mktemp('export')
  workdir, out = str(root / 'run'), str(root / 'ct2')
  code, stdout, err = runs.cli(*ARGS, f'--workdir={workdir}')
  assert code == 0, (stdout + err)[-3000:]
  code, stdout, err = runs.cli('--mode=export', f'--workdir={workdir}', f'--export_dir={out}')
  assert code == 0, (stdout + err)[-3000:]
  assert '[export] best (step 8)' in stdout
  return workdir, out


def _params(workdir, checkpoint=None):
  loaded = inference.load(workdir, checkpoint)
  return loaded.run.model, jax.device_get(meta.unbox(loaded.params))


# --- what each CTranslate2 variable must do ------------------------------------------------
def _check_linear(v, prefix, kernel, bias, num_in_axes=1, rng=np.random.default_rng(0)):
  """W x + b (CTranslate2's linear) equals our DenseGeneral of x, for a random x."""
  kernel = np.asarray(kernel)
  x = rng.normal(size=kernel.shape[:num_in_axes]).astype(np.float32)
  ours = np.tensordot(x, kernel, axes=num_in_axes) + np.asarray(bias)
  w = v[prefix + '/weight']
  assert w.shape == (ours.size, x.size), prefix
  np.testing.assert_allclose(w @ x.reshape(-1) + v[prefix + '/bias'], ours.reshape(-1),
                             rtol=1e-5, atol=1e-5, err_msg=prefix)


def _check_norm(v, prefix, p):
  np.testing.assert_array_equal(v[prefix + '/gamma'], p['scale'])
  np.testing.assert_array_equal(v[prefix + '/beta'], p['bias'])


def _check_layers(v, model, params):
  for i in range(model.num_encoder_layers):
    p, name = params[f'encoder_layers_{i}'], f'encoder/layer_{i}'
    _check_linear(v, f'{name}/self_attention/linear_0', p['attn']['qkv']['kernel'],
                  p['attn']['qkv']['bias'])
    _check_linear(v, f'{name}/self_attention/linear_1', p['attn']['out']['kernel'],
                  p['attn']['out']['bias'], num_in_axes=2)
    _check_norm(v, f'{name}/self_attention/layer_norm', p['ln_attn'])
    _check_linear(v, f'{name}/ffn/linear_0', p['mlp']['wi']['kernel'], p['mlp']['wi']['bias'])
    _check_linear(v, f'{name}/ffn/linear_1', p['mlp']['wo']['kernel'], p['mlp']['wo']['bias'])
    _check_norm(v, f'{name}/ffn/layer_norm', p['ln_mlp'])
  for i in range(model.num_decoder_layers):
    p, name = params[f'decoder_layers_{i}'], f'decoder/layer_{i}'
    sa, ca = p['self_attn'], p['cross_attn']
    _check_linear(v, f'{name}/self_attention/linear_0', sa['qkv']['kernel'], sa['qkv']['bias'])
    _check_linear(v, f'{name}/self_attention/linear_1', sa['out']['kernel'], sa['out']['bias'],
                  num_in_axes=2)
    _check_linear(v, f'{name}/attention/linear_0', ca['q']['kernel'], ca['q']['bias'])
    _check_linear(v, f'{name}/attention/linear_1', ca['kv']['kernel'], ca['kv']['bias'])
    _check_linear(v, f'{name}/attention/linear_2', ca['out']['kernel'], ca['out']['bias'],
                  num_in_axes=2)
    for ln, ours in (('self_attention', 'ln_self'), ('attention', 'ln_cross'),
                     ('ffn', 'ln_mlp')):
      _check_norm(v, f'{name}/{ln}/layer_norm', p[ours])
    _check_linear(v, f'{name}/ffn/linear_0', p['mlp']['wi']['kernel'], p['mlp']['wi']['bias'])
    _check_linear(v, f'{name}/ffn/linear_1', p['mlp']['wo']['kernel'], p['mlp']['wo']['bias'])


def _layer_names(side, n, cross):
  out = set()
  for i in range(n):
    subs = [('self_attention', 2)] + ([('attention', 3)] if cross else [])
    for sub, k in subs:
      out |= {f'{side}/layer_{i}/{sub}/linear_{j}/{w}'
              for j in range(k) for w in ('weight', 'bias')}
      out |= {f'{side}/layer_{i}/{sub}/layer_norm/{g}' for g in ('gamma', 'beta')}
    out |= {f'{side}/layer_{i}/ffn/linear_{j}/{w}' for j in range(2) for w in ('weight', 'bias')}
    out |= {f'{side}/layer_{i}/ffn/layer_norm/{g}' for g in ('gamma', 'beta')}
  return out


SETTINGS = {'decoder/activation', 'decoder/alibi', 'decoder/alibi_use_positive_positions',
            'decoder/alignment_heads', 'decoder/alignment_layer', 'decoder/num_heads',
            'decoder/pre_norm', 'decoder/scale_alibi', 'decoder/scale_embeddings',
            'decoder/start_from_zero_embedding', 'encoder/activation', 'encoder/embeddings_merge',
            'encoder/multi_query_attention', 'encoder/num_heads', 'encoder/pre_norm',
            'encoder/scale_embeddings'}


def test_export_holds_the_best_checkpoint_variable_by_variable(run):
  workdir, out = run
  model, params = _params(workdir)
  header, v, aliases = ct2_format.read_raw(os.path.join(out, 'model.bin'))
  assert header == {'version': 6, 'spec': 'TransformerSpec', 'revision': 7}
  # Shared and tied: one table, held once, the other two names aliases of it (as
  # CTranslate2's writer keeps the alphabetically first).
  assert aliases == {'decoder/projection/weight': 'decoder/embeddings/weight',
                     'encoder/embeddings_0/weight': 'decoder/embeddings/weight'}
  embed = params['src_embed']['embedding']
  np.testing.assert_array_equal(v['decoder/embeddings/weight'], embed)
  expected = (SETTINGS | _layer_names('encoder', 1, False) | _layer_names('decoder', 1, True)
              | {'decoder/embeddings/weight', 'decoder/projection/bias',
                 'encoder/position_encodings/encodings', 'decoder/position_encodings/encodings',
                 'encoder/layer_norm/gamma', 'encoder/layer_norm/beta',
                 'decoder/layer_norm/gamma', 'decoder/layer_norm/beta'})
  assert set(v) == expected
  settings = {k: int(v[k]) for k in SETTINGS}
  assert settings['encoder/num_heads'] == settings['decoder/num_heads'] == model.num_heads
  assert settings['encoder/pre_norm'] == settings['decoder/pre_norm'] == 1
  assert settings['encoder/scale_embeddings'] == settings['decoder/scale_embeddings'] == 1
  assert settings['encoder/activation'] == settings['decoder/activation'] == 0   # ReLU
  assert v['encoder/num_heads'].dtype == np.int16 and v['decoder/pre_norm'].dtype == np.int8
  _check_layers(v, model, params)
  _check_norm(v, 'encoder/layer_norm', params['encoder_norm'])
  _check_norm(v, 'decoder/layer_norm', params['decoder_norm'])
  # The output never emits PAD or BOS (as our searches): a bias of -1e4 on those rows only.
  bias = v['decoder/projection/bias']
  assert bias.shape == (model.tgt_vocab_size,) and bias[0] == bias[1] == -1e4
  assert not np.any(bias[2:])
  # Sinusoids as the model adds them: sines then cosines, the first timescale 1, position 0
  # first; enough rows for every source and output length.
  d = model.emb_dim
  for side in ('encoder', 'decoder'):
    pe = v[f'{side}/position_encodings/encodings']
    assert pe.shape[0] >= 1024 and pe.shape[1] == d
    p = np.arange(pe.shape[0])
    np.testing.assert_allclose(pe[:, 0], np.sin(p), atol=2e-4)
    np.testing.assert_allclose(pe[:, d // 2], np.cos(p), atol=2e-4)
    assert np.all(pe[0, :d // 2] == 0) and np.all(pe[0, d // 2:] == 1)


def test_export_files_vocabulary_and_config(run):
  workdir, out = run
  assert sorted(os.listdir(out)) == ['config.json', 'export.json', 'model.bin',
                                     'shared_vocabulary.json', 'source.model', 'target.model']
  spm_file = os.path.join(workdir, 'spm', 'shared.model')
  for name in ('source.model', 'target.model'):
    with open(os.path.join(out, name), 'rb') as a, open(spm_file, 'rb') as b:
      assert a.read() == b.read()
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  sp = spm.SentencePieceProcessor(model_file=spm_file)
  with open(os.path.join(out, 'shared_vocabulary.json')) as f:
    vocab = json.load(f)
  model, _ = _params(workdir)
  assert len(vocab) == model.src_vocab_size
  pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
  assert vocab[:4] == ['<blank>', '<s>', '</s>', '<unk>'] and vocab[4:len(pieces)] == pieces[4:]
  with open(os.path.join(out, 'config.json')) as f:
    config = json.load(f)
  assert config == {'add_source_bos': False, 'add_source_eos': True, 'bos_token': '<s>',
                    'decoder_start_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>',
                    'layer_norm_epsilon': 1e-6, 'multi_query_attention': False}
  with open(os.path.join(out, 'export.json')) as f:
    provenance = json.load(f)
  assert provenance['step'] == 8 and provenance['decode']['beam_size'] == 4


def test_export_checkpoint_flag_and_refusals(run, tmp_path):
  workdir, out = run
  # --checkpoint=4: that step, not the best (8).
  other = str(tmp_path / 'step4')
  code, stdout, err = runs.cli('--mode=export', f'--workdir={workdir}', f'--export_dir={other}',
                               '--checkpoint=4')
  assert code == 0, err[-3000:]
  model, params = _params(workdir, 4)
  _, v = ct2_format.read(os.path.join(other, 'model.bin'))
  np.testing.assert_array_equal(v['encoder/embeddings_0/weight'], params['src_embed']['embedding'])
  _check_layers(v, model, params)
  assert not np.array_equal(params['src_embed']['embedding'],
                            _params(workdir)[1]['src_embed']['embedding'])
  # A non-empty --export_dir is never overwritten.
  before = {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)}
  code, _, err = runs.cli('--mode=export', f'--workdir={workdir}', f'--export_dir={out}')
  assert code == 2 and 'exists and is not empty' in err and err.count('\n') == 1
  assert {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)} == before
  # An empty one is fine.
  empty = tmp_path / 'empty'
  empty.mkdir()
  code, _, err = runs.cli('--mode=export', f'--workdir={workdir}', f'--export_dir={empty}')
  assert code == 0 and os.path.isfile(empty / 'model.bin'), err[-2000:]
  # The flag and the mode go together.
  code, _, err = runs.cli('--mode=eval', f'--workdir={workdir}', f'--export_dir={tmp_path}/x')
  assert code == 2 and '--mode=export and --export_dir go together' in err
  # What the spec cannot hold: one line each, before any checkpoint is read.
  for config, words in ((os.path.join(EXPERIMENTS, 'ddtp_enfr_lstm_attention.py:smoke'),
                         'writes Transformers'),
                        (os.path.join(EXPERIMENTS, 'g2p_cmudict_transformer.py:smoke'),
                         "task 'g2p' is not one")):
    code, _, err = runs.cli(f'--config={config}', '--mode=export',
                            f'--workdir={tmp_path}/none', f'--export_dir={tmp_path}/x')
    assert code == 2 and words in err and err.strip().count('\n') == 0, err
  assert not os.path.exists(tmp_path / 'x')


def test_check_model_refuses_what_the_spec_cannot_hold():
  base = dict(src_vocab_size=16, tgt_vocab_size=16, emb_dim=8, num_heads=2, mlp_dim=16,
              num_encoder_layers=1, num_decoder_layers=1)
  export_lib.check_model(Model(**base))
  for change, words in ((dict(copy=True, max_oovs=2), 'model.copy'),
                        (dict(ctc_weight=0.3), 'model.ctc_weight'),
                        (dict(qkv_dim=4), 'qkv_dim=4'),
                        (dict(frontend='patches'), "frontend 'patches'")):
    with pytest.raises(Exception, match=words):
      export_lib.check_model(Model(**{**base, **change}))


# A Marian/BART-like preset: post-LN (no final norms), SiLU, unscaled embeddings, learned
# positions of both sides, a LayerNorm of the embedded tokens, separate vocabularies, an
# untied output with a learned logits bias.
PRESET = dict(src_vocab_size=40, tgt_vocab_size=48, emb_dim=16, num_heads=4, mlp_dim=32,
              num_encoder_layers=2, num_decoder_layers=2, pre_norm=False, mlp='swish',
              scale_embeddings=False, positions='learned', max_len=64,
              norm=dict(name='layer_norm', epsilon=1e-5),
              embed_norm=dict(name='layer_norm', epsilon=1e-5), share_embeddings=False,
              tie_output=False, logits_bias='learned', dropout_rate=0.0)


def _preset():
  model = Model(**{k: (tuple(sorted(v.items())) if isinstance(v, dict) else v)
                   for k, v in PRESET.items()})
  batch = {'inputs': jnp.ones((1, 4), jnp.int32), 'decoder_inputs': jnp.ones((1, 3), jnp.int32)}
  params = meta.unbox(jax.jit(model.init)({'params': jax.random.key(3)}, batch)['params'])
  # Nonzero biases and norms everywhere, so a misplaced one shows.
  rng = np.random.default_rng(4)
  return model, jax.tree.map(
      lambda x: np.asarray(x) + 0.1 * rng.normal(size=x.shape).astype(np.float32), params)


def test_preset_variables_post_ln_learned_positions_untied(tmp_path):
  model, params = _preset()
  variables, aliases = export_lib.transformer_variables(model, params)
  assert aliases == {}
  path = str(tmp_path / 'model.bin')
  ct2_format.write(path, 'TransformerSpec', 7, variables, aliases)
  header, v = ct2_format.read(path)
  assert header['spec'] == 'TransformerSpec'
  assert 'encoder/layer_norm/gamma' not in v and 'decoder/layer_norm/gamma' not in v
  assert int(v['encoder/pre_norm']) == 0 and int(v['decoder/scale_embeddings']) == 0
  assert int(v['encoder/activation']) == int(v['decoder/activation']) == 2   # SWISH
  np.testing.assert_array_equal(v['encoder/embeddings_0/weight'], params['src_embed']['embedding'])
  np.testing.assert_array_equal(v['decoder/embeddings/weight'], params['tgt_embed']['embedding'])
  np.testing.assert_array_equal(v['encoder/position_encodings/encodings'], params['src_pos'])
  np.testing.assert_array_equal(v['decoder/position_encodings/encodings'], params['tgt_pos'])
  _check_norm(v, 'encoder/layernorm_embedding', params['src_embed_norm'])
  _check_norm(v, 'decoder/layernorm_embedding', params['tgt_embed_norm'])
  _check_layers(v, model, params)
  y = np.random.default_rng(1).normal(size=16).astype(np.float32)
  output = lambda m, x: m._logits(x)   # pylint: disable=protected-access
  logits = np.asarray(model.apply({'params': params}, jnp.asarray(y)[None, None],
                                  method=output))[0, 0]
  theirs = v['decoder/projection/weight'] @ y + v['decoder/projection/bias']
  np.testing.assert_allclose(theirs[2:], logits[2:], rtol=1e-5, atol=1e-5)
  assert theirs[0] < -9000 and theirs[1] < -9000


# --- CTranslate2 itself --------------------------------------------------------------------
def _ct2_python() -> str:
  try:
    subprocess.run([CT2_PYTHON, '-c', 'import ctranslate2'], check=True, capture_output=True,
                   timeout=120)
  except (OSError, subprocess.SubprocessError):
    pytest.skip(f'no ctranslate2 at {CT2_PYTHON} (set S2S_CTRANSLATE2_PYTHON)')
  return CT2_PYTHON


def _ct2(request: dict) -> dict:
  done = subprocess.run([_ct2_python(), os.path.join(ROOT, 'tools', 'ctranslate2_translate.py')],
                        input=json.dumps(request), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout)


def _teacher_forced(model, params, sources, targets):
  """Our log-probabilities of each target token (EOS last), with the export's PAD / BOS
  bias: CTranslate2's score_batch of the same pairs must give these."""
  def pad(rows):
    width = max(len(r) for r in rows)
    return jnp.asarray([list(r) + [0] * (width - len(r)) for r in rows], jnp.int32)

  batch = {'inputs': pad([list(s) + [2] for s in sources]),
           'decoder_inputs': pad([[1] + list(t) for t in targets])}   # padding comes last
  logits = jax.jit(model.apply)({'params': params}, batch)
  logp = np.asarray(jax.nn.log_softmax(logits.at[..., :2].add(export_lib.MASK_BIAS), -1))
  return [logp[i, np.arange(len(t) + 1), list(t) + [2]] for i, t in enumerate(targets)]


def _pieces(vocab, ids):
  return [vocab[i] for i in ids]


def test_ctranslate2_scores_and_beam_equal_ours(run):
  _ct2_python()
  workdir, out = run
  loaded = inference.load(workdir)
  model, params = loaded.run.model, jax.device_get(meta.unbox(loaded.params))
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  sp = spm.SentencePieceProcessor(model_file=os.path.join(out, 'target.model'))
  test = loaded.run.task.eval_set('test')
  sources, targets = test.sources, [sp.encode(r[0]) for r in test.references]
  with open(os.path.join(out, 'shared_vocabulary.json')) as f:
    vocab = json.load(f)
  answer = _ct2({'model_dir': out, 'sources': [_pieces(vocab, s) for s in sources],
                 'targets': [_pieces(vocab, t) for t in targets],
                 'translate': {'beam_size': 4, 'length_penalty': 1.0, 'patience': 1.0,
                               'max_decoding_length': 32, 'return_scores': True}})
  ours = _teacher_forced(model, params, sources, targets)
  diff = max(float(np.max(np.abs(a - np.asarray(b)))) for a, b in zip(ours, answer['log_probs']))
  assert diff < 1e-4, diff
  # Our beam search with CTranslate2's ranking and its way of never emitting PAD / BOS (the
  # softmax runs without them: decoding.Rules.never) gives CTranslate2's output exactly.
  width = max(len(s) for s in sources) + 1
  inputs = jnp.asarray([list(s) + [2] + [0] * (width - len(s) - 1) for s in sources], jnp.int32)
  cache = model.apply({'params': params}, inputs, 32, 4, method='init_cache')

  def step(tokens, c):
    return model.apply({'params': params}, tokens, c, method='decode_step')

  fn, cache = search.with_rules(step, cache, search.Rules(never=(0, 1)))
  seqs, _ = search.beam_search(fn, cache, batch_size=len(sources), beam_size=4, max_len=32,
                               bos_id=1, eos_id=2, alpha=1.0, length_norm='length_eos',
                               patience=1.0)
  mine = []
  for row in np.asarray(seqs[:, 0]):
    row = list(row)
    mine.append(_pieces(vocab, row[:row.index(2)] if 2 in row else [i for i in row if i]))
  assert mine == answer['hypotheses']


def test_ctranslate2_scores_a_post_ln_preset_as_we_do(run, tmp_path):
  _ct2_python()
  workdir, _ = run
  model, params = _preset()
  variables, aliases = export_lib.transformer_variables(model, params)
  src_vocab = ['<blank>', '<s>', '</s>', '<unk>'] + [f's{i}' for i in range(36)]
  tgt_vocab = ['<blank>', '<s>', '</s>', '<unk>'] + [f't{i}' for i in range(44)]
  spm_file = os.path.join(workdir, 'spm', 'shared.model')   # (files only; not read here)
  out = str(tmp_path / 'preset')
  export_lib.write_directory(out, variables, aliases,
                             export_lib.ctranslate2_config(model, src_vocab, tgt_vocab),
                             src_vocab, tgt_vocab, spm_file, spm_file, {})
  assert {'source_vocabulary.json', 'target_vocabulary.json'} <= set(os.listdir(out))
  rng = np.random.default_rng(5)
  sources = [list(rng.integers(3, 40, size=n)) for n in (1, 5, 9)]
  targets = [list(rng.integers(3, 48, size=n)) for n in (4, 1, 7)]
  answer = _ct2({'model_dir': out, 'sources': [_pieces(src_vocab, s) for s in sources],
                 'targets': [_pieces(tgt_vocab, t) for t in targets]})
  ours = _teacher_forced(model, params, sources, targets)
  diff = max(float(np.max(np.abs(a - np.asarray(b)))) for a, b in zip(ours, answer['log_probs']))
  assert diff < 1e-4, diff
