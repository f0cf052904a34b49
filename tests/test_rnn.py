"""RNN encoder-decoders: every attention type, padding, cached decoding, learning, paper sizes."""
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.steps import cross_entropy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC_V, TGT_V = 20, 24
KINDS = [(att, cell) for att in ('none', 'bahdanau', 'dot', 'general', 'concat')
         for cell in ('lstm', 'gru')]


def config(att, cell, **kw):
  cfg = dict(name='rnn', cell=cell, emb_dim=16, hidden_dim=8, encoder_layers=2,
             decoder_layers=2, attention=att, bidirectional=True, dropout_rate=0.1,
             bridge='final' if att == 'none' else 'dense' if att == 'bahdanau' else 'none',
             readout='maxout' if att == 'bahdanau' else 'linear')
  cfg.update(kw)
  return cfg


def make_batch(seed=0):
  rng = np.random.default_rng(seed)
  inp = rng.integers(4, SRC_V, (3, 7)).astype(np.int32)
  inp[0, 5:] = 0
  inp[2, 2:] = 0
  dec = rng.integers(4, TGT_V, (3, 6)).astype(np.int32)
  dec[:, 0] = 1
  return {'inputs': inp, 'decoder_inputs': dec}


def init(model, batch):
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  return nn.unbox(model.init(rngs, batch, train=False)['params'])


UNI_REVERSED = dict(bidirectional=False, reverse_source=True, decoder_hidden_dim=8)


@pytest.mark.parametrize('att,cell,variant', [(a, c, {}) for a, c in KINDS] + [
    ('none', 'lstm', UNI_REVERSED), ('general', 'gru', UNI_REVERSED),
    ('bahdanau', 'lstm', UNI_REVERSED)])
def test_shapes_padding_and_cached_decoding(att, cell, variant):
  cfg = config(att, cell, **variant)
  if att == 'none' and not variant:
    cfg['decoder_hidden_dim'] = 16
  model = build_model(cfg, SRC_V, TGT_V)
  batch = make_batch()
  params = init(model, batch)
  forward = jax.jit(lambda p, b: model.apply({'params': p}, b, train=False))
  step = jax.jit(lambda p, t, c: model.apply({'params': p}, t, c, method='decode_step'))
  logits = forward(params, batch)
  assert logits.shape == (3, 6, TGT_V) and logits.dtype == np.float32
  # Extra padding changes nothing at real positions.
  padded = {'inputs': np.pad(batch['inputs'], ((0, 0), (0, 4))),
            'decoder_inputs': np.pad(batch['decoder_inputs'], ((0, 0), (0, 3)))}
  np.testing.assert_allclose(forward(params, padded)[:, :6], logits, atol=1e-5)
  # One step at a time through the cache reproduces teacher forcing.
  cache = model.apply({'params': params}, batch['inputs'], 6, method='init_cache')
  assert all(x.shape[0] == 3 for x in jax.tree.leaves(cache))
  outs = []
  for t in range(6):
    out, cache = step(params, batch['decoder_inputs'][:, t], cache)
    outs.append(out)
  np.testing.assert_allclose(np.stack(outs, 1), logits, atol=1e-5)
  # Dropout is on in training only.
  dropped = model.apply({'params': params}, batch, train=True, rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(dropped, logits)


def test_source_reversal_reverses_only_real_tokens():
  from seq2seq_jax.models.rnn import reverse_valid  # pylint: disable=g-import-not-at-top
  x = np.array([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]])
  out = np.asarray(reverse_valid(x, np.array([3, 2])))
  np.testing.assert_array_equal(out, [[7, 6, 5, 0, 0], [9, 8, 0, 0, 0]])


@pytest.mark.parametrize('att', ['none', 'bahdanau', 'dot', 'general'])
def test_tiny_model_overfits_a_batch(att):
  cfg = config(att, 'lstm', dropout_rate=0.0, hidden_dim=16, emb_dim=16, encoder_layers=1,
               decoder_layers=1)
  if att == 'none':
    cfg['decoder_hidden_dim'] = 32
  model = build_model(cfg, SRC_V, TGT_V)
  batch = make_batch(3)
  targets = np.concatenate([batch['decoder_inputs'][:, 1:], np.full((3, 1), 2, np.int32)], 1)
  weights = np.ones_like(targets, np.float32)
  params = init(model, batch)
  tx = optax.adam(1e-2)
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
  assert losses[0] > 2.5 and losses[-1] < 0.1, (losses[0], losses[-1])


def test_lstm_and_gru_layer_parameter_formulas():
  for cell, gates in (('lstm', 4), ('gru', 3)):
    model = build_model(dict(name='rnn', cell=cell, emb_dim=16, hidden_dim=8, encoder_layers=1,
                             decoder_layers=1, bidirectional=False, attention='none',
                             bridge='none'), SRC_V, TGT_V)
    params = init(model, make_batch())
    enc = params['encoder_0']['fwd']
    n = sum(x.size for x in jax.tree.leaves(enc))
    assert n == gates * (8 * (16 + 8) + 8)


def test_bad_settings_are_user_errors():
  with pytest.raises(UserError, match='attention'):
    model = build_model(config('luong', 'lstm'), SRC_V, TGT_V)
    init(model, make_batch())
  with pytest.raises(UserError, match='dot'):
    model = build_model(config('dot', 'lstm', decoder_hidden_dim=5), SRC_V, TGT_V)
    init(model, make_batch())


def _info(name: str) -> int:
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='--xla_force_host_platform_device_count=1')
  proc = subprocess.run([sys.executable, os.path.join(ROOT, 'launch.py'),
                         f'--config={os.path.join(ROOT, "experiments", name)}', '--mode=info'],
                        capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return json.loads(proc.stdout)['num_params']


def test_paper_parameter_counts_via_info_mode():
  # Sutskever et al. 2014, Sec. 3.4: "384M parameters".
  assert abs(_info('wmt14_enfr_sutskever.py') - 384e6) / 384e6 < 0.01
  # The counts the other papers' architectures imply (they state none), from the layer
  # formulas: Bahdanau: embeddings 2 x 30k x 620, BiGRU 2 x 3(1000(620+1000)+1000), ...
  bahdanau = _info('wmt14_enfr_bahdanau.py')
  emb = 2 * 30_000 * 620
  enc = 2 * 3 * (1000 * (620 + 1000) + 1000)
  dec = 3 * (1000 * (620 + 2000 + 1000) + 1000)
  attention = 2000 * 1000 + 1000 * 1000 + 1000 + 1000
  readout = 1000 * 1000 + 1000 + 620 * 1000 + 2000 * 1000
  bridge = 1000 * 1000 + 1000
  out = 500 * 30_000 + 30_000
  assert bahdanau == emb + enc + dec + attention + readout + bridge + out
  luong = _info('wmt14_ende_luong.py')
  emb = 2 * 50_000 * 1000
  lstm = 4 * (1000 * 2000 + 1000)
  dec0 = 4 * (1000 * 3000 + 1000)   # input feeding: [embedding; attentional vector]
  assert luong == emb + 4 * lstm + dec0 + 3 * lstm + 1000 * 1000 + 2000 * 1000 + 50_050_000
