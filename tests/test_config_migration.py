"""Old configs still load: the flat frontend fields of today's config.json files and experiment
files become the `model.frontend` group (seq2seq_jax/config_migration.py).

The config.json files under tests/fixtures/old_configs were written by the code before the change
(`train._write_json(config_to_dict(config))` at commit 08b69df): a speech Transformer trained
with a shrunk spoken_digits.py:transformer (audio_conv), the digits_ocr.py:smoke LSTM (cnn by
columns) and tuxpaint_captions.py:sat (Show, Attend and Tell over a cnn).
"""
import json
import os

import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax import config_migration
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.models import frontends
from seq2seq_jax.trainer import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, 'tests', 'fixtures', 'old_configs')


def _old(name: str) -> dict:
  with open(os.path.join(DATA, f'old_config_{name}.json')) as f:
    return json.load(f)


@pytest.mark.parametrize('name,frontend', [
    ('spoken_digits_transformer', {'name': 'audio_conv', 'channels': 8, 'num_mels': 80,
                                   'spec_augment': [2, 15, 2, 20, 0.2], 'vtlp': []}),
    ('digits_ocr_smoke', {'name': 'cnn', 'channels': [4, 8, 8], 'columns': True}),
    ('tuxpaint_sat', {'name': 'cnn', 'channels': [32, 64, 128]}),
])
def test_an_old_config_json_migrates_to_the_frontend_group(name, frontend):
  old = _old(name)
  before = json.dumps(old, sort_keys=True)
  new = config_migration.migrate(old)
  assert json.dumps(old, sort_keys=True) == before          # the input is left alone
  assert new['model']['frontend'] == frontend
  flat = set(config_migration.FRONTEND_FIELDS)
  assert not flat & set(new['model'])
  rest = {k: v for k, v in old['model'].items() if k not in flat and k != 'frontend'}
  assert {k: v for k, v in new['model'].items() if k != 'frontend'} == rest
  assert {k: v for k, v in new.items() if k != 'model'} == {
      k: v for k, v in old.items() if k != 'model'}
  build_model(new['model'], 0, 9)      # a model the current code builds


@pytest.mark.parametrize('model,want', [
    # Fields of a frontend other than the chosen one did nothing: dropped.
    ({'name': 'rnn', 'frontend': 'log_mel', 'patch_size': 8, 'num_mels': 40},
     {'name': 'rnn', 'frontend': {'name': 'log_mel', 'num_mels': 40}}),
    # No frontend: tokens, the model's default; nothing to add.
    ({'name': 'transformer', 'num_mels': 40, 'emb_dim': 8}, {'name': 'transformer', 'emb_dim': 8}),
    ({'name': 'transformer', 'emb_dim': 8}, {'name': 'transformer', 'emb_dim': 8}),
    ({'name': 'transformer', 'frontend': 'tokens'},
     {'name': 'transformer', 'frontend': {'name': 'tokens'}}),
    # Show, Attend and Tell's old default cnn was wider than the cnn frontend's default.
    ({'name': 'show_attend_tell', 'cnn_columns': True},
     {'name': 'show_attend_tell', 'frontend': {'name': 'cnn', 'channels': (64, 128, 256, 512),
                                               'columns': True}}),
    # The current form is left as it is.
    ({'name': 'rnn', 'frontend': {'name': 'cnn', 'channels': [4]}},
     {'name': 'rnn', 'frontend': {'name': 'cnn', 'channels': [4]}}),
])
def test_migrate_model(model, want):
  assert config_migration.migrate({'model': model}) == {'model': want}


class _Checkpoints:
  def latest_step(self):
    return 10


def test_a_workdir_of_the_old_code_is_accepted_and_another_model_refused(tmp_path):
  """trainer/workdir.py's check compares the workdir's config.json, migrated, with the config of
  the same command today (the old override model.audio_channels now names the frontend's
  channels)."""
  with open(tmp_path / 'config.json', 'w') as f:
    json.dump(_old('spoken_digits_transformer'), f)
  overrides = [('model.emb_dim', '16'), ('model.qkv_dim', '16'), ('model.mlp_dim', '32'),
               ('model.num_encoder_layers', '1'), ('model.num_decoder_layers', '1'),
               ('model.num_heads', '2'), ('model.audio_channels', '8')]
  spec = os.path.join(ROOT, 'experiments', 'spoken_digits.py:transformer')
  config = config_lib.load_config(spec, overrides)
  assert config.model.frontend.channels == 8
  workdir_lib.check(config, str(tmp_path), _Checkpoints())
  # A setting left at its default on one side and given on the other is the same model.
  config = config_lib.load_config(spec, overrides[:-1] + [('model.frontend.channels', '8')])
  config.unlock()
  del config.model.frontend['vtlp']
  workdir_lib.check(config, str(tmp_path), _Checkpoints())
  config = config_lib.load_config(spec, overrides[:-1] + [('model.frontend.channels', '16')])
  with pytest.raises(UserError, match='different model.*model.frontend'):
    workdir_lib.check(config, str(tmp_path), _Checkpoints())


OLD_EXPERIMENT = '''
import spoken_digits


def get_config(arg=''):
  c = spoken_digits.get_config('transformer')
  # spoken_digits.py:transformer's model as the experiment file wrote it before the change
  c.model = dict(name='transformer', frontend='audio_conv', audio_channels=32, emb_dim=144,
                 num_heads=4, qkv_dim=144, mlp_dim=576, num_encoder_layers=4,
                 num_decoder_layers=2, dropout_rate=0.1, attention_dropout_rate=0.0,
                 positions='sinusoidal', pre_norm=True, tie_output=True, max_len=256,
                 ctc_weight=0.3, num_mels=80, spec_augment=(2, 15, 2, 20, 0.2), vtlp=())
  return c
'''


def test_an_old_experiment_file_loads_with_one_line_of_notice(tmp_path, capsys):
  path = str(tmp_path / 'old_spoken_digits.py')
  with open(path, 'w') as f:
    f.write(OLD_EXPERIMENT)
  old = config_lib.load_config(path)
  new = config_lib.load_config(os.path.join(ROOT, 'experiments', 'spoken_digits.py:transformer'))
  assert old.to_dict() == new.to_dict()
  config_lib.load_config(path, [('model.num_mels', '40')])   # again: no second notice
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and 'old form' in lines[0] and "'audio_conv'" in lines[0]
  assert config_lib.load_config(path, [('model.num_mels', '40')]).model.frontend.num_mels == 40


def test_an_override_may_set_a_frontend_setting_the_experiment_left_out():
  spec = os.path.join(ROOT, 'experiments', 'tuxpaint_captions.py:smoke')
  c = config_lib.load_config(spec, [('model.frontend.columns', 'true')])
  assert c.model.frontend.columns is True
  assert frontends.resolved(c.model.frontend)['channels'] == (4, 8, 8)
  with pytest.raises(UserError, match="unknown config key 'model.frontend.patch_size'"):
    config_lib.load_config(spec, [('model.frontend.patch_size', '4')])
