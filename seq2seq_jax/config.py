"""Experiment configs: Python files with get_config(arg), plus `--config.a.b=value` overrides.

We parse overrides ourselves (rather than ml_collections.config_flags) so that every user
mistake - missing file, unknown key, wrong type - is one clear line, not a traceback.
"""
import ast
import importlib.util
import json
import os
import sys
from typing import Any, Sequence

import ml_collections

from seq2seq_jax import config_migration
from seq2seq_jax.trainer import optim
from seq2seq_jax.errors import UserError

EXPERIMENTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               'experiments')

REQUIRED = {'seed': int, 'batch_size': int, 'train_steps': int, 'log_every_steps': int,
            'eval_every_steps': int, 'checkpoint_every_steps': int}


def load_module(path: str):
  """Imports a config file by path; UserError if it is missing or fails to import."""
  if not os.path.isfile(path):
    raise UserError(f'config file not found: {path}')
  name = 'experiment_' + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  # Experiment files may import their neighbours (a baseline) and experiments/common.py,
  # also from a config file kept outside this repository.
  for folder in (EXPERIMENTS_DIR, os.path.dirname(os.path.abspath(path))):
    if folder not in sys.path:
      sys.path.insert(0, folder)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'cannot load config file {path}: {type(e).__name__}: {e}') from None
  if not hasattr(module, 'get_config'):
    raise UserError(f'config file {path} has no get_config()')
  return module


def load_config(spec: str, overrides: Sequence[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
  """Loads `path[:arg]`, applies overrides, validates, and locks the config.

  Args:
    spec: 'experiments/x.py' or 'experiments/x.py:variant' (variant is get_config's arg).
    overrides: (dotted key, value string) pairs, applied in order.

  Returns:
    The resolved, locked ConfigDict (new keys cannot be added by mistake).
  """
  path, _, arg = spec.partition(':')
  module = load_module(path)
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{path}: get_config({arg!r}) failed: {type(e).__name__}: {e}') from None
  if not isinstance(config, ml_collections.ConfigDict):
    config = ml_collections.ConfigDict(config)
  if config_migration.migrate_config_dict(config) and path not in _MIGRATED:
    _MIGRATED.add(path)   # one line per file and process, however many variants or points
    print(f'note: {path} gives the frontend as flat model fields (the old form); read as '
          f'model.frontend={config.model.frontend.to_dict()}', file=sys.stderr)
  add_run_defaults(config)
  apply_overrides(config, overrides)
  validate(config)
  config.lock()
  return config


# Settings every run has, whether or not its experiment file sets them.
RUN_DEFAULTS = {
    'init_from': '',          # warm start from another run (seq2seq_jax/trainer/warm_start.py)
    'precompile_threads': 0,  # compile the batch shapes ahead, N at a time
    'cache_encoder_outputs': False,  # frozen encoder: its outputs computed once (encoder_cache.py)
    'loss_spike': 2.0,        # a loss above this x the lowest so far is a spike (the way back)
    'way_back_steps': None,   # the way back's distance; None: checkpoint_every x keep
}


def add_run_defaults(config: ml_collections.ConfigDict) -> None:
  with config.unlocked():
    for key, value in RUN_DEFAULTS.items():
      if key not in config:
        config[key] = value


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[tuple[str, str]]) -> None:
  """Sets (dotted key, value string) pairs in order, as --config.KEY=VALUE does."""
  with config.unlocked():
    for key, value in overrides:
      key = config_migration.override_key(config, key)   # model.num_mels -> model.frontend...
      _add_model_field(config, key)
      _add_frontend_setting(config, key)
      _add_optimizer_setting(config, key)
      _add_decode_setting(config, key)
      set_value(config, key, value)


def from_json(saved: dict[str, Any],
              overrides: Sequence[tuple[str, str]] = ()) -> ml_collections.ConfigDict:
  """The config of an existing run from its config.json, in today's form (see `migrate`).

  Args:
    saved: the parsed config.json of a run, written by this or an earlier version.
    overrides: (dotted key, value string) pairs applied after it (e.g. decode settings).

  Returns:
    The config, validated and locked, as load_config would give it.
  """
  config = ml_collections.ConfigDict(migrate(saved))
  add_run_defaults(config)
  apply_overrides(config, overrides)
  validate(config)
  config.lock()
  return config


def migrate(saved: dict[str, Any]) -> dict[str, Any]:
  """Maps a config written by an earlier version to today's keys (a copy; the input stays):
  the frontend's old flat model fields become the `model.frontend` group
  (config_migration.py); the RNN's parts kept their flat keys."""
  return config_migration.migrate(json.loads(json.dumps(saved)))


_MIGRATED: set[str] = set()


def _add_model_field(config: ml_collections.ConfigDict, key: str) -> None:
  """Lets `--config.model.<field>` set any field of the chosen model, also one the experiment
  file leaves at the model's default (the model section holds only what the experiment gave;
  e.g. model.remat on the main job)."""
  parts = key.split('.')
  if (len(parts) != 2 or parts[0] != 'model' or 'model' not in config
      or parts[1] in config.model or not isinstance(config.model.get('name'), str)):
    return
  from seq2seq_jax.models import model_defaults  # pylint: disable=g-import-not-at-top
  try:
    defaults = model_defaults(config.model.name)
  except UserError:
    return   # an unknown model: validation names it
  if parts[1] in defaults and parts[1] != 'name':
    default = defaults[parts[1]]
    with config.unlocked():
      config.model[parts[1]] = (ml_collections.ConfigDict(default)
                                if isinstance(default, dict) else default)


def _add_frontend_setting(config: ml_collections.ConfigDict, key: str) -> None:
  """Lets `--config.model.frontend.<setting>` set a setting of the chosen frontend that the
  experiment left at its default (the group holds only what the experiment gave)."""
  parts = key.split('.')
  if len(parts) != 3 or parts[:2] != ['model', 'frontend'] or 'model' not in config:
    return
  group = config.model.get('frontend')
  if not isinstance(group, ml_collections.ConfigDict) or parts[2] in group:
    return
  from seq2seq_jax.models import frontends  # pylint: disable=g-import-not-at-top
  try:
    defaults = frontends.resolved(group.to_dict())
  except UserError:
    return
  if parts[2] != 'name' and parts[2] in defaults:
    group[parts[2]] = defaults[parts[2]]


def _add_optimizer_setting(config: ml_collections.ConfigDict, key: str) -> None:
  """Lets `--config.optimizer.<key>` set a key the optimizer reads that the experiment did not
  list (e.g. optimizer.freeze); optim.validate still refuses one the setup would ignore."""
  parts = key.split('.')
  if (len(parts) != 2 or parts[0] != 'optimizer' or 'optimizer' not in config
      or not isinstance(config.optimizer, ml_collections.ConfigDict)
      or parts[1] in config.optimizer):
    return
  from seq2seq_jax.trainer import optim  # pylint: disable=g-import-not-at-top
  if parts[1] in optim.known_keys():
    config.optimizer[parts[1]] = None


# Decode settings a config may leave out (their default turns them off): an override sets
# one on a config (or a run's config.json) that does not list it.
OPTIONAL_DECODE = {'max_tokens_per_second': 0.0}


def _add_decode_setting(config: ml_collections.ConfigDict, key: str) -> None:
  """Lets `--config.decode.<key>` set an optional decode setting (OPTIONAL_DECODE) the
  experiment did not list, e.g. on an older run's config.json."""
  parts = key.split('.')
  if (len(parts) == 2 and parts[0] == 'decode' and parts[1] in OPTIONAL_DECODE
      and isinstance(config.get('decode'), ml_collections.ConfigDict)
      and parts[1] not in config.decode):
    config.decode[parts[1]] = OPTIONAL_DECODE[parts[1]]


def _kind(value: Any) -> str:
  name = type(value).__name__
  return ('an ' if name[0] in 'aeiou' else 'a ') + name


def _parse(text: str, current: Any, key: str) -> Any:
  """Parses an override string into the type of the value it replaces."""
  if isinstance(current, str):
    return text
  if isinstance(current, bool):
    low = text.lower()
    if low in ('true', '1', 'yes'):
      return True
    if low in ('false', '0', 'no'):
      return False
    raise UserError(f'--config.{key}: expected a bool, got {text!r}')
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    if current is None:
      return text  # an unset optional: take the string as it is
    raise UserError(f'--config.{key}: expected {_kind(current)}, got {text!r}') from None
  if current is None:
    return value
  if isinstance(current, int) and not (isinstance(value, int) and not isinstance(value, bool)):
    raise UserError(f'--config.{key}: expected an int, got {text!r}')
  if isinstance(current, float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise UserError(f'--config.{key}: expected a float, got {text!r}')
    return float(value)
  if isinstance(current, (tuple, list)):
    if not isinstance(value, (tuple, list)):
      value = (value,)
    return type(current)(value)
  if isinstance(current, (dict, ml_collections.ConfigDict)):
    # A group is cleared with None or replaced whole by a dict; its fields one by one.
    if value is None or isinstance(value, dict):
      return value
    raise UserError(f'--config.{key} is a group of settings: set its fields '
                    f'(--config.{key}.<field>=...), replace it with a dict '
                    f'("--config.{key}={{...}}") or clear it (--config.{key}=None)')
  return value


def set_value(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """Sets a dotted key; a string value is parsed to the existing value's type."""
  parts = key.split('.')
  node = config
  for i, part in enumerate(parts[:-1]):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise UserError(f'unknown config key {".".join(parts[:i + 1])!r}')
    node = node[part]
  last = parts[-1]
  if not isinstance(node, ml_collections.ConfigDict) or last not in node:
    raise UserError(f'unknown config key {key!r}')
  current = node[last]
  if isinstance(value, str):
    value = _parse(value, current, key)
  try:
    node[last] = value
  except (TypeError, ValueError) as e:
    raise UserError(f'--config.{key}: {e}') from None


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the keys every experiment must have, and the optimizer's keys."""
  for key, typ in REQUIRED.items():
    if key not in config:
      raise UserError(f'config has no {key!r} (every experiment needs it)')
    value = config[key]
    if not isinstance(value, typ) or isinstance(value, bool):
      raise UserError(f'config.{key} must be {typ.__name__}, got {value!r}')
  for key in ('batch_size', 'log_every_steps', 'eval_every_steps', 'checkpoint_every_steps'):
    if config[key] <= 0:
      raise UserError(f'config.{key} must be positive, got {config[key]}')
  if config.train_steps < 0:
    raise UserError(f'config.train_steps must be >= 0, got {config.train_steps}')
  if config.get('grad_accum_steps', 1) < 1:
    raise UserError(f'config.grad_accum_steps must be >= 1, got {config.grad_accum_steps}')
  back = config.get('way_back_steps')
  if back is not None and (not isinstance(back, int) or isinstance(back, bool) or back < 0):
    raise UserError(f'config.way_back_steps must be a number of steps >= 0 (0: keep no way '
                    f'back) or None, got {back!r}')
  spike = config.get('loss_spike', 2.0)
  if not isinstance(spike, (int, float)) or isinstance(spike, bool) or spike <= 1:
    raise UserError(f'config.loss_spike must be a number above 1, got {spike!r}')
  threads = config.get('precompile_threads', 0)
  if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
    raise UserError(f'config.precompile_threads must be an int >= 0 (0: compile each batch '
                    f'shape when a step first meets it), got {threads!r}')
  if not isinstance(config.get('cache_encoder_outputs', False), bool):
    raise UserError('config.cache_encoder_outputs must be True or False, got '
                    f'{config.cache_encoder_outputs!r}')
  if config.get('dtype', 'float32') not in ('float32', 'bfloat16'):
    raise UserError(f"config.dtype must be 'float32' or 'bfloat16', got {config.dtype!r}")
  if 'model' not in config or not isinstance(config.model.get('name', None), str):
    raise UserError('config.model.name must name a model')
  # Here rather than only when training starts: --mode=info and a sweep's check of its
  # points before any run then catch an optimizer key the run would silently ignore.
  if 'optimizer' in config:
    optim.validate(config.optimizer)
  if 'decode' in config:
    from seq2seq_jax.trainer import steps  # pylint: disable=g-import-not-at-top
    method = steps.check_decode_config(config.decode)
    if not config.model.get('ctc_weight', 0.0):
      what = ("decode.method='ctc_greedy'" if method == 'ctc_greedy' else
              f"decode.ctc_weight={config.decode.get('ctc_weight')}"
              if config.decode.get('ctc_weight', 0.0) else '')
      if what:
        raise UserError(f"{what} reads the model's CTC head, but model.ctc_weight is 0: "
                        'the model has none')
