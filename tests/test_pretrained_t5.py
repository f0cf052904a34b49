"""T5, T5 v1.1 / Flan-T5 and mT5 from the Hugging Face layout (pretrained/t5.py): the loaded
model's encoder output and logits against transformers', its greedy and beam outputs against
transformers' generate, T5's relative position buckets against transformers' function, and
T5's parts (RMS norm, gated MLPs, relative positions, no biases, unscaled attention) as
choices of any Transformer.

The references ran once in a separate environment (tools/make_pretrained_text_fixtures.py t5
wrote tests/fixtures/t5/ with torch and transformers: versions.json); nothing here imports
PyTorch.
"""
import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.models.transformer import blocks
from seq2seq_jax.pretrained import t5

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 't5')
# a: T5 v1.0 (relu, tied and rescaled; attention width 18 != d_model 16; 8 buckets up to 10);
# b: T5 v1.1 / Flan-T5 (gated-gelu, its own lm_head; 2 encoder layers, 1 decoder layer);
# c: mT5 (MT5ForConditionalGeneration, gated-relu, its own lm_head).
CASES = ['a', 'b', 'c']


@functools.lru_cache(maxsize=None)
def loaded(tag: str):
  """(model, params, config.json, fixture io) of a fixture checkpoint."""
  config, params, cfg = t5.load_hf(os.path.join(FIXTURES, f'hf_{tag}'))
  model = build_model(config, cfg['vocab_size'], cfg['vocab_size'])
  return model, params, cfg, np.load(os.path.join(FIXTURES, f'io_{tag}.npz'))


@pytest.mark.parametrize('tag', CASES)
def test_gives_transformers_encoder_output_and_logits(tag):
  """Inputs padded at the end of rows (lengths 12, 5, 9: relative distances reach the
  logarithmic buckets), </s> among the decoder inputs."""
  model, params, cfg, io = loaded(tag)

  def run(p, x, y):
    encoded, mask = model.apply({'params': p}, x, method='encode')
    return encoded, mask, model.apply({'params': p}, {'inputs': x, 'decoder_inputs': y})

  src, dec = jnp.asarray(io['inputs']), jnp.asarray(io['decoder_inputs'])
  encoded, mask, logits = jax.jit(run)(params, src, dec)
  real = io['attention_mask'].astype(bool)
  np.testing.assert_array_equal(mask, real)
  np.testing.assert_allclose(np.asarray(encoded)[real], io['encoded'][real], atol=1e-4, rtol=0)
  want = io['logits']
  assert logits.shape == want.shape == dec.shape + (cfg['vocab_size'],)
  assert np.abs(want).max() > 1.0                    # not a trivially small output
  np.testing.assert_allclose(np.asarray(logits), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize('tag', CASES)
@pytest.mark.parametrize('beam_size,key', [(1, 'greedy'), (3, 'beam3')])
def test_generates_what_transformers_generates(tag, beam_size, key):
  model, params, cfg, io = loaded(tag)
  out = t5.generate(model, params, cfg, io['inputs'], io[key].shape[1], beam_size)
  np.testing.assert_array_equal(out, io[key])


def test_fixture_outputs_are_not_all_alike():
  """Beam differs from greedy somewhere, and some output ends with </s> (then 0s)."""
  differ, ended = 0, False
  for tag in CASES:
    _, _, cfg, io = loaded(tag)
    differ += not np.array_equal(io['greedy'], io['beam3'])
    for key in ('greedy', 'beam3'):
      ended |= bool(np.any(io[key][:, :-1] == cfg['eos_token_id']))
      assert not np.any(io[key][:, 0] == 0)
  assert differ >= 2 and ended


@pytest.mark.parametrize('tag', CASES)
def test_relative_buckets_are_transformers(tag):
  """Every relative position in [-2000, 2000], both ways, falls in transformers' bucket
  (its float32 logarithms included: boundaries such as distance 2 * max_exact)."""
  _, _, cfg, io = loaded(tag)
  rel = jnp.arange(-2000, 2001)
  for way in ('bi', 'uni'):
    got = blocks.relative_buckets(rel, way == 'bi', cfg['relative_attention_num_buckets'],
                                  cfg['relative_attention_max_distance'])
    np.testing.assert_array_equal(got, io[f'buckets_{way}'])
  assert len(np.unique(io['buckets_uni'])) == cfg['relative_attention_num_buckets']
  assert np.all(io['buckets_uni'][2000:] == 0)        # the decoder never looks ahead


def test_presets_of_the_three_generations():
  """v1.0 ties the output and rescales; v1.1 and mT5 have an lm_head and do not."""
  got = {tag: t5.model_config(loaded(tag)[2]) for tag in CASES}
  assert [got[t]['mlp']['name'] for t in CASES] == ['relu', 'gated_gelu', 'gated_relu']
  assert [(got[t]['tie_output'], got[t]['scale_output']) for t in CASES] == [
      (True, True), (False, False), (False, False)]
  assert got['a']['qkv_dim'] == 18 and got['a']['emb_dim'] == 16
  assert got['b']['num_encoder_layers'] == 2 and got['b']['num_decoder_layers'] == 1
  _, params, cfg, _ = loaded('a')
  assert 'logits_dense' not in params
  assert t5.special_ids(cfg) == {'pad': 0, 'bos': 0, 'eos': 1}
  _, params, _, _ = loaded('b')
  assert set(params['logits_dense']) == {'kernel'}
  assert set(params['encoder_layers_0']['mlp']) == {'wi_0', 'wi_1', 'wo'}
  assert params['tgt_pos_bias']['embedding'].shape == (32, 3)


def test_t5_parts_are_choices_of_any_transformer():
  """rms_norm, the gated MLPs, relative positions, use_bias=False and unscaled attention are
  settings of a plain Transformer; without them the parameter tree keeps its names."""
  base = dict(name='transformer', emb_dim=16, num_heads=2, mlp_dim=32, num_encoder_layers=1,
              num_decoder_layers=2, dropout_rate=0.0)
  batch = {'inputs': jnp.array([[4, 5, 6, 0]]), 'decoder_inputs': jnp.array([[1, 7, 8]])}
  plain = jax.eval_shape(lambda: build_model(base, 11, 11).init(jax.random.key(0), batch))
  assert not {'src_pos_bias', 'tgt_pos_bias'} & set(plain['params'])
  assert 'bias' in plain['params']['encoder_layers_0']['attn']['qkv']
  assert 'bias' in plain['params']['encoder_layers_0']['ln_attn']
  t5_like = dict(base, norm='rms_norm', mlp='gated_gelu', positions=dict(
      name='relative', num_buckets=8, max_distance=16), use_bias=False, scale_attention=False,
                 tie_output=False)
  model = build_model(t5_like, 11, 11)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), batch)['params'])
  leaves = jax.tree_util.tree_leaves_with_path(params)
  assert not [p for p, _ in leaves if 'bias' in jax.tree_util.keystr(p).split("'")[-2]]
  assert params['src_pos_bias']['embedding'].shape == (8, 2)
  assert params['tgt_pos_bias']['embedding'].shape == (8, 2)
  assert set(params['decoder_layers_1']['mlp']) == {'wi_0', 'wi_1', 'wo'}
  assert set(params['encoder_norm']) == {'scale'}
  # The RMS norm: x / sqrt(mean(x^2) + eps) * scale, no mean subtracted.
  x = jnp.array([[1.0, 2.0, 3.0, 6.0]])
  norm = blocks.layer_norm(jnp.float32, dict(name='rms_norm', epsilon=1e-3))
  scale = jnp.array([1.0, 2.0, 0.5, -1.0])
  got = norm.apply({'params': {'scale': scale}}, x)
  np.testing.assert_allclose(got, x / np.sqrt(np.mean(np.square(x)) + 1e-3) * scale, rtol=1e-6)
  # GEGLU's tanh GELU (transformers' gelu_new), ReGLU's ReLU.
  h = jnp.linspace(-3, 3, 7)
  gelu_new = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
  np.testing.assert_allclose(blocks.GatedGeluMlp(4, 2, jnp.float32).activation(h), gelu_new,
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(blocks.GatedReluMlp(4, 2, jnp.float32).activation(h),
                             np.maximum(h, 0))
  # Cached decoding with relative positions gives the teacher-forced logits.
  tokens = jnp.array([[1, 7, 8, 9, 3]])

  def cached(p):
    cache = model.apply({'params': p}, batch['inputs'], 5, method='init_cache')

    def step(cache, token):
      logits, cache = model.apply({'params': p}, token, cache, method='decode_step')
      return cache, logits
    return jax.lax.scan(step, cache, tokens.T)[1][:, 0]   # [T, V]

  full = jax.jit(model.apply)({'params': params}, {'inputs': batch['inputs'],
                                                   'decoder_inputs': tokens})
  np.testing.assert_allclose(jax.jit(cached)(params), full[0], atol=1e-5)
  # A part's own settings only: the model supplies heads and direction.
  for extra, message in ((dict(positions=dict(name='relative', num_heads=4)), 'no setting'),
                         (dict(norm=dict(name='rms_norm', bias_init=0)), 'no setting'),
                         (dict(mlp=dict(name='gated_gelu', use_bias=True)), 'no setting')):
    bad = build_model(dict(base, **extra), 11, 11)
    with pytest.raises(UserError, match=message):
      jax.eval_shape(lambda m=bad: m.init(jax.random.key(0), batch))


def test_relative_positions_follow_packed_rows():
  """Two pairs packed in one row give each pair's logits alone: the relative bias reads the
  positions within each pair."""
  config = dict(name='transformer', emb_dim=16, num_heads=2, mlp_dim=32, num_encoder_layers=1,
                num_decoder_layers=1, dropout_rate=0.0, norm='rms_norm', mlp='gated_relu',
                positions=dict(name='relative', num_buckets=8, max_distance=8), use_bias=False,
                scale_attention=False)
  model = build_model(config, 13, 13)
  a_src, a_tgt = [4, 5, 6, 7, 8, 9], [1, 10, 11, 12]
  b_src, b_tgt = [6, 5], [1, 4, 3]
  packed = {'inputs': jnp.array([a_src + b_src]), 'decoder_inputs': jnp.array([a_tgt + b_tgt]),
            'inputs_segmentation': jnp.array([[1] * 6 + [2] * 2]),
            'inputs_position': jnp.array([list(range(6)) + [0, 1]]),
            'targets_segmentation': jnp.array([[1] * 4 + [2] * 3]),
            'targets_position': jnp.array([list(range(4)) + [0, 1, 2]])}
  params = jax.jit(model.init)(jax.random.key(1), packed)['params']
  apply = jax.jit(lambda batch: model.apply({'params': params}, batch))
  got = apply(packed)
  # Each pair alone, one per row (padded at the end: masked, and after the decoder's tokens).
  alone = apply({'inputs': jnp.array([a_src, b_src + [0] * 4]),
                 'decoder_inputs': jnp.array([a_tgt, b_tgt + [0]])})
  np.testing.assert_allclose(got[0, :4], alone[0], atol=1e-5)
  np.testing.assert_allclose(got[0, 4:], alone[1, :3], atol=1e-5)


def test_loader_refuses_what_it_cannot_represent(tmp_path):
  marian_dir = os.path.join(os.path.dirname(__file__), 'fixtures', 'marian', 'hf_a')
  with pytest.raises(UserError, match="'marian' model, not 't5' or 'mt5'"):
    t5.load_hf(marian_dir)
  bad = tmp_path / 't5'
  shutil.copytree(os.path.join(FIXTURES, 'hf_b'), bad)
  cfg = json.loads((bad / 'config.json').read_text())

  def refused(message, **changes):
    (bad / 'config.json').write_text(json.dumps(dict(cfg, **changes)))
    with pytest.raises(UserError, match=message):
      t5.load_hf(str(bad))

  refused("feed_forward_proj 'gated-tanh' is not one of", feed_forward_proj='gated-tanh')
  refused('encoder-only', is_encoder_decoder=False)
  refused('must be even', relative_attention_num_buckets=7)
  refused('lm_head differs from its embedding', tie_word_embeddings=True)
  refused("'umt5' model", model_type='umt5')
  refused('no tensor .*decoder.block.1', num_decoder_layers=2)
  refused('relative_attention_bias.weight has shape', relative_attention_num_buckets=16)
  refused('shape', d_model=32)
  (bad / 'config.json').write_text(json.dumps({k: v for k, v in cfg.items() if k != 'd_ff'}))
  with pytest.raises(UserError, match="no 'd_ff'"):
    t5.load_hf(str(bad))
