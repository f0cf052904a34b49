"""Optimizers and learning-rate schedules from `config.optimizer` (optax)."""
from typing import Any

import jax.numpy as jnp
import optax

from seq2seq_jax.errors import UserError


def make_schedule(opt: Any, train_steps: int) -> optax.Schedule:
  """Learning rate as a function of the step.

  'rsqrt': linear warmup to `learning_rate`, then learning_rate * sqrt(warmup / step):
    Vaswani et al. 2017, Eq. 3, with the d_model**-0.5 factor folded into learning_rate.
  'cosine': linear warmup then cosine decay to 0 at train_steps.
  'step_halving': constant, halved every `halve_every_steps` after `halve_after_steps`
    (Sutskever et al. 2014 Sec. 3.4; Luong et al. 2015 Sec. 4.1).
  'constant': linear warmup (if any) then constant.
  """
  lr = float(opt.learning_rate)
  warmup = int(opt.get('warmup_steps', 0))
  name = opt.get('schedule', 'constant')
  if name == 'rsqrt':
    w = max(warmup, 1)
    return lambda step: lr * jnp.minimum((step + 1) / w, jnp.sqrt(w / (step + 1)))
  if name == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(train_steps, warmup + 1))
  if name == 'step_halving':
    after = int(opt.get('halve_after_steps', 0))
    every = int(opt.get('halve_every_steps', 1))
    def halving(step):
      n = jnp.maximum(0, (step - after) // every + 1) * (step >= after)
      return lr * 0.5 ** n
    return halving
  if name == 'constant':
    if warmup:
      return lambda step: lr * jnp.minimum(1.0, (step + 1) / warmup)
    return optax.constant_schedule(lr)
  raise UserError(f'unknown optimizer.schedule {name!r} '
                  '(known: constant, rsqrt, cosine, step_halving)')


def make_optimizer(opt: Any, train_steps: int) -> optax.GradientTransformation:
  """The optax transformation for `config.optimizer`, with gradient clipping first."""
  schedule = make_schedule(opt, train_steps)
  name = opt.get('name', 'adam')
  if name == 'adam':
    tx = optax.adam(schedule, b1=opt.get('b1', 0.9), b2=opt.get('b2', 0.999),
                    eps=opt.get('eps', 1e-8))
  elif name == 'adamw':
    tx = optax.adamw(schedule, b1=opt.get('b1', 0.9), b2=opt.get('b2', 0.999),
                     eps=opt.get('eps', 1e-8), weight_decay=opt.get('weight_decay', 0.0))
  elif name == 'sgd':
    tx = optax.sgd(schedule, momentum=opt.get('momentum', None) or None)
  elif name == 'adadelta':
    # Bahdanau et al. 2015 App. B.2: Adadelta with eps 1e-6, rho 0.95.
    tx = optax.adadelta(schedule, rho=opt.get('rho', 0.95), eps=opt.get('eps', 1e-6))
  else:
    raise UserError(f'unknown optimizer.name {name!r} (known: adam, adamw, sgd, adadelta)')
  clip = opt.get('grad_clip_norm', 0.0)
  if clip:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx
