"""Bring your own data (docs/own_data.md): each application's shipped experiment, in its
own-data variant (`:tsv`, `:files`), trains on a researcher's files end to end.

The files are written here, the way a user would have them: a few PNGs (Pillow), WAVs of sine
tones (soundfile), text pairs; relative paths in a sub-folder of the TSV's folder. Each run is
the experiment's own config with the split keys pointed at them and the model shrunk, trained
2 steps in this process through trainer.train, evaluated on the test split.
"""
import os

import numpy as np
import pytest
import soundfile
from PIL import Image

from seq2seq_jax import config as config_lib
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import get_task
from seq2seq_jax.trainer import train

import runs  # tests/runs.py

# Every run: one device, 2 steps, an evaluation at step 2, greedy decoding of 2 examples.
RUN = [('mesh.data', '1'), ('train_steps', '2'), ('eval_every_steps', '2'),
       ('checkpoint_every_steps', '2'), ('log_every_steps', '1'), ('batch_size', '4'),
       ('precompile_threads', '0'), ('optimizer.warmup_steps', '1'),
       ('decode.method', 'greedy'), ('decode.max_len', '8'),
       ('data.eval_max_examples', '2'), ('data.eval_batch_size', '2')]

TEXT = [('the cat sleeps', 'le chat dort'), ('a dog runs', 'un chien court'),
        ('the dog sleeps', 'le chien dort'), ('a cat runs', 'un chat court'),
        ('the red car', 'la voiture rouge'), ('a small house', 'une petite maison')]
DIGITS = ['12', '7', '305', '48', '9', '61']
WORDS = ['one', 'two', 'three', 'four', 'five', 'six']
CAPTIONS = [['a red square', 'a square in red'], ['a blue square', 'blue on white'],
            ['a green square'], ['a grey square', 'a square']]

# application -> (experiment spec, split-key form, the test metric, tiny model overrides)
APPS = {
    'translation': ('experiments/ddtp_enfr_transformer.py:tsv', 'tsv', 'bleu', [
        ('model.emb_dim', '16'), ('model.qkv_dim', '16'), ('model.mlp_dim', '32'),
        ('model.num_heads', '2'), ('model.num_encoder_layers', '1'),
        ('model.num_decoder_layers', '1'), ('data.vocab_size', '48'), ('data.max_len', '16')]),
    'summarization': ('experiments/pydoc_summarization.py:tsv', 'tsv', 'rougeL', [
        ('model.emb_dim', '8'), ('model.hidden_dim', '8'), ('model.decoder_hidden_dim', '8'),
        ('model.attention_dim', '8'), ('model.readout_dim', '8'), ('data.vocab_size', '48'),
        ('data.max_source_len', '15'), ('data.max_target_len', '8'), ('data.buckets', '(16,)')]),
    'ocr': ('experiments/digits_ocr.py:tsv', 'tsv', 'cer', [
        ('model.emb_dim', '8'), ('model.hidden_dim', '8'), ('model.frontend.channels', '(4, 4, 4)'),
        ('data.image_size', '(16, 32)'), ('data.target_len', '6')]),
    'captioning': ('experiments/tuxpaint_captions.py:tsv', 'captions', 'cider', [
        ('model.emb_dim', '8'), ('model.hidden_dim', '8'), ('model.frontend.channels', '(4, 4, 4)'),
        ('data.image_size', '(16, 16)'), ('data.vocab_size', '32'), ('data.min_count', '1'),
        ('data.target_len', '6')]),
    'speech': ('experiments/spoken_digits.py:tsv', 'tsv', 'wer', [
        ('model.emb_dim', '8'), ('model.hidden_dim', '8'), ('model.decoder_hidden_dim', '8'),
        ('model.attention_dim', '8'), ('model.encoder_layers', '2'), ('model.pyramid', '1'),
        ('model.frontend.num_mels', '16'), ('data.second_buckets', '(1.0,)'),
        ('data.target_len', '8')]),
}
SPLITS = (('train', 'train'), ('eval', 'dev'), ('test', 'test'))


def _write_tsv(path, rows):
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(f'{a}\t{b}\n' for a, b in rows)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  """app -> {split prefix: the split's file}, written once: every split has the same few
  examples (2 steps learn nothing; the point is the path from files to metrics)."""
  root = tmp_path_factory.mktemp('own')
  rng = np.random.default_rng(0)
  out = {}
  for app in APPS:
    (root / app / 'media').mkdir(parents=True)
  # Text pairs: source<TAB>target.
  for app in ('translation', 'summarization'):
    for prefix, name in SPLITS:
      _write_tsv(root / app / f'{name}.tsv', TEXT)
  # OCR: grey strips with the digits' text, paths relative to the TSV's folder.
  ocr = []
  for i, text in enumerate(DIGITS):
    Image.fromarray(rng.integers(0, 256, (20, 50), np.uint8), 'L').save(
        root / 'ocr' / 'media' / f'{i}.png')
    ocr.append((f'media/{i}.png', text))
  # Captioning: RGB squares, several lines (references) per image.
  caps = []
  for i, refs in enumerate(CAPTIONS):
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8), 'RGB').save(
        root / 'captioning' / 'media' / f'{i}.png')
    caps += [(f'media/{i}.png', r) for r in refs]
  # Speech: 0.6 s sine tones (one at 8 kHz: resampled to 16 kHz), a word each.
  speech = []
  for i, word in enumerate(WORDS):
    rate = 8_000 if i == 0 else 16_000
    t = np.arange(int(0.6 * rate)) / rate
    soundfile.write(root / 'speech' / 'media' / f'{i}.wav',
                    0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t), rate)
    speech.append((f'media/{i}.wav', word))
  for app, rows in (('ocr', ocr), ('captioning', caps), ('speech', speech)):
    for prefix, name in SPLITS:
      _write_tsv(root / app / f'{name}.tsv', rows)
  for app, (_, form, _, _) in APPS.items():
    out[app] = {prefix: str(root / app / f'{name}.tsv') for prefix, name in SPLITS}
  return out


def _keys(app, paths):
  form = APPS[app][1]
  return [(f'data.{prefix}_{form}', path) for prefix, path in paths.items()]


@pytest.mark.parametrize('app', list(APPS))
def test_own_files_train_end_to_end(app, files, tmp_path):
  spec, form, metric, model = APPS[app]
  config = config_lib.load_config(spec, _keys(app, files[app]) + RUN + model)
  # The experiment's dataset settings are gone; its model stays (shrunk here).
  assert not {'digit_strips', 'spoken_digits', 'tuxpaint_stamps'} & set(config.data)
  assert config.model.name == config_lib.load_config(spec.split(':')[0]).model.name
  summary = train.train(config, str(tmp_path))
  assert sorted(runs.losses(str(tmp_path))) == [1, 2]
  assert f'test/{metric}' in summary and np.isfinite(summary[f'test/{metric}'])
  assert summary['test/examples'] == 2        # data.eval_max_examples of the user's test split


def test_translation_files_form_reads_aligned_files(tmp_path):
  """':files' (two aligned files per split) reads the same pairs as ':tsv'."""
  src, tgt = tmp_path / 'a.en', tmp_path / 'a.fr'
  src.write_text(''.join(s + '\n' for s, _ in TEXT), encoding='utf-8')
  tgt.write_text(''.join(t + '\n' for _, t in TEXT), encoding='utf-8')
  pair = f"('{src}', '{tgt}')"
  config = config_lib.load_config('experiments/ddtp_enfr_transformer.py:files', [
      ('data.train_files', pair), ('data.eval_files', pair), ('data.test_files', pair)])
  assert config.data.source == 'files'
  assert get_task(config).corpus('test').pairs == TEXT


@pytest.mark.parametrize('app', list(APPS))
def test_without_its_files_a_variant_says_which_flag_to_give(app, tmp_path):
  spec, form, _, _ = APPS[app]
  config = config_lib.load_config(spec, [('mesh.data', '1')])
  task = get_task(config)
  with pytest.raises(UserError) as e:
    task.setup(str(tmp_path))   # the vocabularies (translation, ...) read train first
    task.train_data()
  message = str(e.value)
  assert '\n' not in message
  assert f' is not set: give --config.data.' in message
  # Every split key is named: the one read first, then the others.
  assert all(f'data.{p}_{form}' in message for p, _ in SPLITS), message


def test_the_launcher_prints_one_line_and_exits_2(tmp_path):
  code, out, err = runs.cli('--config=experiments/digits_ocr.py:tsv', f'--workdir={tmp_path}',
                            '--config.mesh.data=1', '--config.model.emb_dim=8',
                            '--config.model.hidden_dim=8')
  assert code == 2 and 'error' not in out   # (stdout: at most the model's set-up line)
  lines = [l for l in err.splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and 'data.eval_tsv is not set: give --config.data.eval_tsv=PATH' \
      in lines[0] and 'data.train_tsv and data.test_tsv too' in lines[0], err


@pytest.mark.parametrize('spec', ['experiments/digits_ocr.py:tsv_smoke',
                                  'experiments/spoken_digits.py:tsv_smoke',
                                  'experiments/tuxpaint_captions.py:tsv_smoke',
                                  'experiments/ddtp_enfr_transformer.py:tsv_smoke',
                                  'experiments/ddtp_enfr_transformer.py:files_smoke',
                                  'experiments/pydoc_summarization.py:tsv_smoke'])
def test_tsv_smoke_is_the_smoke_model_on_your_files(spec):
  own = config_lib.load_config(spec)
  smoke = config_lib.load_config(spec.split(':')[0] + ':smoke')
  assert own.model.to_dict() == smoke.model.to_dict()
  assert own.train_steps == smoke.train_steps
  keys = [k for k in own.data if k.endswith(('_tsv', '_files', '_captions'))]
  assert len(keys) >= 3 and all(not any(own.data[k]) if isinstance(own.data[k], tuple)
                                else own.data[k] == '' for k in keys)


def test_captions_bad_lines_name_file_and_line(files, tmp_path):
  """A captions line that is not UTF-8 (once read as U+FFFD words) or has no TAB is named;
  'skip' counts it and reads the rest."""
  good = open(files['captioning']['train'], 'rb').read()
  bad = tmp_path / 'bad.tsv'
  bad.write_bytes(good + b'media/0.png\tun caf\xe9\n' + b'media/1.png a caption\n')
  media = os.path.join(os.path.dirname(files['captioning']['train']), 'media')
  os.symlink(media, tmp_path / 'media')
  n = good.count(b'\n')
  keys = [('data.train_captions', str(bad)), ('data.eval_captions', str(bad)),
          ('data.test_captions', str(bad)), ('mesh.data', '1')]
  task = get_task(config_lib.load_config(APPS['captioning'][0], keys))
  with pytest.raises(UserError, match=f'bad.tsv:{n + 1}: not valid UTF-8'):
    task.setup(str(tmp_path))
  task = get_task(config_lib.load_config(APPS['captioning'][0],
                                         keys + [('data.bad_pairs', 'skip')]))
  task.setup(str(tmp_path))
  sources, targets = task.train_data()
  assert len(sources) == sum(map(len, CAPTIONS))
