"""The Transformer: shapes, masking, incremental decoding, packing, learning, sizes."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seq2seq_jax.models import build_model
from seq2seq_jax.steps import cross_entropy

TINY = dict(name='transformer', emb_dim=32, num_heads=4, mlp_dim=64, num_encoder_layers=2,
            num_decoder_layers=2, dropout_rate=0.1)
SRC_V, TGT_V = 20, 24


def make_batch(seed=0, b=3, s=7, t=6):
  rng = np.random.default_rng(seed)
  inp = rng.integers(4, SRC_V, (b, s)).astype(np.int32)
  dec = rng.integers(4, TGT_V, (b, t)).astype(np.int32)
  dec[:, 0] = 1
  if b > 1:
    inp[0, 5:] = 0
    dec[1, 4:] = 0
  return {'inputs': inp, 'decoder_inputs': dec}


def init(model, batch):
  return nn.unbox(model.init(jax.random.key(0), batch, train=False)['params'])


@pytest.fixture(scope='module', params=[True, False], ids=['pre_norm', 'post_norm'])
def setup(request):
  model = build_model(dict(TINY, pre_norm=request.param), SRC_V, TGT_V)
  batch = make_batch()
  params = init(model, batch)
  forward = jax.jit(lambda p, b: model.apply({'params': p}, b, train=False))
  return model, params, batch, forward


def test_shapes_dtypes_and_dropout(setup):
  model, params, batch, forward = setup
  logits = forward(params, batch)
  assert logits.shape == (3, 6, TGT_V) and logits.dtype == jnp.float32
  dropped = model.apply({'params': params}, batch, train=True, rngs={'dropout': jax.random.key(1)})
  assert not np.allclose(dropped, logits)
  again = model.apply({'params': params}, batch, train=True, rngs={'dropout': jax.random.key(1)})
  np.testing.assert_array_equal(dropped, again)  # deterministic given the rng


def test_param_count_matches_formula(setup):
  _, params, _, _ = setup
  e, m, l = 32, 64, 2
  attn = 4 * (e * e + e)
  layer_norm = 2 * e
  enc = l * (attn + (e * m + m + m * e + e) + 2 * layer_norm)
  dec = l * (2 * attn + (e * m + m + m * e + e) + 3 * layer_norm)
  expected = SRC_V * e + TGT_V * e + enc + dec + 2 * layer_norm
  total = sum(x.size for x in jax.tree.leaves(params))
  # post-norm has no final norms: allow for it
  assert total in (expected, expected - 2 * layer_norm)


def test_padding_does_not_change_real_positions(setup):
  _, params, batch, forward = setup
  logits = forward(params, batch)
  padded = {'inputs': np.pad(batch['inputs'], ((0, 0), (0, 5))),
            'decoder_inputs': np.pad(batch['decoder_inputs'], ((0, 0), (0, 3)))}
  np.testing.assert_allclose(forward(params, padded)[:, :6], logits, atol=1e-5)


def test_incremental_decoding_matches_teacher_forcing(setup):
  model, params, batch, forward = setup
  logits = forward(params, batch)
  cache = model.apply({'params': params}, batch['inputs'], 6, method='init_cache')
  leaves = jax.tree.leaves(cache)
  assert all(x.shape[0] == 3 for x in leaves)
  step = jax.jit(lambda p, t, c: model.apply({'params': p}, t, c, method='decode_step'))
  outs = []
  for t in range(6):
    out, cache = step(params, batch['decoder_inputs'][:, t], cache)
    outs.append(out)
  np.testing.assert_allclose(np.stack(outs, 1), logits, atol=1e-5)


def test_packing_keeps_pairs_separate(setup):
  model, params, _, forward = setup
  a = make_batch(1, b=1, s=4, t=3)
  b = make_batch(2, b=1, s=3, t=4)
  for x in (a, b):
    x['inputs'][:] = np.where(x['inputs'] == 0, 5, x['inputs'])
    x['decoder_inputs'][:] = np.where(x['decoder_inputs'] == 0, 6, x['decoder_inputs'])
    x['decoder_inputs'][:, 0] = 1
  packed = {
      'inputs': np.concatenate([a['inputs'], b['inputs'], np.zeros((1, 2), np.int32)], 1),
      'decoder_inputs': np.concatenate([a['decoder_inputs'], b['decoder_inputs'],
                                        np.zeros((1, 1), np.int32)], 1),
      'inputs_segmentation': np.array([[1] * 4 + [2] * 3 + [0] * 2], np.int32),
      'inputs_position': np.array([[0, 1, 2, 3, 0, 1, 2, 0, 0]], np.int32),
      'targets_segmentation': np.array([[1] * 3 + [2] * 4 + [0]], np.int32),
      'targets_position': np.array([[0, 1, 2, 0, 1, 2, 3, 0]], np.int32),
  }
  out = model.apply({'params': params}, packed, train=False)
  np.testing.assert_allclose(out[:, :3], forward(params, a), atol=1e-5)
  np.testing.assert_allclose(out[:, 3:7], forward(params, b), atol=1e-5)


def test_tiny_model_overfits_a_batch():
  model = build_model(dict(TINY, dropout_rate=0.0), SRC_V, TGT_V)
  batch = make_batch(3, b=8)
  targets = np.concatenate([batch['decoder_inputs'][:, 1:], np.full((8, 1), 2, np.int32)], 1)
  targets = np.where(batch['decoder_inputs'] == 0, 0, targets)
  weights = (targets > 0).astype(np.float32)
  params = init(model, batch)
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    def loss_fn(p):
      logits = model.apply({'params': p}, batch, train=False)
      return cross_entropy(logits, targets, weights)[0] / weights.sum()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt, loss
  first = None
  for _ in range(150):
    params, opt, loss = step(params, opt)
    first = first if first is not None else float(loss)
  assert first > 2.5 and float(loss) < 0.05


@pytest.mark.parametrize('size,paper', [
    (dict(emb_dim=512, num_heads=8, mlp_dim=2048), 65e6),     # Vaswani et al. 2017, Table 3
    (dict(emb_dim=1024, num_heads=16, mlp_dim=4096), 213e6),
])
def test_paper_sizes_counted_abstractly(size, paper):
  cfg = dict(name='transformer', num_encoder_layers=6, num_decoder_layers=6,
             share_embeddings=True, tie_output=True, **size)
  model = build_model(cfg, 37000, 37000)
  batch = {'inputs': jnp.zeros((1, 8), jnp.int32), 'decoder_inputs': jnp.zeros((1, 8), jnp.int32)}
  shapes = jax.eval_shape(lambda r: model.init(r, batch, train=False), jax.random.key(0))
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes['params'])))
  assert abs(n - paper) / paper < 0.04, n


def test_params_carry_logical_axis_names(setup):
  model, _, batch, _ = setup
  boxed = jax.eval_shape(lambda r: model.init(r, batch, train=False), jax.random.key(0))['params']
  specs = nn.get_partition_spec(boxed)
  layer = specs['encoder_layers_0']
  assert tuple(layer['mlp']['wi']['kernel']) == ('embed', 'mlp')
  assert tuple(layer['mlp']['wo']['kernel']) == ('mlp', 'embed')
  assert tuple(layer['attn']['qkv']['kernel']) == ('embed', None, 'heads', 'kv')
  assert tuple(specs['src_embed']['embedding']) == ('vocab', 'embed')
