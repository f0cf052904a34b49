"""Optimizer config: every key the chosen setup reads matters, any other is a one-line error."""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax.trainer import optim
from seq2seq_jax.errors import UserError

import runs  # tests/runs.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
G2P = os.path.join(ROOT, 'experiments', 'g2p_cmudict_transformer.py')


def _opt(**fields) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(learning_rate=0.1, **fields))


@pytest.mark.parametrize('spec', [
    'g2p_cmudict_transformer.py', 'g2p_cmudict_transformer.py:smoke',
    'g2p_cmudict_transformer.py:long', 'g2p_cmudict_transformer.py:paper',
    'g2p_cmudict_lstm_attention.py', 'g2p_cmudict_lstm_attention.py:smoke',
    'g2p_cmudict_lstm_attention.py:long', 'g2p_cmudict_lstm_attention.py:paper',
    'g2p_cmudict_transformer_ablation.py', 'g2p_cmudict_lstm_attention_ablation.py',
    'num2words_transformer.py', 'num2words_transformer.py:smoke',
    'wmt14_ende_luong.py', 'wmt14_ende_transformer_base.py', 'wmt14_ende_transformer_big.py',
    'wmt14_enfr_bahdanau.py', 'wmt14_enfr_sutskever.py',
])
def test_every_experiment_passes(spec):
  config = config_lib.load_config(os.path.join(ROOT, 'experiments', spec))
  optim.make_optimizer(config.optimizer, config.train_steps)


@pytest.mark.parametrize('fields,message', [
    (dict(name='adam', weight_decay=0.01), r"optimizer.weight_decay=0.01 is ignored by "
                                           r"optimizer.name='adam' \(it is read by adamw\)"),
    (dict(name='sgd', b1=0.5), r"optimizer.b1=0.5 is ignored by optimizer.name='sgd'"),
    (dict(name='sgd', eps=1e-9), r'optimizer.eps=1e-09 is ignored.*set it to 1e-06 or 1e-07 or 1e-08'),
    (dict(name='adam', momentum=0.9), r"optimizer.momentum=0.9 is ignored by .*'adam'"),
    (dict(name='adamw', rho=0.9), r"optimizer.rho=0.9 is ignored by .*'adamw'"),
    (dict(name='adadelta', b2=0.98), r"optimizer.b2=0.98 is ignored by .*'adadelta'"),
    (dict(schedule='step_halving', warmup_steps=400),
     r"optimizer.warmup_steps=400 is ignored by optimizer.schedule='step_halving'"),
    (dict(schedule='rsqrt', halve_every_steps=100),
     r"optimizer.halve_every_steps=100 is ignored by optimizer.schedule='rsqrt'"),
    (dict(schedule='cosine', halve_after_steps=5), r'optimizer.halve_after_steps=5 is ignored'),
    (dict(name='adam', weight_decai=0.01), r"unknown optimizer key 'weight_decai'"),
    (dict(name='lamb'), r"unknown optimizer.name 'lamb' \(known: adam, adamw, sgd, adadelta, adagrad\)"),
    (dict(schedule='linear'), r"unknown optimizer.schedule 'linear'"),
])
def test_ignored_or_unknown_key_is_an_error(fields, message):
  with pytest.raises(UserError, match=message):
    optim.validate(_opt(**fields))
  with pytest.raises(UserError, match=message):  # training builds through the same check
    optim.make_optimizer(_opt(**fields), 100)


@pytest.mark.parametrize('fields', [
    dict(name='adam', weight_decay=0.0),                # a no-op value of an unread key
    dict(name='sgd', b1=0.9, b2=0.999, eps=1e-8, rho=0.95),  # unread keys at their defaults
    dict(name='sgd', momentum=None),
    dict(name='adadelta', eps=1e-8, rho=0.9),            # eps is read: any value is fine
    dict(schedule='step_halving', warmup_steps=0, halve_after_steps=10, halve_every_steps=5),
    dict(schedule='constant', halve_every_steps=None),
])
def test_keys_that_change_nothing_are_allowed(fields):
  optim.validate(_opt(**fields))
  optim.make_optimizer(_opt(**fields), 100)


def _updates(opt: ml_collections.ConfigDict) -> np.ndarray:
  """Parameters after three steps on fixed, changing gradients (a constant one would hide
  Adam's betas: its bias-corrected step is then the same for any)."""
  tx = optim.make_optimizer(opt, 100)
  params = {'w': jnp.array([1.0, -2.0, 0.5])}
  state = tx.init(params)
  for g in ([0.3, -0.1, 0.02], [-0.2, 0.4, 0.1], [0.05, 0.3, -0.6]):
    updates, state = tx.update({'w': jnp.array(g)}, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
  return np.asarray(params['w'])


@pytest.mark.parametrize('name,key,value', [
    ('adam', 'b1', 0.5), ('adam', 'b2', 0.5), ('adam', 'eps', 1.0),
    ('adamw', 'weight_decay', 0.5), ('sgd', 'momentum', 0.9),
    ('adadelta', 'rho', 0.5), ('adadelta', 'eps', 1e-2),
])
def test_keys_read_change_the_updates(name, key, value):
  # The other side of the check: a key it treats as read must change the training.
  start = np.array([1.0, -2.0, 0.5])
  base, changed = _updates(_opt(name=name)), _updates(_opt(name=name, **{key: value}))
  # Relative to how far the parameters moved (Adadelta's steps are tiny); 1% is far above
  # float32 rounding, far below what these values change.
  assert np.abs(changed - base).max() > 0.01 * np.abs(base - start).max()


def test_launch_reports_ignored_key_in_one_line():
  code, _, err = runs.cli(f'--config={G2P}', '--mode=info', '--config.optimizer.name=adam',
                          '--config.optimizer.weight_decay=0.1')
  assert code == 2
  assert err.strip().splitlines() == [
      "error: optimizer.weight_decay=0.1 is ignored by optimizer.name='adam' (it is read by "
      "adamw); set it to 0.0 or choose an optimizer.name that reads it"]


@pytest.mark.parametrize('warmup, train_steps', [(0, 1), (0, 2), (5, 3), (50, 900)])
def test_cosine_schedule_builds_for_runs_of_any_length(warmup, train_steps):
  """optax refuses a cosine part of no steps; a 1-step run (warm-up 0) must still build, rise
  to at most the learning rate and end at 0 at train_steps when the warm-up (at least 1
  step) fits in it."""
  sched = optim.make_schedule(_opt(schedule='cosine', warmup_steps=warmup), train_steps)
  rates = np.array([float(sched(s)) for s in range(train_steps + 1)])
  assert np.all(np.isfinite(rates)) and np.all((rates >= 0) & (rates <= 0.1 + 1e-7))
  if max(warmup, 1) < train_steps:
    assert rates[train_steps] == pytest.approx(0.0, abs=1e-7)
    assert rates.max() > 0
