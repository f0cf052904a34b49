"""Training at scale: gradient accumulation, rematerialization, mixed precision.

Each switch must change memory or speed, never the numbers (beyond bfloat16 rounding).
"""
import os
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax.trainer import steps
from seq2seq_jax.trainer import train
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model

SRC_V, TGT_V = 20, 24
MODELS = {
    'transformer': dict(name='transformer', emb_dim=32, num_heads=4, mlp_dim=64,
                        num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.0),
    'rnn': dict(name='rnn', cell='lstm', emb_dim=16, hidden_dim=8, encoder_layers=2,
                decoder_layers=2, bidirectional=True, dropout_rate=0.0, attention='general'),
}


def make_batch(b: int = 8, s: int = 7, t: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
  """Rows of different source and target lengths, so microbatches hold different numbers of
  target tokens (a mean of microbatch means would then differ from the token mean)."""
  rng = np.random.default_rng(seed)
  inp = rng.integers(4, SRC_V, (b, s)).astype(np.int32)
  tgt = rng.integers(4, TGT_V, (b, t)).astype(np.int32)
  for i in range(b):
    inp[i, 2 + i % (s - 2):] = 0
    tgt[i, 1 + (3 * i) % (t - 1):] = 0
  dec = np.concatenate([np.ones((b, 1), np.int32), tgt[:, :-1]], 1) * (tgt > 0)
  dec[:, 0] = 1
  return {'inputs': inp, 'decoder_inputs': dec, 'targets': tgt}


def init_params(model, batch):
  return nn.unbox(jax.jit(lambda r: model.init({'params': r}, batch, train=False))(
      jax.random.key(0))['params'])


def one_step(model, params, batch, k: int):
  config = ml_collections.ConfigDict(dict(seed=0, label_smoothing=0.1, grad_accum_steps=k))
  tx = optax.sgd(1.0)  # the update is the gradient itself: parameters compare gradients
  step = jax.jit(steps.make_train_step(model, tx, lambda s: 1.0, config))
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                           opt_state=tx.init(params))
  return step(state, batch)


def test_grad_accumulation_matches_one_batch():
  """Through the train step, with microbatches of different token counts. (The accumulation
  is the train step's, whatever the model: test_frontends.py checks it under both models, and
  test_grad_accumulation_on_a_sharded_batch_matches_one_batch on a sharded batch.)"""
  model = build_model(MODELS['rnn'], SRC_V, TGT_V)
  batch = make_batch()
  params = init_params(model, batch)
  state1, m1 = one_step(model, params, batch, 1)
  state4, m4 = one_step(model, params, batch, 4)
  for key in ('loss', 'nll', 'grad_norm', 'target_tokens'):
    np.testing.assert_allclose(m4[key], m1[key], rtol=1e-5, err_msg=key)
  # A mean of per-microbatch means would not match: the token counts differ.
  counts = (batch['targets'] > 0).reshape(2, 4, -1).sum((0, 2))
  assert len(set(counts.tolist())) > 1, counts
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               state4.params, state1.params)
  assert int(state4.step) == 1
  # The update really moved the parameters (the comparison is not of untouched copies).
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                       state4.params, params))
  assert max(moved) > 1e-3


def test_microbatches_take_rows_from_every_shard():
  batch = {'x': np.arange(16)}
  micro = steps.split_microbatches(batch, 4)['x']
  # Rows 0-3, 4-7, ... are one shard each of 4: every microbatch has one row of each.
  np.testing.assert_array_equal(micro[1], [1, 5, 9, 13])
  assert sorted(np.asarray(micro).ravel().tolist()) == list(range(16))


SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    'experiments', 'g2p_cmudict_transformer.py') + ':smoke'


def test_batch_must_split_into_microbatches_on_every_shard():
  config = config_lib.load_config(SPEC, [('batch_size', '16'), ('grad_accum_steps', '4'),
                                         ('mesh.data', '8')])
  with pytest.raises(UserError, match=r'batch_size=16 must be a multiple of grad_accum_steps '
                                      r'\(4\) x the batch shards \(8\) = 32'):
    train.setup(config)
  with pytest.raises(UserError, match='grad_accum_steps must be >= 1'):
    config_lib.load_config(SPEC, [('grad_accum_steps', '0')])


# Each policy under one model family (both wrap the same places in each model) keeps the
# number of compilations, the cost of this test, small.
@pytest.mark.parametrize('name,mode', [('transformer', 'dots'), ('rnn', 'full')])
def test_remat_changes_neither_params_nor_outputs_nor_gradients(name, mode):
  batch = make_batch()
  base = build_model(MODELS[name], SRC_V, TGT_V)
  params = init_params(base, batch)

  def loss_and_grads(model):
    def loss(p):
      logits = model.apply({'params': p}, batch, train=True, rngs={'dropout': jax.random.key(1)})
      return steps.cross_entropy(logits, batch['targets'], (batch['targets'] > 0) * 1.0)[0]
    return jax.jit(jax.value_and_grad(loss))(params)

  def first_decode_step(model):
    def run(p):
      cache = model.apply({'params': p}, batch['inputs'], 4, method='init_cache')
      bos = jnp.ones((batch['inputs'].shape[0],), jnp.int32)
      return model.apply({'params': p}, bos, cache, method='decode_step')[0]
    return jax.jit(run)(params)

  loss0, grads0 = loss_and_grads(base)
  model = build_model(dict(MODELS[name], remat=mode), SRC_V, TGT_V)
  # Same parameter paths and initial values: checkpoints of either load into the other.
  jax.tree.map(np.testing.assert_array_equal, init_params(model, batch), params)
  loss, grads = loss_and_grads(model)
  np.testing.assert_allclose(loss, loss0, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               grads, grads0)
  # The decoding path goes through the wrapped layers too.
  np.testing.assert_allclose(first_decode_step(model), first_decode_step(base), rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize('name', list(MODELS))
def test_unknown_remat_is_a_user_error(name):
  model = build_model(dict(MODELS[name], remat='some'), SRC_V, TGT_V)
  with pytest.raises(UserError, match="model.remat must be one of"):
    model.init({'params': jax.random.key(0)}, make_batch(), train=False)


def test_bfloat16_training_follows_float32_and_keeps_float32_state(tfds_data_dir):
  """The G2P smoke model trained in bfloat16: its loss falls as float32's does, close to it,
  while parameters and optimizer state (what checkpoints hold) stay float32."""
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config = config_lib.load_config(SPEC, [('data.data_dir', tfds_data_dir), ('dtype', dtype),
                                           ('data.buckets', '(24,)'), ('mesh.data', '1')])
    run = train.setup(config)
    assert run.model.dtype == dtype
    state = run.init_state(jax.random.key(0))
    batcher, feed = train.make_input(run, run.task.train_data(), batch_size=config.batch_size,
                                     shuffle=True)
    losses[dtype] = []
    for step in range(12):
      state, metrics = train.traced(run, run.train_step, state,
                                    feed.to_global(batcher.get_batch(step)))
      losses[dtype].append(float(metrics['loss']))
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype('float32')}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state)
            if jnp.issubdtype(x.dtype, jnp.floating)} == {jnp.dtype('float32')}
  f32, bf16 = np.array(losses['float32']), np.array(losses['bfloat16'])
  assert bf16[-3:].mean() < bf16[:3].mean() - 0.5, bf16
  np.testing.assert_allclose(bf16, f32, rtol=0.03)
  assert not np.array_equal(bf16, f32)  # bfloat16 really ran: its rounding shows


def test_config_dtype_drives_the_model_and_a_differing_model_dtype_is_an_error():
  task = types.SimpleNamespace(src_vocab_size=SRC_V, tgt_vocab_size=TGT_V, input_kind='tokens')
  config = ml_collections.ConfigDict(dict(task='g2p', dtype='bfloat16', model=MODELS['rnn']))
  assert train.build_model_for(config, task).dtype == 'bfloat16'
  config.model.dtype = 'bfloat16'  # agreeing is allowed
  assert train.build_model_for(config, task).dtype == 'bfloat16'
  config.model.dtype = 'float32'
  with pytest.raises(UserError, match="config.dtype='bfloat16' and model.dtype='float32'"):
    train.build_model_for(config, task)
  with pytest.raises(UserError, match="config.dtype must be 'float32' or 'bfloat16'"):
    config_lib.load_config(SPEC, [('dtype', 'float16')])


def test_grad_accumulation_on_a_sharded_batch_matches_one_batch(tfds_data_dir):
  """k = 2 on 4 batch shards (each microbatch spread over all of them) as k = 1, dropout off."""
  results = {}
  for k in (1, 2):
    config = config_lib.load_config(SPEC, [
        ('data.data_dir', tfds_data_dir), ('data.buckets', '(24,)'), ('batch_size', '16'),
        ('mesh.data', '4'), ('grad_accum_steps', str(k)), ('model.dropout_rate', '0.0')])
    run = train.setup(config)
    state = run.init_state(jax.random.key(0))
    batcher, feed = train.make_input(run, run.task.train_data(), batch_size=16, shuffle=True)
    state, metrics = train.traced(run, run.train_step, state, feed.to_global(batcher.get_batch(0)))
    results[k] = (float(metrics['loss']), float(metrics['grad_norm']))
  # Loss and gradient norm, not parameters: Adam's first update is about lr * sign(g), and
  # the key bias's gradient is exactly zero in theory (a softmax ignores a constant added to
  # a row), so its rounding noise alone picks the sign (the SGD test compares parameters).
  np.testing.assert_allclose(results[2], results[1], rtol=1e-5)
