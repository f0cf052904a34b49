"""Pretrained text encoder-decoders from the Hugging Face layout (pretrained/marian.py,
bart.py): the loaded model's encoder output and logits against transformers', and its greedy
and beam outputs against transformers' generate.

The references ran once in a separate environment (tools/make_pretrained_text_fixtures.py
wrote tests/fixtures/marian/ and bart/ with torch and transformers: versions.json); nothing
here imports PyTorch.
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
from seq2seq_jax.models import layers
from seq2seq_jax.models.transformer import blocks
from seq2seq_jax.pretrained import bart
from seq2seq_jax.pretrained import marian

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'marian')
FAMILIES = {'marian': marian, 'bart': bart}
# Marian a: one shared vocabulary, SiLU, scaled embeddings; Marian b: separate vocabularies
# (40 and 48), GELU, unscaled; BART: learned positions, embedding LayerNorm, GELU.
CASES = [('marian', 'a'), ('marian', 'b'), ('bart', 'a')]


@functools.lru_cache(maxsize=None)
def loaded(family: str, tag: str):
  """(model, params, config.json, fixture io) of a fixture checkpoint."""
  root = os.path.join(os.path.dirname(__file__), 'fixtures', family)
  config, params, cfg = FAMILIES[family].load_hf(os.path.join(root, f'hf_{tag}'))
  sizes = marian.vocab_sizes(cfg) if family == 'marian' else (cfg['vocab_size'],) * 2
  model = build_model(config, *sizes)
  return model, params, cfg, np.load(os.path.join(root, f'io_{tag}.npz'))


@pytest.mark.parametrize('family,tag', CASES)
def test_gives_transformers_encoder_output_and_logits(family, tag):
  """Inputs padded at the end of rows, </s> among the decoder inputs."""
  model, params, cfg, io = loaded(family, tag)
  pad = cfg['pad_token_id']
  src = jnp.asarray(marian.to_ours(io['inputs'], pad))
  dec = jnp.asarray(marian.to_ours(io['decoder_inputs'], pad))

  def run(p, x, y):
    encoded, mask = model.apply({'params': p}, x, method='encode')
    return encoded, mask, model.apply({'params': p}, {'inputs': x, 'decoder_inputs': y})

  encoded, mask, logits = jax.jit(run)(params, src, dec)
  real = io['attention_mask'].astype(bool)
  np.testing.assert_array_equal(mask, real)
  np.testing.assert_allclose(np.asarray(encoded)[real], io['encoded'][real], atol=1e-4, rtol=0)
  want = io['logits']
  assert logits.shape == want.shape == dec.shape + (model.tgt_vocab_size,)
  assert np.abs(want).max() > 1.0                    # not a trivially small output
  # Our logits in Marian's id order: columns 0 and pad exchanged back.
  ours = np.asarray(logits)[..., marian.from_ours(np.arange(want.shape[-1]), pad)]
  np.testing.assert_allclose(ours, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize('family,tag', CASES)
@pytest.mark.parametrize('beam_size,key', [(1, 'greedy'), (3, 'beam3')])
def test_generates_what_transformers_generates(family, tag, beam_size, key):
  model, params, cfg, io = loaded(family, tag)
  out = FAMILIES[family].generate(model, params, cfg, io['inputs'], io[key].shape[1],
                                  beam_size)
  np.testing.assert_array_equal(out, io[key])


def test_fixture_outputs_are_not_all_alike():
  """The generate fixtures exercise what they should: beam differs from greedy somewhere,
  and some output ends with </s> before the length limit (then pads)."""
  differ, ended = 0, False
  for family, tag in CASES:
    _, _, cfg, io = loaded(family, tag)
    differ += not np.array_equal(io['greedy'], io['beam3'])
    for key in ('greedy', 'beam3'):
      ended |= bool(np.any(io[key][:, :-1] == cfg['eos_token_id']))
      assert not np.any(io[key][:, 0] == cfg['pad_token_id'])
  assert differ >= 2 and ended


def test_ids_swap_and_special_ids():
  ids = np.array([[5, 0, 63, 1]])
  ours = marian.to_ours(ids, 63)
  np.testing.assert_array_equal(ours, [[5, 63, 0, 1]])
  np.testing.assert_array_equal(marian.from_ours(ours, 63), ids)
  _, _, cfg, _ = loaded('marian', 'a')
  assert marian.special_ids(cfg) == {'pad': 0, 'bos': 0, 'eos': 63}
  _, params, _, _ = loaded('marian', 'b')
  assert params['src_embed']['embedding'].shape == (40, 24)
  assert params['tgt_embed']['embedding'].shape == (48, 24)


def test_marian_sinusoids_are_transformers_table():
  """'sinusoidal' with endpoint=False is Hugging Face's MarianSinusoidalPositionalEmbedding
  table, written out here from its definition; the default is tensor2tensor's."""
  n, dim = 50, 16
  position_enc = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)]
                           for pos in range(n)])
  want = np.concatenate([np.sin(position_enc[:, 0::2]), np.cos(position_enc[:, 1::2])], 1)
  got = blocks.POSITIONS.build(dict(name='sinusoidal', endpoint=False))(jnp.arange(n), dim)
  np.testing.assert_allclose(got, want, atol=2e-5)
  default = blocks.POSITIONS.build('sinusoidal')(jnp.arange(n), dim)
  np.testing.assert_array_equal(default, layers.sinusoidal(jnp.arange(n), dim))
  assert np.abs(np.asarray(default) - want).max() > 0.1


def test_new_parts_are_choices_of_any_transformer():
  """'swish', Marian's positions, the learned logits bias and the embedding norm are
  registered parts a plain Transformer can choose; the defaults' parameter trees keep their
  names (no output bias, no embedding norms)."""
  base = dict(name='transformer', emb_dim=16, num_heads=2, mlp_dim=32, num_encoder_layers=1,
              num_decoder_layers=1, dropout_rate=0.0)
  batch = {'inputs': jnp.array([[4, 5, 6, 0]]), 'decoder_inputs': jnp.array([[1, 7, 8]])}

  plain = jax.eval_shape(lambda: build_model(base, 11, 11).init(jax.random.key(0), batch))
  assert not {'output_bias', 'src_embed_norm', 'tgt_embed_norm'} & set(plain['params'])
  model = build_model(dict(base, mlp='swish', logits_bias='learned', embed_norm='layer_norm',
                           positions=dict(name='sinusoidal', endpoint=False)), 11, 11)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), batch)['params'])
  assert params['output_bias']['bias'].shape == (11,)
  assert params['src_embed_norm']['scale'].shape == params['tgt_embed_norm']['bias'].shape == (16,)
  apply = jax.jit(lambda p: model.apply({'params': p}, batch))
  with_bias = apply({**params, 'output_bias': {'bias': jnp.arange(11.0)}})
  without = apply({**params, 'output_bias': {'bias': jnp.zeros(11)}})
  np.testing.assert_allclose(with_bias - without, jnp.broadcast_to(jnp.arange(11.0), (1, 3, 11)),
                             atol=1e-5)
  h = jnp.linspace(-3, 3, 7)
  np.testing.assert_allclose(blocks.SwishMlp(4, 2, jnp.float32).activation(h),
                             h / (1 + np.exp(-h)), rtol=1e-6)
  for extra, message in ((dict(positions='rotary'), 'model.positions'),
                         (dict(positions=dict(name='sinusoidal', base=3)), 'no setting'),
                         (dict(logits_bias='prior'), 'model.logits_bias'),
                         (dict(embed_norm='rms'), 'model.norm')):
    model = build_model(dict(base, **extra), 11, 11)
    with pytest.raises(UserError, match=message):
      jax.eval_shape(lambda m=model: m.init(jax.random.key(0), batch))


def test_marian_loader_refuses_what_is_not_a_marian_checkpoint(tmp_path):
  with pytest.raises(UserError, match='no config.json'):
    marian.load_hf(str(tmp_path))
  whisper_dir = os.path.join(os.path.dirname(__file__), 'fixtures', 'whisper', 'hf_a')
  with pytest.raises(UserError, match="'whisper' model, not 'marian'"):
    marian.load_hf(whisper_dir)
  bad = tmp_path / 'm'
  shutil.copytree(os.path.join(FIXTURES, 'hf_a'), bad)
  (bad / 'model.safetensors').write_bytes(b'not a safetensors file')
  with pytest.raises(UserError, match='not a safetensors file'):
    marian.load_hf(str(bad))
  os.remove(bad / 'model.safetensors')
  with pytest.raises(UserError, match='no model.safetensors'):
    marian.load_hf(str(bad))
  # A checkpoint missing a layer its config.json promises.
  shutil.copy(os.path.join(FIXTURES, 'hf_a', 'model.safetensors'), bad)
  cfg = json.loads((bad / 'config.json').read_text())
  (bad / 'config.json').write_text(json.dumps(dict(cfg, decoder_layers=3)))
  with pytest.raises(UserError, match='no tensor .*decoder.layers.2'):
    marian.load_hf(str(bad))
  (bad / 'config.json').write_text(json.dumps(dict(cfg, d_model=32)))
  with pytest.raises(UserError, match='shape'):
    marian.load_hf(str(bad))
  (bad / 'config.json').write_text('{not json')
  with pytest.raises(UserError, match='not JSON'):
    marian.load_hf(str(bad))


def test_bart_positions_skip_the_offset_rows_and_the_embedding_is_normalised():
  """Our learned tables are rows 2.. of Hugging Face's; each side has its own LayerNorm."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  root = os.path.join(os.path.dirname(__file__), 'fixtures', 'bart', 'hf_a')
  t = load_file(os.path.join(root, 'model.safetensors'))
  _, params, cfg, _ = loaded('bart', 'a')
  for side, ours in (('encoder', 'src'), ('decoder', 'tgt')):
    table = t[f'model.{side}.embed_positions.weight']
    assert table.shape[0] == cfg['max_position_embeddings'] + 2
    np.testing.assert_array_equal(params[f'{ours}_pos'], table[2:])
    np.testing.assert_array_equal(params[f'{ours}_embed_norm']['scale'],
                                  t[f'model.{side}.layernorm_embedding.weight'])
  bad = dict(cfg, normalize_before=True)
  with pytest.raises(UserError, match='pre-LayerNorm'):
    bart.model_config(bad)
  with pytest.raises(UserError, match="'marian' model, not 'bart'"):
    bart.load_hf(os.path.join(FIXTURES, 'hf_a'))
