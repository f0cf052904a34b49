"""RNN encoder-decoders: shapes, padding, cached decoding, the cells' equations, learning,
and the parameter counts of the paper configurations."""
import functools
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax.decoding import search as decoding
from seq2seq_jax import tasks
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.models import rnn

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'experiments')
SRC_V, TGT_V = 20, 24
# The tests compare numbers computed by one compiled program, not speed: compile fast.
jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})
# The paper forms: which bridge and readout go with each attention type.
PAPER_FORM = {'none': dict(bridge='final'),                                     # Sutskever
              'bahdanau': dict(bridge='dense', readout='maxout', readout_dim=6),  # RNNsearch
              'dot': {}, 'general': {}, 'concat': {}}                            # Luong


def config(att: str, cell: str, **kw) -> dict:
  cfg = dict(name='rnn', cell=cell, emb_dim=16, hidden_dim=8, encoder_layers=1,
             decoder_layers=1, bidirectional=True, dropout_rate=0.1, attention=att,
             **PAPER_FORM[att])
  cfg.update(kw)
  return cfg


def make_batch(seed: int = 0) -> dict[str, np.ndarray]:
  """3 sentences of different lengths (5, 7, 2 source tokens), right-padded."""
  rng = np.random.default_rng(seed)
  inp = rng.integers(4, SRC_V, (3, 7)).astype(np.int32)
  inp[0, 5:] = 0
  inp[2, 2:] = 0
  dec = rng.integers(4, TGT_V, (3, 6)).astype(np.int32)
  dec[:, 0] = 1
  dec[2, 4:] = 0
  return {'inputs': inp, 'decoder_inputs': dec}


def init(model: nn.Module, batch) -> dict:
  return nn.unbox(jit(lambda r: model.init({'params': r}, batch, train=False))(
      jax.random.key(0))['params'])


def num_params(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


# Every attention type with both cells; each pair also stands for one variant.
CASES = [
    # Sutskever et al. 2014: unidirectional, reversed source, final-state bridge, 2 layers.
    ('none', 'lstm', dict(bidirectional=False, reverse_source=True, encoder_layers=2,
                          decoder_layers=2)),
    # Cho et al. 2014: the fixed context at every step, decoder state from tanh(W c).
    ('none', 'gru', dict(feed_context=True, bridge='dense', readout='maxout', readout_dim=5,
                         decoder_layers=2)),
    ('bahdanau', 'lstm', {}),
    ('bahdanau', 'gru', dict(reverse_source=True, encoder_layers=2, decoder_layers=2)),
    ('dot', 'lstm', dict(readout='maxout', readout_dim=16, tie_output=True)),
    ('dot', 'gru', {}),
    # Luong et al. 2015 with reversal, no input feeding, 3 layers with GNMT residuals.
    ('general', 'lstm', dict(bidirectional=False, reverse_source=True, input_feeding=False,
                             encoder_layers=3, decoder_layers=3, residual=True,
                             bridge='final')),
    ('general', 'gru', {}),
    ('concat', 'lstm', {}),
    ('concat', 'gru', dict(reverse_source=True)),
]
assert {(a, c) for a, c, _ in CASES} == {(a, c) for a in PAPER_FORM for c in ('lstm', 'gru')}


def run_both_ways(model: nn.Module, batch, extra_src: int, extra_tgt: int):
  """One jit (one compile): init; teacher forcing on the batch with extra padding columns;
  init_cache on the unpadded source and decode_step over the decoder inputs in a scan."""
  def fn(rng):
    params = model.init({'params': rng}, batch, train=False)['params']
    padded = {'inputs': jnp.pad(batch['inputs'], ((0, 0), (0, extra_src))),
              'decoder_inputs': jnp.pad(batch['decoder_inputs'], ((0, 0), (0, extra_tgt)))}
    forced = model.apply({'params': params}, padded, train=False)
    cache = model.apply({'params': params}, batch['inputs'], 6, method='init_cache')

    def step(cache, tokens):
      logits, cache = model.apply({'params': params}, tokens, cache, method='decode_step')
      return cache, logits
    _, stepped = jax.lax.scan(step, cache, batch['decoder_inputs'].T)
    return forced, stepped.transpose(1, 0, 2), cache
  return jit(fn)(jax.random.key(0))


@pytest.mark.parametrize('att,cell,variant', CASES,
                         ids=[f'{a}-{c}-{i}' for i, (a, c, _) in enumerate(CASES)])
def test_padding_invariance_and_cached_decoding(att, cell, variant):
  model = build_model(config(att, cell, **variant), SRC_V, TGT_V)
  batch = make_batch()
  forced, stepped, cache = run_both_ways(model, batch, extra_src=4, extra_tgt=3)
  assert forced.shape == (3, 9, TGT_V) and forced.dtype == jnp.float32
  assert np.all(np.isfinite(forced))
  assert all(leaf.shape[0] == 3 for leaf in jax.tree.leaves(cache))
  # Teacher forcing with 4 extra source and 3 extra target padding columns equals the
  # cached steps from the unpadded source, at every real position.
  np.testing.assert_allclose(stepped, forced[:, :6], atol=1e-5, rtol=1e-5)


def test_beam_search_scores_match_teacher_forcing():
  """Beam search reorders the decoder carries (layers and input feeding) between beams: each
  returned hypothesis must score what teacher forcing gives it."""
  model = build_model(config('general', 'lstm', encoder_layers=2, decoder_layers=2,
                             bridge='final'), SRC_V, TGT_V)
  batch = make_batch()
  params = init(model, batch)
  cache = jit(lambda p, x: model.apply({'params': p}, x, 5, method='init_cache'))(
      params, batch['inputs'])
  step = lambda t, c: model.apply({'params': params}, t, c, method='decode_step')
  seqs, scores = decoding.beam_search(step, cache, batch_size=3, beam_size=3, max_len=5,
                                      bos_id=1, eos_id=2, alpha=0.0)
  seqs = np.asarray(seqs).reshape(9, 5)
  dec = np.concatenate([np.ones((9, 1), np.int32), seqs[:, :-1]], 1)
  logp = jax.nn.log_softmax(jit(lambda p, b: model.apply({'params': p}, b, train=False))(
      params, {'inputs': np.repeat(batch['inputs'], 3, 0), 'decoder_inputs': dec}))
  real = np.cumsum(seqs == 2, 1) - (seqs == 2) == 0        # up to and including EOS
  want = np.sum(np.take_along_axis(logp, seqs[..., None], -1)[..., 0] * real, 1)
  np.testing.assert_allclose(np.asarray(scores).reshape(9), want, atol=1e-4)
  assert len({tuple(s) for s in seqs[:3]}) == 3            # three distinct hypotheses


def test_encoder_states_ignore_padding():
  """Each sentence encoded alone, without padding, gives the same outputs and final states:
  carries freeze on padding and the backward direction starts at the last real token."""
  model = build_model(config('none', 'gru', reverse_source=True, encoder_layers=2,
                             decoder_layers=2), SRC_V, TGT_V)
  batch = make_batch()
  params = init(model, batch)
  encode = jit(lambda x: model.apply({'params': params}, x, method='encode'))
  memory, _, finals = encode(batch['inputs'])
  for row, n in enumerate((batch['inputs'] > 0).sum(1)):
    alone, _, alone_finals = encode(batch['inputs'][row:row + 1, :n])
    np.testing.assert_allclose(memory[row, :n], alone[0], atol=1e-6)
    assert np.all(memory[row, n:] == 0)
    for got, want in zip(jax.tree.leaves(finals), jax.tree.leaves(alone_finals)):
      np.testing.assert_allclose(got[row], want[0], atol=1e-6)


@pytest.mark.parametrize('kind', ['lstm', 'gru'])
def test_bidirectional_layer_runs_both_cells_over_real_tokens(kind):
  """The one-scan bidirectional layer against a plain loop: the forward cell reads tokens
  0..n-1, the backward cell n-1..0 of each row (n real tokens); outputs 0 on padding; the
  final carries are the states after the last real token each way."""
  b, s, d, n = 3, 6, 4, 5
  lengths = np.array([6, 3, 1])
  mask = np.arange(s)[None] < lengths[:, None]
  x = np.random.default_rng(0).normal(size=(b, s, d)).astype(np.float32) * mask[..., None]
  layer = rnn.EncoderLayer(kind, n, d, True, None, jnp.float32)
  params = nn.unbox(layer.init(jax.random.key(0), x, mask, lengths)['params'])
  out, (fwd, bwd) = layer.apply({'params': params}, x, mask, lengths)
  want = np.zeros((b, s, 2 * n), np.float32)
  for direction, half, final in (('fwd', 0, fwd), ('bwd', 1, bwd)):
    cell = rnn.make_cell(kind, n, d, None, jnp.float32, direction)
    step = jax.jit(lambda c, v, p=params[direction], cell=cell: cell.apply({'params': p}, c, v))
    for row in range(b):
      carry = jax.tree.map(lambda z: z[:1], rnn.zero_carry(kind, 1, n))
      order = range(lengths[row]) if direction == 'fwd' else reversed(range(lengths[row]))
      for t in order:
        carry = step(carry, x[row:row + 1, t])
        want[row, t, half * n:(half + 1) * n] = carry['h'][0]
      for k in carry:
        np.testing.assert_allclose(final[k][row], carry[k][0], atol=1e-5)
  np.testing.assert_allclose(out, want, atol=1e-5)


def test_additive_attention_keeps_no_per_step_scores_for_the_backward_pass():
  """Bahdanau scores are rematerialised: the same values and gradients as the plain formula,
  and the teacher-forced gradient keeps no [T, B, S, A] tanh residual (smaller temporaries)."""
  from seq2seq_jax.models.rnn.attention import additive as attn_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  keys, q, v = (jnp.asarray(rng.normal(size=shape), jnp.float32)
                for shape in ((2, 5, 8), (2, 8), (8,)))
  plain = lambda k, q, v: jnp.tanh(k + q[:, None, :]) @ v
  loss = lambda f: jax.grad(lambda *a: jnp.sum(jnp.sin(f(*a))), argnums=(0, 1, 2))(keys, q, v)
  np.testing.assert_array_equal(attn_lib.additive_scores(keys, q, v), plain(keys, q, v))
  for got, want in zip(loss(attn_lib.additive_scores), loss(plain)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)

  model = build_model(config('bahdanau', 'lstm', dropout_rate=0.0, attention_dim=64,
                             hidden_dim=16), SRC_V, TGT_V)
  batch = {'inputs': np.full((8, 16), 5, np.int32), 'decoder_inputs': np.full((8, 16), 5,
                                                                             np.int32)}
  params = init(model, batch)

  def temp_bytes():
    grad = jax.jit(jax.grad(lambda p: jnp.sum(model.apply({'params': p}, batch))))
    return grad.lower(params).compile().memory_analysis().temp_size_in_bytes
  remat = temp_bytes()
  original = attn_lib.additive_scores
  try:
    attn_lib.additive_scores = plain
    kept = temp_bytes()
  finally:
    attn_lib.additive_scores = original
  # The kept residual: 16 steps x 8 rows x 16 positions x 64 units x 4 bytes = 512 KiB.
  assert kept - remat >= 16 * 8 * 16 * 64 * 4 * 0.9, (kept, remat)


def test_dropout_only_in_training_and_bfloat16():
  model = build_model(config('general', 'lstm', dropout_rate=0.3), SRC_V, TGT_V)
  bf16 = build_model(config('general', 'lstm', dropout_rate=0.3, dtype='bfloat16'), SRC_V,
                     TGT_V)
  batch = make_batch()

  @jit
  def run(rng):
    params = model.init({'params': rng}, batch, train=False)['params']
    train = [model.apply({'params': params}, batch, train=True,
                         rngs={'dropout': jax.random.key(i)}) for i in (1, 2)]
    return (*train, model.apply({'params': params}, batch, train=False),
            bf16.apply({'params': params}, batch, train=False))
  train_1, train_2, full, low = run(jax.random.key(0))
  assert not np.allclose(train_1, train_2) and not np.allclose(train_1, full)
  # bfloat16 matmuls with float32 states and gates: close to float32, not equal.
  assert low.dtype == jnp.float32 and not np.array_equal(low, full)
  np.testing.assert_allclose(low, full, atol=0.05)


def test_source_reversal_reverses_only_real_tokens():
  x = np.array([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0], [4, 5, 6, 7, 8]])
  out = np.asarray(rnn.reverse_valid(x, np.array([3, 2, 5])))
  np.testing.assert_array_equal(out, [[7, 6, 5, 0, 0], [9, 8, 0, 0, 0], [8, 7, 6, 5, 4]])


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize('kind', ['lstm', 'gru'])
def test_cells_follow_the_papers_equations(kind):
  """LSTM (Zaremba et al. 2014) and GRU (Cho et al. 2014, Eq. 5-8: reset before U)."""
  n, d = 5, 3
  cell = rnn.make_cell(kind, n, d, None, jnp.float32, 'cell')
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, d)).astype(np.float32)
  carry = {k: rng.normal(size=(2, n)).astype(np.float32)
           for k in (('c', 'h') if kind == 'lstm' else ('h',))}
  params = cell.init(jax.random.key(0), carry, x)['params']
  params = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32) * 0.5,
                        nn.unbox(params))
  got = cell.apply({'params': params}, carry, x)
  w, u, b = params['input_kernel'], params['recurrent_kernel'], params['bias']
  h = carry['h']
  if kind == 'lstm':
    i, f, g, o = np.split(x @ w + h @ u + b, 4, axis=-1)
    c = _sigmoid(f) * carry['c'] + _sigmoid(i) * np.tanh(g)
    want = {'c': c, 'h': _sigmoid(o) * np.tanh(c)}
  else:
    (wr, wz, wn), (ur, uz, un), (br, bz, bn) = (np.split(a, 3, axis=-1) for a in (w, u, b))
    r = _sigmoid(x @ wr + h @ ur + br)
    z = _sigmoid(x @ wz + h @ uz + bz)
    want = {'h': z * h + (1 - z) * np.tanh(x @ wn + (r * h) @ un + bn)}
  for k in want:
    np.testing.assert_allclose(got[k], want[k], atol=1e-5)


def test_recurrent_layer_parameter_formulas():
  """One bias per gate: LSTM 4 * (h * (in + h) + h), GRU 3 * (h * (in + h) + h)."""
  for cell, gates in (('lstm', 4), ('gru', 3)):
    for emb, hidden in ((16, 8), (7, 12)):
      model = build_model(dict(name='rnn', cell=cell, emb_dim=emb, hidden_dim=hidden,
                               encoder_layers=1, decoder_layers=1, bidirectional=True,
                               attention='none'), SRC_V, TGT_V)
      params = nn.unbox(jax.eval_shape(lambda r, m=model: m.init(
          {'params': r}, make_batch(), train=False), jax.random.key(0))['params'])
      for direction in ('fwd', 'bwd'):
        assert num_params(params['encoder_0'][direction]) == gates * (
            hidden * (emb + hidden) + hidden)


# ('dot' is 'general' without its matrix; test_padding_invariance_and_cached_decoding runs it
# with both cells.)
@pytest.mark.parametrize('att', ['none', 'bahdanau', 'general'])
def test_tiny_model_overfits_a_batch(att):
  extra = dict(decoder_hidden_dim=32) if att == 'none' else {}
  model = build_model(config(att, 'lstm', dropout_rate=0.0, hidden_dim=16, encoder_layers=1,
                             decoder_layers=1, **extra), SRC_V, TGT_V)
  batch = make_batch(3)
  targets = np.concatenate([batch['decoder_inputs'][:, 1:], np.zeros((3, 1), np.int32)], 1)
  targets[np.arange(3), (batch['decoder_inputs'] > 0).sum(1) - 1] = 2   # EOS
  weights = (targets > 0).astype(np.float32)
  params = init(model, batch)
  tx = optax.adam(1e-2)

  def loss_fn(p):
    logits = model.apply({'params': p}, batch, train=False)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    return jnp.sum(nll * weights) / weights.sum()

  @jit
  def train(params):
    def body(carry, _):
      p, opt = carry
      loss, grads = jax.value_and_grad(loss_fn)(p)
      updates, opt = tx.update(grads, opt)
      return (optax.apply_updates(p, updates), opt), loss
    return jax.lax.scan(body, (params, tx.init(params)), length=150)[1]
  losses = train(params)
  assert losses[0] > 2.5 and losses[-1] < 0.05, (losses[0], losses[-1])


def test_bad_settings_are_user_errors():
  batch = make_batch()
  for cfg, match in ((config('none', 'lstm', attention='luong'), 'attention'),
                     (config('dot', 'lstm', decoder_hidden_dim=5), 'dot'),
                     (config('none', 'lstm', encoder_layers=2), 'final'),
                     (config('general', 'gru', tie_output=True, emb_dim=12), 'tie_output')):
    with pytest.raises(UserError, match=match):
      init(build_model(cfg, SRC_V, TGT_V), batch)
  model = build_model(config('general', 'lstm'), SRC_V, TGT_V)
  with pytest.raises(UserError, match='packing'):
    init(model, {**batch, 'inputs_segmentation': (batch['inputs'] > 0).astype(np.int32)})


def paper_params(name: str) -> int:
  """What `launch.py --mode=info` reports: the task's vocabularies, shapes only."""
  cfg = config_lib.load_config(os.path.join(EXPERIMENTS, name))
  task = tasks.get_task(cfg)
  model = build_model(cfg.model, task.src_vocab_size, task.tgt_vocab_size)
  dummy = {'inputs': jnp.ones((1, 8), jnp.int32), 'decoder_inputs': jnp.ones((1, 8), jnp.int32)}
  shapes = jax.eval_shape(lambda r: model.init({'params': r}, dummy, train=False)['params'],
                          jax.random.key(0))
  return num_params(nn.unbox(shapes))


def lstm(inp: int, h: int = 1000) -> int:
  return 4 * (h * (inp + h) + h)


def gru(inp: int, h: int = 1000) -> int:
  return 3 * (h * (inp + h) + h)


def test_paper_parameter_counts():
  # Sutskever et al. 2014, Sec. 3.4: "384M parameters": embeddings 160k + 80k words x 1000,
  # 4 + 4 LSTM layers of 1000 cells (of which "64M are pure recurrent connections"), and the
  # 80k softmax.
  sutskever = paper_params('wmt14_enfr_sutskever.py')
  assert sutskever == 240_000 * 1000 + 8 * lstm(1000) + 1000 * 80_000 + 80_000
  assert abs(sutskever - 384e6) / 384e6 < 0.01
  # Bahdanau et al. 2015, the count the App. A.2 sizes imply: embeddings 2 x 30k x 620,
  # BiGRU encoder, decoder GRU reading [E y; c_i], alignment model (W_a, U_a, v_a),
  # s_0 = tanh(W_s h_1), maxout readout (U_o, V_o, C_o: 2l = 1000) and W_o (500 -> 30k).
  bahdanau = paper_params('wmt14_enfr_bahdanau.py')
  assert bahdanau == (2 * 30_000 * 620 + 2 * gru(620) + gru(620 + 2000)
                      + (1000 * 1000 + 1000) + 2000 * 1000 + 1000
                      + (1000 * 1000 + 1000) + (1000 + 620 + 2000) * 1000 + 1000
                      + 500 * 30_000 + 30_000)
  # Luong et al. 2015, from the Sec. 4.1 sizes: 4 + 4 LSTM layers, the first decoder layer reading
  # [E y; h~_{t-1}] (input feeding), W_a (general), W_c (Eq. 5), the 50k softmax.
  luong = paper_params('wmt14_ende_luong.py')
  assert luong == (2 * 50_000 * 1000 + 4 * lstm(1000) + lstm(2000) + 3 * lstm(1000)
                   + 1000 * 1000 + 2000 * 1000 + 1000 * 50_000 + 50_000)
  print(f'\nparameters: sutskever {sutskever:,} bahdanau {bahdanau:,} luong {luong:,}')
