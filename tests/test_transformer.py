"""The Transformer: shapes, masking, incremental decoding, packing, learning, sizes, errors.

Two tiny configurations between them exercise every option: the default (pre-LN,
sinusoidal, separate tied embeddings) and its opposite (the paper's post-LN, learned
positions, one shared table, an untied output layer, attention width != emb_dim).
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.trainer.steps import cross_entropy

TINY = dict(name='transformer', emb_dim=32, num_heads=4, mlp_dim=64, num_encoder_layers=2,
            num_decoder_layers=2, dropout_rate=0.1)
CONFIGS = {
    # name: (model settings beyond TINY, source vocab, target vocab)
    'pre_norm': (dict(), 20, 24),
    'post_norm_learned_shared': (dict(pre_norm=False, positions='learned', max_len=16,
                                      share_embeddings=True, tie_output=False, qkv_dim=48),
                                 24, 24),
}
B, S, T = 3, 7, 6


def make_batch(seed=0, b=B, s=S, t=T, src_vocab=20, tgt_vocab=24):
  rng = np.random.default_rng(seed)
  inp = rng.integers(4, src_vocab, (b, s)).astype(np.int32)
  dec = rng.integers(4, tgt_vocab, (b, t)).astype(np.int32)
  dec[:, 0] = 1
  if b > 1:
    inp[0, 5:] = 0
    dec[1, 4:] = 0
  return {'inputs': inp, 'decoder_inputs': dec}


def key(seed):
  # The 'rbg' generator compiles in a fraction of threefry's time (init draws once per
  # parameter), which is most of this file's run time; the model does not care which it gets.
  return jax.random.key(seed, impl='rbg')


def init(model, batch):
  variables = jax.jit(lambda r: model.init(r, batch, train=False))(key(0))
  return nn.unbox(variables['params'])


def n_params(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(tree)))


@functools.lru_cache(maxsize=None)
def built(name):
  """(model, cfg, params, batch, jitted forward), once per configuration per session."""
  extra, src_v, tgt_v = CONFIGS[name]
  cfg = dict(TINY, **extra)
  model = build_model(cfg, src_v, tgt_v)
  batch = make_batch()
  params = init(model, batch)
  forward = jax.jit(lambda p, b: model.apply({'params': p}, b, train=False))
  return model, cfg, params, batch, forward


@pytest.fixture(scope='module', params=list(CONFIGS))
def setup(request):
  return built(request.param)


def test_shapes_dtypes_and_dropout(setup):
  model, _, params, batch, forward = setup
  logits = forward(params, batch)
  assert logits.shape == (B, T, model.tgt_vocab_size) and logits.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  train = jax.jit(lambda p, b, r: model.apply({'params': p}, b, train=True,
                                              rngs={'dropout': r}))
  dropped = train(params, batch, key(1))
  assert not np.allclose(dropped, logits, atol=1e-3)
  np.testing.assert_array_equal(dropped, train(params, batch, key(1)))
  assert not np.allclose(dropped, train(params, batch, key(2)), atol=1e-3)


def expected_param_count(model) -> int:
  """By hand: Vaswani et al. 2017, Sec. 3 (biases everywhere, LayerNorm scale and bias)."""
  e, m, w = model.emb_dim, model.mlp_dim, model.qkv_dim or model.emb_dim
  attn = 4 * e * w + 3 * w + e            # q, k, v: e -> w each (+ bias); out: w -> e (+ bias)
  mlp = e * m + m + m * e + e
  norm = 2 * e
  enc = model.num_encoder_layers * (attn + mlp + 2 * norm)
  dec = model.num_decoder_layers * (2 * attn + mlp + 3 * norm)
  emb = model.src_vocab_size * e + (0 if model.share_embeddings else model.tgt_vocab_size * e)
  pos = 2 * model.max_len * e if model.positions == 'learned' else 0
  final_norms = 2 * norm if model.pre_norm else 0
  out = 0 if model.tie_output else e * model.tgt_vocab_size + model.tgt_vocab_size
  return emb + pos + enc + dec + final_norms + out


def test_param_count_matches_formula(setup):
  model, _, params, _, _ = setup
  assert n_params(params) == expected_param_count(model)


def test_padding_does_not_change_real_positions(setup):
  _, _, params, batch, forward = setup
  logits = forward(params, batch)
  padded = {'inputs': np.pad(batch['inputs'], ((0, 0), (0, 5))),
            'decoder_inputs': np.pad(batch['decoder_inputs'], ((0, 0), (0, 3)))}
  out = forward(params, padded)
  assert out.shape == (B, T + 3, logits.shape[-1])
  np.testing.assert_allclose(out[:, :T], logits, atol=1e-5)


def run_incremental(model, params, batch, max_len):
  cache = model.apply({'params': params}, batch['inputs'], max_len, method='init_cache')
  step = jax.jit(lambda p, t, c: model.apply({'params': p}, t, c, method='decode_step'))
  outs = []
  for t in range(batch['decoder_inputs'].shape[1]):
    out, cache = step(params, jnp.asarray(batch['decoder_inputs'][:, t]), cache)
    outs.append(out)
  return np.stack(outs, 1), cache


def test_incremental_decoding_matches_teacher_forcing(setup):
  model, cfg, params, batch, forward = setup
  max_len = 8
  cache = model.apply({'params': params}, batch['inputs'], max_len, method='init_cache')
  heads = cfg['num_heads']
  head_dim = (cfg.get('qkv_dim') or cfg['emb_dim']) // heads
  assert cache['index'].shape == (B,) and cache['index'].dtype == jnp.int32
  assert cache['history'].shape == (B, max_len, 1)
  assert cache['src_mask'].value.shape == (B, S)
  assert len(cache['layers']) == cfg['num_decoder_layers']
  for layer in cache['layers']:
    assert layer['k'].value.shape == (B, heads, head_dim, max_len)
    assert layer['v'].value.shape == (B, heads, max_len, head_dim)
    assert layer['ck'].value.shape == (B, heads, head_dim, S)
    assert layer['cv'].value.shape == (B, heads, S, head_dim)
  assert all(x.shape[0] == B for x in jax.tree.leaves(cache))

  stepped, cache = run_incremental(model, params, batch, max_len)
  assert stepped.dtype == np.float32
  np.testing.assert_array_equal(cache['index'], np.full((B,), T))
  np.testing.assert_allclose(stepped, forward(params, batch), atol=1e-5)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_beam_search_over_shared_slots_scores_every_beam_by_its_own_history(name):
  """Beam search with the per-item K/V slots (decoding.PerItem, never reordered) returns the
  hypotheses and scores of a search whose callback re-runs the decoder on each beam's whole
  prefix (no cache, rows reordered by beam search), and each score is the teacher-forced
  log-probability of its own sequence: a beam reading another beam's slots would break both.
  """
  from seq2seq_jax.decoding import search as decoding  # pylint: disable=g-import-not-at-top
  model, _, params, batch, _ = built(name)
  inputs, k, max_len, bos, eos = jnp.asarray(batch['inputs']), 3, 5, 1, 2

  def cached(params, inputs):
    cache = model.apply({'params': params}, inputs, max_len, k, method='init_cache')
    fn = lambda t, c: model.apply({'params': params}, t, c, method='decode_step')
    return decoding.beam_search(fn, cache, batch_size=B, beam_size=k, max_len=max_len,
                                bos_id=bos, eos_id=eos, alpha=0.0)

  def recomputed(params, inputs):
    def fn(tokens, c):
      prefix = c['prefix'].at[:, c['pos'][0]].set(tokens)
      logits = model.apply({'params': params}, {'inputs': c['src'], 'decoder_inputs': prefix},
                           train=False)
      return logits[:, c['pos'][0]], {**c, 'prefix': prefix, 'pos': c['pos'] + 1}
    cache = {'src': inputs, 'pos': jnp.zeros((B,), jnp.int32),
             'prefix': jnp.zeros((B, max_len), jnp.int32)}
    return decoding.beam_search(fn, cache, batch_size=B, beam_size=k, max_len=max_len,
                                bos_id=bos, eos_id=eos, alpha=0.0)

  seqs, scores = jax.jit(cached)(params, inputs)
  ref_seqs, ref_scores = jax.jit(recomputed)(params, inputs)
  np.testing.assert_array_equal(seqs, ref_seqs)
  np.testing.assert_allclose(scores, ref_scores, atol=1e-4)
  # Teacher-forced log-probability of every returned hypothesis.
  flat = np.asarray(seqs).reshape(B * k, max_len)
  dec = np.concatenate([np.full((B * k, 1), bos), flat[:, :-1]], axis=1)
  logits = model.apply({'params': params}, {'inputs': np.repeat(batch['inputs'], k, 0),
                                            'decoder_inputs': dec}, train=False)
  logp = np.asarray(jax.nn.log_softmax(logits, -1))
  for row, seq in enumerate(flat):
    n = int(np.sum(seq != 0))
    expected = sum(logp[row, t, seq[t]] for t in range(n))
    assert float(np.asarray(scores).reshape(-1)[row]) == pytest.approx(expected, abs=1e-4)
  for item in np.asarray(seqs):  # k different hypotheses per item
    assert len({tuple(r) for r in item}) == k
  with pytest.raises(UserError, match='beam_size=3'):
    cache = model.apply({'params': params}, inputs, max_len, k, method='init_cache')
    decoding.greedy_search(lambda t, c: (None, c), cache, batch_size=B, max_len=max_len,
                           bos_id=bos, eos_id=eos)


def test_packing_keeps_pairs_separate(setup):
  model, _, params, _, forward = setup
  a = make_batch(1, b=1, s=4, t=3)
  b = make_batch(2, b=1, s=3, t=4)
  packed = {
      'inputs': np.concatenate([a['inputs'], b['inputs'], np.zeros((1, 2), np.int32)], 1),
      'decoder_inputs': np.concatenate([a['decoder_inputs'], b['decoder_inputs'],
                                        np.zeros((1, 1), np.int32)], 1),
      'inputs_segmentation': np.array([[1] * 4 + [2] * 3 + [0] * 2], np.int32),
      'inputs_position': np.array([[0, 1, 2, 3, 0, 1, 2, 0, 0]], np.int32),
      'targets_segmentation': np.array([[1] * 3 + [2] * 4 + [0]], np.int32),
      'targets_position': np.array([[0, 1, 2, 0, 1, 2, 3, 0]], np.int32),
  }
  out = forward(params, packed)
  # Each pair alone, padded to the packed row's width so one compiled forward serves all
  # (padding never changes real positions: test above).
  def alone(x):
    return forward(params, {k: np.pad(x[k], ((0, 0), (0, packed[k].shape[1] - x[k].shape[1])))
                            for k in ('inputs', 'decoder_inputs')})
  np.testing.assert_allclose(out[:, :3], alone(a)[:, :3], atol=1e-5)
  np.testing.assert_allclose(out[:, 3:7], alone(b)[:, :4], atol=1e-5)
  # The same row without segment ids lets the pairs see each other, so b's logits change.
  unpacked = forward(params, {k: packed[k] for k in ('inputs', 'decoder_inputs')})
  assert not np.allclose(unpacked[:, 3:7], alone(b)[:, :4], atol=1e-3)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  _, cfg, params, batch, forward = built('pre_norm')
  model = build_model(dict(cfg, dtype='bfloat16'), 20, 24)
  shapes = jax.eval_shape(lambda r: model.init(r, batch, train=False), key(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nn.unbox(shapes['params'])))
  logits = jax.jit(lambda p, b: model.apply({'params': p}, b, train=False))(params, batch)
  assert logits.dtype == jnp.float32
  reference = forward(params, batch)
  scale = np.abs(reference).max()
  assert 0 < np.abs(logits - reference).max() < 0.05 * scale  # bfloat16, not float32
  stepped, cache = run_incremental(model, params, batch, 8)
  assert cache['layers'][0]['k'].value.dtype == jnp.bfloat16 and stepped.dtype == np.float32
  np.testing.assert_allclose(stepped, logits, atol=0.05 * scale)


def test_tiny_model_overfits_a_batch():
  model = build_model(dict(TINY, dropout_rate=0.0), 20, 24)
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
  losses = []
  for _ in range(150):
    params, opt, loss = step(params, opt)
    losses.append(float(loss))
  # Starts near uniform (ln 24 = 3.2), ends memorised.
  assert losses[0] > 2.5 and losses[-1] < 0.05, losses[::25]


@pytest.mark.parametrize('size,paper', [
    (dict(emb_dim=512, num_heads=8, mlp_dim=2048), 65e6),     # Vaswani et al. 2017, Table 3
    (dict(emb_dim=1024, num_heads=16, mlp_dim=4096), 213e6),
], ids=['base', 'big'])
def test_paper_sizes_counted_abstractly(size, paper):
  cfg = dict(name='transformer', num_encoder_layers=6, num_decoder_layers=6,
             share_embeddings=True, tie_output=True, positions='sinusoidal', **size)
  model = build_model(cfg, 37000, 37000)  # shared source-target BPE vocabulary (Sec. 5.1)
  batch = {'inputs': jnp.zeros((1, 8), jnp.int32), 'decoder_inputs': jnp.zeros((1, 8), jnp.int32)}
  shapes = jax.eval_shape(lambda r: model.init(r, batch, train=False), key(0))
  n = n_params(shapes['params'])
  assert n == expected_param_count(model)
  assert abs(n - paper) / paper < 0.04, n


def test_params_carry_logical_axis_names():
  model, _, _, batch, _ = built('post_norm_learned_shared')
  boxed = jax.eval_shape(lambda r: model.init(r, batch, train=False), key(0))['params']
  specs = jax.tree.map(tuple, nn.get_partition_spec(boxed))
  enc, dec = specs['encoder_layers_0'], specs['decoder_layers_1']
  assert enc['mlp']['wi']['kernel'] == ('embed', 'mlp')
  assert enc['mlp']['wo']['kernel'] == ('mlp', 'embed')
  assert enc['attn']['qkv']['kernel'] == ('embed', None, 'heads', 'kv')
  assert enc['attn']['out']['kernel'] == ('heads', 'kv', 'embed')
  assert enc['ln_attn']['scale'] == ('embed',)
  assert dec['cross_attn']['q']['kernel'] == ('embed', 'heads', 'kv')
  assert dec['cross_attn']['kv']['kernel'] == ('embed', None, 'heads', 'kv')
  assert specs['src_embed']['embedding'] == ('vocab', 'embed')
  assert specs['src_pos'] == (None, 'embed')
  assert specs['logits_dense']['kernel'] == ('embed', 'vocab')
  assert 'tgt_embed' not in specs  # share_embeddings: one table


@pytest.mark.parametrize('settings,vocabs,message', [
    (dict(share_embeddings=True), (20, 24), 'share_embeddings'),
    (dict(num_heads=5), (20, 24), 'divisible'),
    (dict(positions='rotary'), (20, 24), 'positions'),
    (dict(dtype='float64'), (20, 24), 'dtype'),
    (dict(positions='learned', max_len=4), (20, 24), 'max_len'),
])
def test_config_mistakes_are_user_errors(settings, vocabs, message):
  model = build_model(dict(TINY, **settings), *vocabs)
  with pytest.raises(UserError, match=message):
    jax.eval_shape(lambda r: model.init(r, make_batch(), train=False), key(0))


def test_decoding_past_learned_positions_is_a_user_error():
  model, _, params, batch, _ = built('post_norm_learned_shared')
  with pytest.raises(UserError, match='max_len'):
    model.apply({'params': params}, batch['inputs'], model.max_len + 1, method='init_cache')


def test_packed_batch_needs_both_segmentations():
  model, _, params, batch, _ = built('pre_norm')
  half = dict(batch, inputs_segmentation=np.ones_like(batch['inputs']))
  with pytest.raises(UserError, match='segmentation'):
    jax.eval_shape(lambda p: model.apply({'params': p}, half, train=False), params)


@pytest.mark.parametrize('bias_shape', [None, (2, 1, 1, 40), (1, 3, 36, 40), (2, 3, 36, 40)])
def test_per_head_attention_equals_the_batched_form(bias_shape):
  """layers.attention one (item, head) at a time (what a CPU run uses for Whisper's long
  encoder) gives the batched form's output for every shape of mask it is given."""
  from seq2seq_jax.models import layers  # pylint: disable=g-import-not-at-top
  ks = jax.random.split(jax.random.key(1), 4)
  q = jax.random.normal(ks[0], (2, 36, 3, 8))
  k, v = (jax.random.normal(x, (2, 40, 3, 8)) for x in ks[1:3])
  bias = None
  if bias_shape is not None:
    bias = jnp.where(jax.random.bernoulli(ks[3], 0.7, bias_shape), 0.0, layers.NEG_INF)
    bias = bias + 0.3 * jax.random.normal(ks[3], bias_shape)   # a relative-position bias too
  batched = layers.attention(q, k, v, bias, blocked=False)
  per_head = layers.attention(q, k, v, bias, blocked=True)
  np.testing.assert_allclose(per_head, batched, atol=2e-6)
  if bias is not None:   # the mask is read (per item and per head)
    assert not np.allclose(per_head, layers.attention(q, k, v, None, blocked=True), atol=1e-3)
  assert layers._use_blocked(1500, 1500) == (jax.device_count() == 1)
  assert not layers._use_blocked(20, 20)


def test_decoding_reads_only_the_slots_written_so_far():
  """Past 16 positions the decoder's self-attention reads a longer prefix of its slots
  (layers.attention_prefix's sizes): with three beams it equals attention over every slot
  at each step, and 30 incremental steps of a 40-position cache give the teacher-forced
  logits."""
  from seq2seq_jax.models import layers  # pylint: disable=g-import-not-at-top
  ks = jax.random.split(jax.random.key(2), 4)
  b, h, d, m, j = 2, 3, 8, 40, 3
  q = jax.random.normal(ks[0], (b, h, j, d))
  k_t = jax.random.normal(ks[1], (b, h, d, m * j))
  v = jax.random.normal(ks[2], (b, h, m * j, d))
  for pos in (0, 15, 16, 17, 31, 32, 39):
    written = jnp.arange(m * j) < (pos + 1) * j
    bias = jnp.where(written & jax.random.bernoulli(ks[3], 0.8, (b, 1, j, m * j)), 0.0,
                     layers.NEG_INF)
    np.testing.assert_allclose(
        jax.jit(layers.attention_prefix, static_argnums=(5,))(q, k_t, v, bias, pos, j),
        layers.attention_step(q, k_t, v, bias), atol=2e-6)
  model, _, params, _, forward = built('pre_norm')
  batch = make_batch(seed=3, t=30)
  cache = model.apply({'params': params}, batch['inputs'], 40, method='init_cache')
  step = jax.jit(lambda p, t, c: model.apply({'params': p}, t, c, method='decode_step'))
  outs = []
  for t in range(30):
    out, cache = step(params, jnp.asarray(batch['decoder_inputs'][:, t]), cache)
    outs.append(out)
  np.testing.assert_allclose(np.stack(outs, 1), forward(params, batch), atol=1e-5)
