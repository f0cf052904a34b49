"""Show, Attend and Tell: the paper's sizes, cached decoding, the attention penalty, and the
attention weights the maps draw."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from seq2seq_jax.analysis import attention_maps
from seq2seq_jax.trainer import steps
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID
from seq2seq_jax.models import build_model

TINY = dict(name='show_attend_tell', emb_dim=8, hidden_dim=12, context_dim=6, attention_dim=5,
            frontend=dict(name='cnn', channels=(3, 4)), dropout_rate=0.0, doubly_stochastic=0.7)
VOCAB = 11


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  dec = rng.integers(4, VOCAB, (2, 5)).astype(np.int32)
  dec[:, 0] = BOS_ID
  dec[1, 3:] = 0                                        # a shorter caption
  targets = np.zeros_like(dec)
  targets[:, :-1] = dec[:, 1:]
  targets[0, -1] = EOS_ID
  targets[1, 2] = EOS_ID
  return {'inputs': rng.normal(size=(2, 16, 12, 3)).astype(np.float32),
          'decoder_inputs': dec, 'targets': targets}


@pytest.fixture(scope='module')
def tiny():
  model = build_model(TINY, 0, VOCAB)
  batch = _batch()
  params = nn.unbox(model.init(jax.random.key(0), batch)['params'])
  return model, params, batch


def test_paper_sizes_give_the_authors_parameter_count():
  """The decoder of the COCO soft-attention model (arctic-captions evaluate_coco.py: word 512,
  context 512, LSTM 1800, 10,000 words, two attention and two init layers, selector,
  prev2out, ctx2out) has the authors' parameter count, computed here from their layer list."""
  e, d, h, v = 512, 512, 1800, 10_000
  authors = (v * e                                   # Wemb
             + (d * d + d)                           # ff_init_1
             + 2 * (d * h + h)                       # ff_state, ff_memory
             + e * 4 * h + h * 4 * h + 4 * h + d * 4 * h   # decoder W, U, b, Wc
             + (d * d + d) + h * d + (d * d + d)     # Wc_att + b_att, Wd_att, W_att_1 + b
             + d + 1 + h + 1                         # U_att, c_tt, W_sel, b_sel
             + (h * e + e) + (d * e + e) + (e * v + v))  # ff_logit_lstm, _ctx, ff_logit
  model = build_model(dict(name='show_attend_tell'), 0, v)
  batch = {'inputs': jnp.zeros((1, 32, 32, 3)), 'decoder_inputs': jnp.ones((1, 3), jnp.int32)}
  shapes = nn.unbox(jax.eval_shape(lambda r: model.init(r, batch), jax.random.key(0))['params'])
  count = lambda tree: sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
  assert count(shapes) - count(shapes['frontend']) == authors == 35_333_450


def test_cached_decoding_equals_teacher_forcing(tiny):
  model, params, batch = tiny
  full = model.apply({'params': params}, batch)
  cache = model.apply({'params': params}, batch['inputs'], 5, method='init_cache')
  for t in range(batch['decoder_inputs'].shape[1]):
    logits, cache = model.apply({'params': params}, jnp.asarray(batch['decoder_inputs'][:, t]),
                                cache, method='decode_step')
    np.testing.assert_allclose(logits[0], full[0, t], rtol=1e-5, atol=1e-5)
    if t < 3:
      np.testing.assert_allclose(logits[1], full[1, t], rtol=1e-5, atol=1e-5)


def test_doubly_stochastic_penalty_and_train_loss(tiny):
  model, params, batch = tiny
  logits, sown = model.apply({'params': params}, batch, train=True, mutable=['losses',
                                                                            'intermediates'],
                             rngs={'dropout': jax.random.key(1)})
  alpha = np.asarray(sown['intermediates']['attention_weights'][0])
  assert alpha.shape == (2, 5, 3 * 4)                   # 16 x 12 pixels, two pools: 4 x 3
  np.testing.assert_allclose(alpha.sum(-1), 1.0, rtol=1e-5)
  real = batch['decoder_inputs'] > 0
  expect = 0.7 * sum(np.sum((1.0 - alpha[b][real[b]].sum(0)) ** 2) for b in range(2))
  penalty = float(sown['losses']['doubly_stochastic'][0])
  assert penalty == pytest.approx(expect, rel=1e-5) and penalty > 0
  # Not sown in evaluation; the train step's loss is NLL + penalty per target token.
  _, none = model.apply({'params': params}, batch, train=False, mutable=['losses'])
  assert not none
  step = steps.make_train_step(model, optax.sgd(0.0), lambda s: 0.0,
                               ml_collections.ConfigDict({'seed': 0}))
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                           opt_state=optax.sgd(0.0).init(params))
  _, m = jax.jit(step)(state, batch)
  tokens = float(np.sum(batch['targets'] > 0))
  assert float(m['loss']) == pytest.approx(float(m['nll']) + penalty / tokens, rel=1e-5)


def test_attention_weights_for_maps(tiny):
  """The maps' teacher-forced pass on a decoded output gives the weights of each step."""
  model, params, batch = tiny
  outputs = np.array([[5, 6, EOS_ID, 0, 0], [7, EOS_ID, 0, 0, 0]], np.int32)
  dec = attention_maps.decoder_inputs_for(outputs)
  np.testing.assert_array_equal(dec, [[BOS_ID, 5, 6, 0, 0], [BOS_ID, 7, 0, 0, 0]])
  _, sown = model.apply({'params': params}, {'inputs': batch['inputs'], 'decoder_inputs': dec},
                        mutable=['intermediates'])
  w = attention_maps.pick_weights(sown['intermediates'])
  assert w.shape == (2, 5, 12)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)


def test_coco_configs_print_their_parameter_counts():
  """--mode=info's count: the authors' decoder + our 14 x 14 x 512 cnn frontend."""
  import os  # pylint: disable=g-import-not-at-top
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      'experiments')
  sat = config_lib.load_config(os.path.join(root, 'coco_show_attend_tell.py'))
  assert train.count_params(sat) == 35_333_450 + 1_813_632
  tf = config_lib.load_config(os.path.join(root, 'coco_transformer_captioner.py'))
  assert tf.model.frontend.name == 'patches' and train.count_params(tf) > 44_000_000


def test_frontend_init_loads_the_files_weights(tiny, tmp_path):
  from seq2seq_jax.trainer import frontend_weights  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  model, params, batch = tiny
  other = nn.unbox(model.init(jax.random.key(7), batch)['params'])
  path = str(tmp_path / 'frontend.npz')
  frontend_weights.save(other, path)
  loaded = frontend_weights.load_into(params, path)
  for a, b in zip(jax.tree.leaves(loaded['frontend']), jax.tree.leaves(other['frontend'])):
    np.testing.assert_array_equal(a, b)
  for key in ('decoder', 'tgt_embed', 'init_h'):       # everything else stays
    for a, b in zip(jax.tree.leaves(loaded[key]), jax.tree.leaves(params[key])):
      np.testing.assert_array_equal(a, b)
  wider = build_model(dict(TINY, frontend=dict(name='cnn', channels=(3, 5))), 0, VOCAB)
  wider_params = nn.unbox(wider.init(jax.random.key(0), batch)['params'])
  with pytest.raises(UserError,
                     match=r'shapes differ: conv_1/bias \(4,\) != \(5,\); conv_1/kernel'):
    frontend_weights.load_into(wider_params, path)
  with pytest.raises(UserError, match='not found'):
    frontend_weights.load_into(params, str(tmp_path / 'nope.npz'))
