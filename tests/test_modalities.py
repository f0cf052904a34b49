"""Images and feature sequences end to end: train, eval, predict and the (2, 2, 2) mesh, with
the patch and audio-conv frontends (waveforms: tests/test_speech.py; the CNN frontend:
tests/test_own_data.py).

The data are made here: small PNG images (tasks/image_to_text.py) and .npy feature
sequences of varied length (tasks/features_to_text.py), each with a character string, read
through the same TSV readers a user's data goes through. The experiment file is written here
too; it imports experiments/common.py like every experiment.
"""
import os
import textwrap

import numpy as np
import pytest
from PIL import Image

from seq2seq_jax import config as config_lib
from seq2seq_jax.trainer import train
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import get_task

import runs  # tests/runs.py
ALPHABET = 'abc '
STEPS = 12
# The image and feature frontends on the mesh (tests/test_frontends.py checks every frontend x
# model pair at the model level; tests/test_speech.py runs audio end to end with both models,
# from waveforms, and resumes a killed audio run).
COMBOS = [('image', 'transformer', 'patches'), ('audio', 'transformer', 'audio_conv')]
# (The CNN frontend under the RNN, on images, trains end to end in tests/test_own_data.py:
# experiments/digits_ocr.py:tsv and tuxpaint_captions.py:tsv.)
# Resuming is the same code for every input kind: killed runs are resumed in
# tests/test_launch.py (token batches) and test_translation_e2e.py (packed); waveform batches
# are a pure function of seed and step (test_speech.py).

EXPERIMENT = '''
import ml_collections
from common import mesh_and_rules

MODELS = dict(
    transformer=dict(name='transformer', emb_dim=16, num_heads=2, mlp_dim=32,
                     num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.1, max_len=64),
    rnn=dict(name='rnn', emb_dim=16, hidden_dim=8, encoder_layers=1, decoder_layers=1,
             attention='general', dropout_rate=0.1))
SIZES = dict(patches=dict(patch_size=4), cnn=dict(channels=(4, 8)), audio_conv=dict(channels=4))


def get_config(arg):
  model, frontend = arg.split('-')
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = TASK
  c.data = dict(DATA, alphabet=ALPHABET, target_len=6, bad_pairs='error', eval_batch_size=8,
                eval_max_examples=0)
  c.batch_size = 8
  c.train_steps = STEPS
  c.log_every_steps = 1
  c.eval_every_steps = STEPS
  c.checkpoint_every_steps = STEPS
  c.keep_checkpoints = 20
  c.model = dict(MODELS[model], frontend=dict(name=frontend, **SIZES[frontend]))
  c.label_smoothing = 0.0
  c.optimizer = dict(name='adam', learning_rate=3e-3, schedule='constant', grad_clip_norm=1.0)
  c.decode = dict(beam_size=2, alpha=0.6, max_len=6)
  mesh_and_rules(c)
  return c
'''


def _text(rng) -> str:
  return ''.join(rng.choice(list('abc'), size=rng.integers(1, 4)))


def _write_split(folder, name, items):
  with open(os.path.join(folder, f'{name}.tsv'), 'w') as f:
    for path, text in items:
      f.write(f'{path}\t{text}\n')
  return os.path.join(folder, f'{name}.tsv')


def _make_dataset(folder: str, kind: str) -> dict:
  """24 inputs (16 train, 4 validation, 4 test); one validation input has two references."""
  rng = np.random.default_rng(1 if kind == 'image' else 2)
  items = []
  for i in range(24):
    text = _text(rng)
    if kind == 'image':  # one bright column per character, so the picture says the text
      img = (rng.random((16, 16)) * 60).astype(np.uint8)
      for j, ch in enumerate(text):
        img[:, 4 * j + 'abc'.index(ch)] = 255
      name = f'img{i}.png'
      Image.fromarray(img).save(os.path.join(folder, name))
    else:
      frames = int(rng.integers(6, 30))
      x = rng.normal(size=(frames, 8)).astype(np.float32)
      x[:, 'abc'.index(text[0])] += 2.0
      name = f'utt{i}.npy'
      np.save(os.path.join(folder, name), x)
    items.append((name, text))
  val = items[16:20] + [(items[16][0], 'cab')]
  tsvs = {k: _write_split(folder, k, v) for k, v in
          (('train', items[:16]), ('eval', val), ('test', items[20:]))}
  data = dict(train_tsv=tsvs['train'], eval_tsv=tsvs['eval'], test_tsv=tsvs['test'])
  if kind == 'image':
    data.update(image_size=(16, 16), channels=1)
  else:
    data.update(num_bins=8, frame_buckets=(16, 32))
  return {'data': data, 'inputs': [os.path.join(folder, n) for n, _ in items[20:]]}


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
  out = {}
  for kind, task in (('image', 'image_to_text'), ('audio', 'features_to_text')):
    folder = str(tmp_path_factory.mktemp(kind))
    made = _make_dataset(folder, kind)
    path = os.path.join(folder, f'{kind}_experiment.py')
    with open(path, 'w') as f:
      f.write(f'TASK = {task!r}\nDATA = {made["data"]!r}\nALPHABET = {ALPHABET!r}\n'
              f'STEPS = {STEPS}\n' + textwrap.dedent(EXPERIMENT))
    out[kind] = dict(made, config=path)
  return out


def _config(datasets, kind, model, frontend, mesh=(2, 2, 2)):
  return config_lib.load_config(f'{datasets[kind]["config"]}:{model}-{frontend}', [
      ('mesh.data', str(mesh[0])), ('mesh.fsdp', str(mesh[1])), ('mesh.tensor', str(mesh[2]))])


_TRAINED: dict[tuple[str, str, str], tuple[str, dict]] = {}


def _trained(datasets, tmp_path_factory, kind, model, frontend) -> tuple[str, dict]:
  """An uninterrupted run on the (2, 2, 2) mesh, trained in this process once per combo:
  (workdir, summary)."""
  key = (kind, model, frontend)
  if key not in _TRAINED:
    workdir = str(tmp_path_factory.mktemp('-'.join(key)))
    summary = train.train(_config(datasets, kind, model, frontend), workdir)
    _TRAINED[key] = workdir, summary
  return _TRAINED[key]


@pytest.mark.parametrize('kind,model,frontend', COMBOS)
def test_train_eval_predict_and_mesh(kind, model, frontend, datasets, tmp_path_factory):
  # --- train + eval on the (2, 2, 2) mesh --------------------------------------------------
  ref_dir, summary = _trained(datasets, tmp_path_factory, kind, model, frontend)
  ref = runs.losses(ref_dir)
  assert sorted(ref) == list(range(1, STEPS + 1))
  assert ref[STEPS] < ref[1], ref  # it learns
  for key in ('cer', 'wer', 'accuracy'):
    assert 0 <= summary[f'test/{key}'] <= 100
  assert summary['test/examples'] == 4

  # --- predict: file paths in, one line of the alphabet out per line --------------------------
  lines = [datasets[kind]['inputs'][0], '', datasets[kind]['inputs'][1]]
  out = list(train.predict(config_lib.load_config(
      f'{datasets[kind]["config"]}:{model}-{frontend}', [('mesh.data', '1')]), ref_dir, lines))
  assert len(out) == 3 and out[1] == ''
  assert all(set(o) <= set(ALPHABET) for o in out)


def test_unreadable_input_file_is_named(datasets, tmp_path):
  folder = tmp_path
  (folder / 'broken.png').write_bytes(b'not a png')
  tsv = folder / 'train.tsv'
  tsv.write_text('broken.png\tabc\n')
  config = _config(datasets, 'image', 'transformer', 'patches', mesh=(1, 1, 1))
  config.data.train_tsv = str(tsv)
  with pytest.raises(UserError, match=r'train.tsv:1: cannot read .*broken.png'):
    get_task(config).train_data()
  config.data.bad_pairs = 'skip'
  task = get_task(config)
  with pytest.raises(UserError, match='no usable examples'):
    task.train_data()


def test_frontend_must_read_the_tasks_inputs(datasets):
  config = _config(datasets, 'audio', 'transformer', 'audio_conv', mesh=(1, 1, 1))
  config.model.frontend = {'name': 'patches'}
  with pytest.raises(UserError, match="reads image inputs, but task 'features_to_text'"):
    train.setup(config)
