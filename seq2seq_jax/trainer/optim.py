"""Optimizers and learning-rate schedules from `config.optimizer` (optax).

`optimizer.freeze`: regular expressions over parameter paths (the tree's keys joined by '/':
'encoder/layers_0/mlp/wi/kernel', 'frontend/conv1/kernel', 'tgt_embed/embedding');
a parameter whose path any of them matches (re.search) is never updated, keeps no optimizer
state, and is left out of grad_clip_norm's global norm. Its gradient is then unused, so XLA
drops the backward pass that only it needed (a frozen encoder costs its forward pass only).
"""
import re
from typing import Any

import jax

import jax.numpy as jnp
import optax

from seq2seq_jax.errors import UserError

# The keys each optimizer and each schedule reads, with the value each takes when absent.
_OPTIMIZER_KEYS = {
    'adam': {'b1': 0.9, 'b2': 0.999, 'eps': 1e-8},
    'adamw': {'b1': 0.9, 'b2': 0.999, 'eps': 1e-8, 'weight_decay': 0.0},
    'sgd': {'momentum': 0.0},
    # Bahdanau et al. 2015 App. B.2: Adadelta with eps 1e-6, rho 0.95.
    'adadelta': {'rho': 0.95, 'eps': 1e-6},
    # See et al. 2017, Sec. 5: Adagrad, initial accumulator 0.1 (TensorFlow's: no eps).
    'adagrad': {'initial_accumulator_value': 0.1, 'eps': 1e-7},
}
_SCHEDULE_KEYS = {
    'constant': {'warmup_steps': 0},
    'rsqrt': {'warmup_steps': 0},
    'cosine': {'warmup_steps': 0},
    'step_halving': {'halve_after_steps': 0, 'halve_every_steps': 1},
}
_COMMON_KEYS = ('name', 'learning_rate', 'schedule', 'grad_clip_norm', 'freeze')


def _readers(key: str) -> tuple[str, dict[str, Any]]:
  """Where an optimizer key is read.

  Returns:
    The setting that decides whether it is read ('name' or 'schedule') and {each choice of
    that setting that reads it: its default there}; ('', {}) for a key nothing reads.
  """
  for field, table in (('name', _OPTIMIZER_KEYS), ('schedule', _SCHEDULE_KEYS)):
    defaults = {choice: keys[key] for choice, keys in table.items() if key in keys}
    if defaults:
      return field, defaults
  return '', {}


def known_keys() -> set[str]:
  """Every key of `config.optimizer` something reads."""
  return set(_COMMON_KEYS).union(*_OPTIMIZER_KEYS.values(), *_SCHEDULE_KEYS.values())


def validate(opt: Any) -> None:
  """Checks `config.optimizer`: known names, and no key that would be silently ignored.

  A key the chosen optimizer and schedule do not read may only be None or hold a default
  it has where it is read (weight_decay=0.0 with adam, warmup_steps=0 with step_halving):
  such a value changes nothing. Any other value would make the run differ from what its
  config says, so it is an error.

  Args:
    opt: `config.optimizer`.

  Raises:
    UserError: an unknown optimizer, schedule or key, or a key the setup would ignore.
  """
  chosen = {'name': opt.get('name', 'adam'), 'schedule': opt.get('schedule', 'constant')}
  if chosen['name'] not in _OPTIMIZER_KEYS:
    raise UserError(f'unknown optimizer.name {chosen["name"]!r} '
                    f'(known: {", ".join(_OPTIMIZER_KEYS)})')
  if chosen['schedule'] not in _SCHEDULE_KEYS:
    raise UserError(f'unknown optimizer.schedule {chosen["schedule"]!r} '
                    f'(known: {", ".join(_SCHEDULE_KEYS)})')
  for key in opt.keys():
    if key in _COMMON_KEYS:
      continue
    field, defaults = _readers(key)
    if not field:
      known = known_keys()
      raise UserError(f'unknown optimizer key {key!r} (known: {", ".join(sorted(known))})')
    value = opt[key]
    if chosen[field] in defaults or value is None or value in defaults.values():
      continue
    raise UserError(
        f'optimizer.{key}={value!r} is ignored by optimizer.{field}={chosen[field]!r} (it is '
        f'read by {", ".join(defaults)}); set it to '
        f'{" or ".join(sorted(set(map(repr, defaults.values()))))} or choose an '
        f'optimizer.{field} that reads it')


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
    # optax needs a cosine part of at least one step, even for a run of 1 step.
    w = max(warmup, 1)
    return optax.warmup_cosine_decay_schedule(0.0, lr, w, max(train_steps, w + 1))
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
  raise UserError(f'unknown optimizer.schedule {name!r} (known: {", ".join(_SCHEDULE_KEYS)})')


def make_optimizer(opt: Any, train_steps: int) -> optax.GradientTransformation:
  """The optax transformation for `config.optimizer`, with gradient clipping first."""
  validate(opt)
  schedule = make_schedule(opt, train_steps)
  name = opt.get('name', 'adam')
  args = {k: d if opt.get(k, None) is None else opt[k] for k, d in _OPTIMIZER_KEYS[name].items()}
  if name == 'adam':
    tx = optax.adam(schedule, **args)
  elif name == 'adamw':
    tx = optax.adamw(schedule, **args)
  elif name == 'sgd':
    tx = optax.sgd(schedule, momentum=args['momentum'] or None)  # 0: plain SGD, no trace
  elif name == 'adagrad':
    tx = optax.adagrad(schedule, **args)
  else:
    tx = optax.adadelta(schedule, **args)
  clip = opt.get('grad_clip_norm', 0.0)
  if clip:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  freeze = freeze_patterns(opt)
  if freeze:
    tx = optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()},
                               lambda params: frozen_labels(params, freeze))
  return tx


def freeze_patterns(opt: Any) -> tuple[str, ...]:
  """optimizer.freeze as a tuple of patterns (one string or several; none: ())."""
  freeze = opt.get('freeze', None) or ()
  return (freeze,) if isinstance(freeze, str) else tuple(freeze)


def param_path(path: Any) -> str:
  """'encoder/layers_0/attention/query/kernel' for a jax.tree_util key path."""
  # Dict keys only: a flax box (nn.Partitioned) adds an attribute key 'value'.
  return '/'.join(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def frozen_labels(params: Any, patterns: tuple[str, ...]) -> Any:
  """'frozen' or 'train' for each parameter (optimizer.freeze); a pattern that matches no
  parameter is an error (a typo would otherwise train everything)."""
  try:
    regexes = [re.compile(p) for p in patterns]
  except re.error as e:
    raise UserError(f'optimizer.freeze: {e.pattern!r} is not a regular expression ({e})')
  paths = [param_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  for r in regexes:
    if not any(r.search(p) for p in paths):
      raise UserError(f'optimizer.freeze: {r.pattern!r} matches no parameter (they are named '
                      f'like {paths[0]!r})')
  if all(any(r.search(p) for r in regexes) for p in paths):
    raise UserError('optimizer.freeze matches every parameter: nothing would train')
  return jax.tree_util.tree_map_with_path(
      lambda p, _: 'frozen' if any(r.search(param_path(p)) for r in regexes) else 'train',
      params)
