"""Training at scale: gradient accumulation, rematerialization, mixed precision.

Each switch must change memory or speed, never the numbers (beyond bfloat16 rounding).
"""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax import steps
from seq2seq_jax import train
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


@pytest.mark.parametrize('name', list(MODELS))
def test_grad_accumulation_matches_one_batch(name):
  model = build_model(MODELS[name], SRC_V, TGT_V)
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


@pytest.mark.parametrize('name', list(MODELS))
def test_remat_changes_neither_params_nor_outputs_nor_gradients(name):
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
  for mode in ('full', 'dots'):
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
