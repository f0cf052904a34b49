"""Config loading and overrides: every user mistake is a one-line UserError."""
import os

import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, 'experiments', 'g2p_cmudict_transformer.py')


def test_default_config_has_required_keys():
  c = config_lib.load_config(DEFAULT)
  for key in ('seed', 'batch_size', 'train_steps', 'log_every_steps', 'eval_every_steps',
              'checkpoint_every_steps'):
    assert isinstance(c[key], int)
  assert c.model.name == 'transformer'


def test_overrides_are_typed():
  c = config_lib.load_config(DEFAULT, [('model.emb_dim', '64'), ('optimizer.learning_rate', '1'),
                                       ('model.pre_norm', 'false'), ('data.buckets', '(8, 16)'),
                                       ('model.positions', 'learned')])
  assert c.model.emb_dim == 64
  assert c.optimizer.learning_rate == 1.0 and isinstance(c.optimizer.learning_rate, float)
  assert c.model.pre_norm is False
  assert tuple(c.data.buckets) == (8, 16)
  assert c.model.positions == 'learned'
  # Keys every experiment has without naming them.
  c = config_lib.load_config(DEFAULT, [('precompile_threads', '2')])
  assert c.precompile_threads == 2 and config_lib.load_config(DEFAULT).precompile_threads == 0


def test_variant_argument():
  c = config_lib.load_config(DEFAULT + ':smoke')
  assert c.train_steps < 100


@pytest.mark.parametrize('spec,overrides,message', [
    ('nope/missing.py', [], 'config file not found'),
    (DEFAULT, [('model.no_such_key', '1')], "unknown config key 'model.no_such_key'"),
    (DEFAULT, [('nosection.x', '1')], "unknown config key 'nosection'"),
    (DEFAULT, [('batch_size', 'abc')], 'expected an int'),
    (DEFAULT, [('batch_size', '1.5')], 'expected an int'),
    (DEFAULT, [('model.pre_norm', 'maybe')], 'expected a bool'),
    (DEFAULT, [('optimizer.learning_rate', 'fast')], 'expected a float'),
    (DEFAULT, [('model', '3')], 'group of settings'),
    (DEFAULT, [('batch_size', '0')], 'must be positive'),
    (DEFAULT, [('precompile_threads', '-1')], r'precompile_threads must be an int >= 0'),
    (DEFAULT, [('precompile_threads', '2.5')], 'expected an int'),
    (DEFAULT + ':nope', [], 'unknown config variant'),
])
def test_user_mistakes(spec, overrides, message):
  with pytest.raises(UserError, match=message):
    config_lib.load_config(spec, overrides)


def test_locked_config_rejects_new_keys():
  c = config_lib.load_config(DEFAULT)
  with pytest.raises(AttributeError):
    c.new_key = 1


@pytest.mark.parametrize('name', ['wmt14_ende_luong', 'wmt14_ende_transformer_base',
                                  'wmt14_ende_transformer_big', 'wmt14_enfr_bahdanau',
                                  'wmt14_enfr_sutskever', 'coco_show_attend_tell'])
def test_experiment_without_variants_rejects_one(name):
  path = os.path.join(ROOT, 'experiments', f'{name}.py')
  assert config_lib.load_config(path).model.name  # the plain config still loads
  # A typo such as ':smoke' must not silently train the full paper configuration.
  with pytest.raises(UserError, match=r"get_config\('smoke'\) failed: ValueError: unknown "
                                      r"config variant 'smoke' \(known: none\)"):
    config_lib.load_config(path + ':smoke')


def test_every_model_field_can_be_overridden_and_groups_cleared_or_replaced():
  """A model field the experiment file leaves at its default (the main job lists no
  model.remat) is still a key; a group of settings is cleared with None or replaced whole."""
  from seq2seq_jax.models import model_defaults  # pylint: disable=g-import-not-at-top
  plain = config_lib.load_config(DEFAULT)
  assert 'remat' not in plain.model
  c = config_lib.load_config(DEFAULT, [('model.remat', 'full')])
  assert c.model.remat == 'full'
  c = config_lib.load_config(DEFAULT, [('model.tie_output', 'false')])
  assert c.model.tie_output is False and model_defaults('transformer')['tie_output'] is True
  with pytest.raises(UserError, match="unknown config key 'model.no_such_field'"):
    config_lib.load_config(DEFAULT, [('model.no_such_field', '1')])
  spoken = os.path.join(ROOT, 'experiments', 'spoken_digits.py')
  assert config_lib.load_config(spoken).data.spoken_digits.min_digits == 1
  assert config_lib.load_config(spoken, [('data.spoken_digits', 'None')]).data.spoken_digits is None
  c = config_lib.load_config(spoken, [('data.spoken_digits', "{'counts': (8, 4, 4)}")])
  assert c.data.spoken_digits.to_dict() == {'counts': (8, 4, 4)}
  with pytest.raises(UserError, match=r'group of settings: .*clear it \(--config.data.spoken'):
    config_lib.load_config(spoken, [('data.spoken_digits', '3')])
