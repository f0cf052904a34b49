"""Old configs to the current form: the frontend's flat model fields -> `model.frontend`.

Until the frontends became registered parts (models/frontends/), every model declared the
settings of every frontend as its own flat fields: `frontend='cnn', cnn_channels=(...),
cnn_columns=True`. Now `model.frontend` is one group with the chosen frontend's settings only:
`frontend={'name': 'cnn', 'channels': (...), 'columns': True}`. `migrate` maps the old form
to the new one, keeping only the fields the chosen frontend has (the others did nothing) and
leaving a config without any of them as it is (no `frontend`: the model's default, 'tokens';
Show, Attend and Tell's, the cnn). It is applied to the config.json of an existing run
(trainer/train.py) and to every config an experiment file builds (config.py), so an old run
and an old experiment file keep working.
"""
import copy
from typing import Any, Mapping

import ml_collections

# Old flat model field -> {frontend name: its setting}.
FRONTEND_FIELDS = {
    'patch_size': {'patches': 'patch_size'},
    'cnn_channels': {'cnn': 'channels'},
    'cnn_columns': {'cnn': 'columns'},
    'audio_channels': {'audio_conv': 'channels'},
    'num_mels': {'audio_conv': 'num_mels', 'log_mel': 'num_mels'},
    'spec_augment': {'audio_conv': 'spec_augment', 'log_mel': 'spec_augment'},
    'vtlp': {'audio_conv': 'vtlp', 'log_mel': 'vtlp'},
}
# Old model defaults that differ from the frontend's own: Show, Attend and Tell's cnn was wider.
OLD_DEFAULTS = {'show_attend_tell': {'frontend': 'cnn', 'cnn_channels': (64, 128, 256, 512)}}


def is_old(model: Mapping[str, Any]) -> bool:
  """Whether a model config has the old flat frontend fields (or a frontend given by name)."""
  return (any(k in model for k in FRONTEND_FIELDS)
          or isinstance(model.get('frontend'), str))


def migrate_model(model: Mapping[str, Any]) -> dict[str, Any]:
  """A model config (dict) with the old flat frontend fields as a `frontend` group."""
  model = dict(model)
  if not is_old(model):
    return model
  explicit = 'frontend' in model
  old = {**OLD_DEFAULTS.get(model.get('name'), {}),
         **{k: model.pop(k) for k in list(model) if k in FRONTEND_FIELDS or k == 'frontend'}}
  name = old.pop('frontend', 'tokens')
  group = {'name': name}
  for field, value in old.items():
    setting = FRONTEND_FIELDS[field].get(name)
    if setting is not None:   # a field of another frontend did nothing: dropped
      group[setting] = value
  if explicit or name != 'tokens':   # else the model's default, tokens, as before
    model['frontend'] = group
  return model


def migrate(config: Mapping[str, Any]) -> dict[str, Any]:
  """A config dict (e.g. a run's config.json) in the current form; see the module docstring.

  Args:
    config: the whole config as a dict; its 'model' entry is migrated.

  Returns:
    A new dict; `config` is left as it was.
  """
  out = copy.deepcopy(dict(config))
  if isinstance(out.get('model'), Mapping):
    out['model'] = migrate_model(out['model'])
  return out


def migrate_config_dict(config: ml_collections.ConfigDict) -> bool:
  """Migrates an unlocked ConfigDict in place; returns whether anything changed."""
  model = config.get('model')
  if not isinstance(model, ml_collections.ConfigDict) or not is_old(model):
    return False
  config.model = ml_collections.ConfigDict(migrate_model(model.to_dict()))
  return True


def override_key(config: ml_collections.ConfigDict, key: str) -> str:
  """An override of an old flat field (`model.num_mels`) as its new key
  (`model.frontend.num_mels`) where the config's frontend has that setting; else `key`."""
  parts = key.split('.')
  if len(parts) != 2 or parts[0] != 'model' or parts[1] not in FRONTEND_FIELDS:
    return key
  frontend = config.get('model', {}).get('frontend')
  name = frontend.get('name') if hasattr(frontend, 'get') else frontend
  setting = FRONTEND_FIELDS[parts[1]].get(name)
  return f'model.frontend.{setting}' if setting else key
