"""Speech end to end: audio files in, transcripts out, with both model families.

The audio is made here: each character of a transcript is a short tone of its own pitch, so
the recording says the text; the files are wav, flac and ogg at 16, 8 and 22.05 kHz, read
through the speech task's reader (soundfile, soxr to 16 kHz) like a user's. A LibriSpeech-
shaped TFDS dataset built here from the same audio goes through the TFDS reader. The
experiment file is written here too; it imports experiments/common.py like every experiment.
"""
import json
import os
import textwrap
import threading

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import soundfile

from seq2seq_jax import config as config_lib
from seq2seq_jax.trainer import steps
from seq2seq_jax.trainer import train
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.models import layers
from seq2seq_jax.models import rnn
from seq2seq_jax.tasks import get_task
from seq2seq_jax.tasks import speech

import runs  # tests/runs.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TONES = {'a': 500.0, 'b': 1200.0, 'c': 2600.0}
STEPS = 12
# (model, frontend): the LAS-style RNN (pyramid) reads projected log-mel frames, the
# Transformer the conv subsampler; both with a CTC head.
COMBOS = [('rnn', 'log_mel'), ('transformer', 'audio_conv')]

EXPERIMENT = '''
import ml_collections
from common import decode, mesh_and_rules, speech_data

MODELS = dict(
    transformer=dict(name='transformer', frontend=dict(name='audio_conv', channels=4),
                     emb_dim=16, num_heads=2, mlp_dim=32, num_encoder_layers=1,
                     num_decoder_layers=1, dropout_rate=0.1, max_len=64),
    rnn=dict(name='rnn', frontend=dict(name='log_mel'), emb_dim=16, hidden_dim=8,
             encoder_layers=2, pyramid=1, decoder_layers=1, attention='concat',
             dropout_rate=0.1))


def _audio(model: dict, **settings) -> dict:
  """`model` with these settings of its frontend changed."""
  return dict(model, frontend={**model['frontend'], **settings})


def get_config(arg):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = 'speech'
  c.data = speech_data(tfds_name='', alphabet='abc ', second_buckets=(0.5, 1.0),
                       target_len=6, eval_batch_size=8, **DATA)
  c.batch_size = 8
  c.train_steps = STEPS
  c.log_every_steps = 1
  c.eval_every_steps = STEPS
  c.checkpoint_every_steps = STEPS
  c.keep_checkpoints = 20
  c.model = dict(_audio(MODELS[arg], num_mels=20, spec_augment=(1, 4, 1, 5, 1.0)),
                 ctc_weight=0.3)
  c.label_smoothing = 0.0
  c.optimizer = dict(name='adam', learning_rate=3e-3, schedule='constant', grad_clip_norm=1.0)
  c.decode = decode(beam_size=2, alpha=0.6, max_len=6)
  mesh_and_rules(c)
  return c
'''


def _tones(text: str, rng, rate: int = 16_000) -> np.ndarray:
  """One 80-120 ms tone per character with 40 ms gaps, a little noise."""
  parts = [np.zeros(int(0.04 * rate))]
  for ch in text:
    t = np.arange(int(rng.uniform(0.08, 0.12) * rate)) / rate
    parts += [0.3 * np.sin(2 * np.pi * TONES[ch] * t), np.zeros(int(0.04 * rate))]
  x = np.concatenate(parts)
  return (x + 0.01 * rng.normal(size=len(x))).astype(np.float32)


def _make_dataset(folder: str) -> dict:
  """24 utterances (16 train, 4 validation + a second reference, 4 test) as wav / flac / ogg
  at 16 / 8 / 22.05 kHz; the transcripts are upper case (the task lower-cases them)."""
  rng = np.random.default_rng(3)
  items = []
  for i in range(24):
    text = ''.join(rng.choice(list('abc'), size=rng.integers(1, 4)))
    ext, rate = (('wav', 16_000), ('flac', 8_000), ('ogg', 22_050))[i % 3]
    name = f'utt{i}.{ext}'
    soundfile.write(os.path.join(folder, name), _tones(text, rng, rate), rate)
    items.append((name, text.upper()))

  def write(split, rows):
    path = os.path.join(folder, f'{split}.tsv')
    with open(path, 'w') as f:
      f.writelines(f'{p}\t{t}\n' for p, t in rows)
    return path
  data = dict(train_tsv=write('train', items[:16]),
              eval_tsv=write('eval', items[16:20] + [(items[16][0], 'CAB')]),
              test_tsv=write('test', items[20:]))
  return {'data': data, 'items': items,
          'inputs': [os.path.join(folder, n) for n, _ in items[20:]]}


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp('speech'))
  made = _make_dataset(folder)
  path = os.path.join(folder, 'speech_experiment.py')
  with open(path, 'w') as f:
    f.write(f'import sys\nsys.path.insert(0, {os.path.join(ROOT, "experiments")!r})\n'
            f'DATA = {made["data"]!r}\nSTEPS = {STEPS}\n' + textwrap.dedent(EXPERIMENT))
  return dict(made, config=path)


def _config(dataset, model, mesh=(2, 2, 2), **overrides):
  pairs = [('mesh.data', str(mesh[0])), ('mesh.fsdp', str(mesh[1])),
           ('mesh.tensor', str(mesh[2]))] + [(k, str(v)) for k, v in overrides.items()]
  return config_lib.load_config(f'{dataset["config"]}:{model}', pairs)


_TRAINED: dict[str, tuple[str, dict]] = {}
# model: (function name, thread name) of every XLA compile while its _trained run ran.
_COMPILES: dict[str, list[tuple[str, str]]] = {}
_RECORDING: list[list[tuple[str, str]]] = []


def _record_compile(event: str, duration: float, **kwargs) -> None:
  del duration
  if _RECORDING and event == '/jax/core/compile/backend_compile_duration':
    _RECORDING[-1].append((str(kwargs.get('fun_name')), threading.current_thread().name))


jax.monitoring.register_event_duration_secs_listener(_record_compile)


def _trained(dataset, tmp_path_factory, model) -> tuple[str, dict]:
  """An uninterrupted run once per model: (workdir, summary). The Transformer's on the
  (2, 2, 2) mesh, the RNN's split by data only (2, 1, 1): the full mesh costs it 1.6x. The
  Transformer compiles its train step ahead (config.precompile_threads=2), the RNN as the
  steps meet each shape."""
  if model not in _TRAINED:
    workdir = str(tmp_path_factory.mktemp(f'speech-{model}'))
    _COMPILES[model] = []
    _RECORDING.append(_COMPILES[model])
    try:
      _TRAINED[model] = workdir, train.train(
          _config(dataset, model, mesh=(2, 2, 2) if model == 'transformer' else (2, 1, 1),
                  precompile_threads=2 if model == 'transformer' else 0),
          workdir)
    finally:
      _RECORDING.pop()
  return _TRAINED[model]


# --- the task's reading ---------------------------------------------------------------------
def test_reader_resamples_lowercases_and_buckets(dataset):
  task = get_task(_config(dataset, 'rnn', mesh=(1, 1, 1)))
  sources, targets = task.train_data()
  assert len(sources) == 16
  for i, (name, text) in enumerate(dataset['items'][:16]):
    wave = np.asarray(sources[i])
    assert wave.dtype == np.float32 and np.abs(wave).max() < 1.0
    # Whatever the file's rate, the task reads 16 kHz: the duration is the file's.
    info = soundfile.info(os.path.join(os.path.dirname(dataset['config']), name))
    assert abs(len(wave) - info.duration * 16_000) <= 2, name
    assert task.decode_target(targets[i]) == text.lower()
  batcher = task.make_batcher(sources, targets, batch_size=4, seed=0, shuffle=True)
  batch = batcher.get_batch(0)
  assert batch['inputs'].shape[1] in task.sample_buckets
  assert batch['inputs_mask'].shape == batch['inputs'].shape
  real = batch['inputs_mask'].sum(axis=1)
  assert all(np.all(batch['inputs'][r, n:] == 0) for r, n in enumerate(real))


def test_a_resampled_tone_keeps_its_pitch(tmp_path):
  t = np.arange(8_000) / 8_000
  soundfile.write(tmp_path / 'tone.flac', 0.5 * np.sin(2 * np.pi * 1000 * t), 8_000)
  pcm = speech.read_audio(str(tmp_path / 'tone.flac'))
  assert len(pcm) == 16_000 and pcm.dtype == np.int16
  spectrum = np.abs(np.fft.rfft(pcm[2000:14000].astype(np.float64)))
  assert abs(np.argmax(spectrum) * 16_000 / 12_000 - 1000) < 5


def test_unreadable_audio_is_named_or_skipped_and_counted(dataset, tmp_path, capsys):
  (tmp_path / 'broken.wav').write_bytes(b'RIFF not really')
  good = os.path.join(os.path.dirname(dataset['config']), dataset['items'][0][0])
  tsv = tmp_path / 'train.tsv'
  tsv.write_text(f'{good}\tabc\nbroken.wav\tab\n')
  config = _config(dataset, 'rnn', mesh=(1, 1, 1))
  config.data.train_tsv = str(tsv)
  with pytest.raises(UserError, match=r'train.tsv:2: cannot read .*broken.wav'):
    get_task(config).train_data()
  config.data.bad_pairs = 'skip'
  sources, _ = get_task(config).train_data()
  assert len(sources) == 1 and '1 bad line(s) skipped' in capsys.readouterr().err
  # Target characters outside data.alphabet ('abc ') are counted and named, never silent.
  tsv.write_text(f'{good}\taG!\n{good}\tab!\n')
  get_task(config).train_data()
  assert ("3 target character(s) outside data.alphabet become <unk>: '!' x2, 'G' x1"
          in capsys.readouterr().err)
  # A cut-off WAV (libsndfile would read its first bytes as a short clip) and audio too short
  # for its transcript are bad lines too.
  with open(good, 'rb') as f:
    (tmp_path / 'cut.wav').write_bytes(f.read()[:60])
  import soundfile  # pylint: disable=g-import-not-at-top
  soundfile.write(str(tmp_path / 'blip.wav'), np.zeros(800, np.float32), 16000)  # 0.05 s
  tsv.write_text(f'{good}\tabc\ncut.wav\tab\nblip.wav\tabc abc\n')
  config.data.bad_pairs = 'error'
  with pytest.raises(UserError, match=r'train.tsv:2: cannot read .*cut.wav: ValueError: the '
                                      r'file is cut off: its header declares [\d,]+ bytes'):
    get_task(config).train_data()
  config.data.train_tsv = str(tmp_path / 'short.tsv')
  (tmp_path / 'short.tsv').write_text(f'{good}\tabc\nblip.wav\tabc abc\n')
  with pytest.raises(UserError, match=r'short.tsv:2: audio too short for its transcript: '
                                      r'0.05 s for 7 characters'):
    get_task(config).train_data()
  config.data.train_tsv = str(tsv)
  config.data.bad_pairs = 'skip'
  sources, _ = get_task(config).train_data()
  err = capsys.readouterr().err
  assert len(sources) == 1 and '2 bad line(s) skipped' in err, err


def _tiny_librispeech(dataset, data_dir):
  """LibriSpeech's layout ('speech' 16 kHz samples, 'text', 'speaker_id', 'chapter_id', 'id')
  as a TFDS array_record dataset, from the test's audio files (read at 16 kHz).

  tfds.features.Audio cannot be built without TensorFlow; a non-lazy Audio feature is stored
  as a Tensor feature of int64 samples, so the dataset is written with that Tensor feature and
  its features.json then says Audio, as LibriSpeech's does: the reader must read the records
  without building feature classes.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  folder = os.path.dirname(dataset['config'])
  items = dataset['items']

  class TinyLibrispeech(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('2.1.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'speech': tfds.features.Tensor(shape=(None,), dtype=np.int64),
          'text': tfds.features.Text(), 'speaker_id': np.int64, 'chapter_id': np.int64,
          'id': tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {'train_clean100': self._generate_examples(items[:8]),
              'train_clean360': self._generate_examples(items[8:16]),
              'dev_clean': self._generate_examples(items[16:20]),
              'test_clean': self._generate_examples(items[20:])}

    def _generate_examples(self, rows):
      for i, (name, text) in enumerate(rows):
        yield i, {'speech': speech.read_audio(os.path.join(folder, name)).astype(np.int64),
                  'text': text, 'speaker_id': 1, 'chapter_id': 2, 'id': f'1-2-{i:04d}'}

  builder = TinyLibrispeech(data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare()
  path = os.path.join(builder.data_dir, 'features.json')
  with open(path) as f:
    spec = json.load(f)
  spec['featuresDict']['features']['speech'] = {
      'pythonClassName': 'tensorflow_datasets.core.features.audio_feature.Audio',
      'audio': {'shape': {'dimensions': ['-1']}, 'dtype': 'int64', 'sampleRate': '16000',
                'encoding': 'none'}}
  with open(path, 'w') as f:
    json.dump(spec, f)


@pytest.mark.parametrize('cache_audio', [True, False])
def test_tfds_librispeech_reader_matches_the_files(dataset, tmp_path_factory, cache_audio):
  data_dir = str(tmp_path_factory.getbasetemp() / 'tfds_librispeech')
  if not os.path.isdir(os.path.join(data_dir, 'tiny_librispeech')):
    _tiny_librispeech(dataset, data_dir)
  files = get_task(_config(dataset, 'rnn', mesh=(1, 1, 1)))
  config = _config(dataset, 'rnn', mesh=(1, 1, 1))
  config.data.update(tfds_name='tiny_librispeech', data_dir=data_dir,
                     train_split='train_clean100+train_clean360', cache_audio=cache_audio)
  tfds_task = get_task(config)
  def examples(task, split):   # TFDS shuffles a split's records: compare as sorted sets
    sources, targets = (task.train_data() if split == 'train' else task.eval_loss_data(split))
    return sorted((np.asarray(x).tobytes(), tuple(t)) for x, t in zip(sources, targets))
  for split in ('train', 'test'):   # (the files' validation split has a second reference)
    assert examples(tfds_task, split) == examples(files, split), split
  assert len(tfds_task.train_data()[0]) == 16
  assert isinstance(tfds_task.train_data()[0][0], speech.LazyWaveform) != cache_audio
  assert (sorted(map(tuple, tfds_task.eval_set('test').references))
          == sorted(map(tuple, files.eval_set('test').references)))
  config.data.tfds_audio_key = 'audio'
  with pytest.raises(UserError, match="reads 'audio' and 'text'"):
    get_task(config).train_data()
  config.data.update(tfds_audio_key='speech', train_split='train_clean100[:50%]')
  with pytest.raises(UserError, match='no split'):
    get_task(config).train_data()


def test_sentencepiece_targets_train_once_and_round_trip(dataset, tmp_path):
  config = _config(dataset, 'rnn', mesh=(1, 1, 1))
  config.data.update(targets='sentencepiece', spm_vocab_size=12, spm_model_type='char')
  task = get_task(config)
  assert task.tgt_vocab_size == 12
  task.setup(str(tmp_path))
  assert os.path.isfile(tmp_path / 'spm' / 'speech.model')
  ids = task.encode_text('cab ba')
  assert task.decode_target(list(ids) + [EOS_ID, 5]) == 'cab ba'
  config.data.spm_vocab_size = 0
  with pytest.raises(UserError, match='spm_vocab_size'):
    get_task(config)


# --- the models' audio parts ------------------------------------------------------------------
def _wave_batches():
  """(real, padded): the padded batch has garbage in masked samples, longer rows and a row."""
  rng = np.random.default_rng(0)
  wave = (0.1 * rng.normal(size=(2, 4000))).astype(np.float32)
  mask = np.zeros((2, 4000), bool)
  mask[0] = True
  mask[1, :2500] = True
  wave[1, 2500:] = 0
  padded = rng.normal(size=(3, 5600)).astype(np.float32)
  padded[:2, :4000] = wave
  padded[1, 2500:4000] = rng.normal(size=1500)
  mask_pad = np.zeros((3, 5600), bool)
  mask_pad[:2, :4000] = mask
  mask_pad[2, :1000] = True
  dec = rng.integers(4, 9, (2, 4)).astype(np.int32)
  dec[:, 0] = BOS_ID
  dec_pad = np.concatenate([dec, np.full((1, 4), BOS_ID, np.int32)])
  return ({'inputs': wave, 'inputs_mask': mask, 'decoder_inputs': dec},
          {'inputs': padded, 'inputs_mask': mask_pad, 'decoder_inputs': dec_pad})


def _audio(model: dict, **settings) -> dict:
  """`model` with these settings of its frontend changed."""
  return dict(model, frontend={**model['frontend'], **settings})


SMALL = {
    'transformer': dict(name='transformer', frontend=dict(name='audio_conv', channels=4,
                                                          num_mels=20),
                        emb_dim=16, num_heads=2, mlp_dim=32, num_encoder_layers=1,
                        num_decoder_layers=1, dropout_rate=0.0, max_len=64),
    'rnn': dict(name='rnn', frontend=dict(name='log_mel', num_mels=20), emb_dim=16,
                hidden_dim=8, encoder_layers=3, pyramid=2, decoder_layers=1,
                attention='concat', dropout_rate=0.0),
}


@pytest.mark.parametrize('model_name', sorted(SMALL))
def test_waveform_padding_never_changes_real_rows_and_cache_matches(model_name):
  model = build_model(dict(SMALL[model_name], ctc_weight=0.5), 0, 9)
  batch, padded = _wave_batches()
  params = model.init({'params': jax.random.key(0)}, batch, train=False)['params']
  apply = jax.jit(lambda p, b: model.apply({'params': p}, b, train=False))
  logits, logits_pad = np.asarray(apply(params, batch)), np.asarray(apply(params, padded))
  assert logits.shape == (2, 4, 9) and np.all(np.isfinite(logits))
  np.testing.assert_allclose(logits_pad[:2], logits, rtol=2e-4, atol=2e-4)

  def first_step(p, b):
    cache = model.apply({'params': p}, b['inputs'], 4, 1, inputs_mask=b['inputs_mask'],
                        method='init_cache')
    bos = jnp.full((b['inputs'].shape[0],), BOS_ID, jnp.int32)
    return model.apply({'params': p}, bos, cache, method='decode_step')[0]
  step0 = np.asarray(jax.jit(first_step)(params, padded))
  np.testing.assert_allclose(step0[:2], logits[:, 0], rtol=2e-4, atol=2e-4)
  # The CTC head sees the same positions: real rows' logits do not move either.
  ctc = jax.jit(lambda p, b: model.apply({'params': p}, b['inputs'], b['inputs_mask'],
                                         method='ctc_logits'))
  (c, m), (c_pad, m_pad) = ctc(params, batch), ctc(params, padded)
  n = c.shape[1]
  np.testing.assert_array_equal(np.asarray(m_pad)[:2, :n], np.asarray(m))
  np.testing.assert_allclose(np.asarray(c_pad)[:2, :n][np.asarray(m)],
                             np.asarray(c)[np.asarray(m)], rtol=2e-4, atol=2e-4)


def test_pyramid_halves_time_per_layer():
  """LAS: 2 pyramid layers over 24 frames of 10 ms: 6 positions; an utterance of n frames
  keeps ceil(ceil(n / 2) / 2) real ones."""
  model = build_model(SMALL['rnn'], 0, 9)
  batch, _ = _wave_batches()
  params = model.init({'params': jax.random.key(0)}, batch, train=False)['params']
  memory, mask, _ = model.apply({'params': params}, batch['inputs'],
                                inputs_mask=batch['inputs_mask'], method='encode')
  frames = 1 + (4000 - 400) // 160                       # 23 frames of the longer row
  assert memory.shape[:2] == (2, -(-(-(-frames // 2)) // 2))
  short = 1 + (2500 - 400) // 160
  assert list(np.asarray(mask).sum(axis=1)) == [-(-(-(-frames // 2)) // 2),
                                                -(-(-(-short // 2)) // 2)]
  x = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 3) + 1
  m = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
  y, ym = rnn.pyramid_halve(x, m)
  assert y.shape == (2, 3, 6) and list(np.asarray(ym).sum(axis=1)) == [3, 2]
  np.testing.assert_array_equal(y[0, 2], jnp.concatenate([x[0, 4], jnp.zeros(3)]))
  np.testing.assert_array_equal(y[1, 1], jnp.concatenate([x[1, 2], jnp.zeros(3)]))
  with pytest.raises(UserError, match='pyramid'):
    build_model(dict(SMALL['rnn'], pyramid=3), 0, 9).init(
        {'params': jax.random.key(0)}, batch, train=False)


def test_ctc_greedy_merges_repeats_and_drops_blanks():
  path = np.array([[3, 3, 0, 3, 5, 5, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [4, 6, 4, 6, 4, 6, 4, 6]])
  mask = np.ones_like(path, bool)
  mask[2, 5:] = False
  logits = jax.nn.one_hot(path, 8) * 5.0
  out = np.asarray(layers.ctc_greedy(logits, jnp.asarray(mask), max_len=4, eos_id=EOS_ID))
  assert out.tolist() == [[3, 3, 5, EOS_ID], [EOS_ID, 0, 0, 0], [4, 6, 4, EOS_ID]]


def test_ctc_rescoring_picks_the_hypothesis_both_scores_favour():
  """decode.ctc_weight: (1 - w) log P_att + w log P_ctc over the length penalty picks the
  beam's best; a label sequence that cannot be aligned (a repeat needs a blank between) gets
  log P_ctc = -inf, and the training loss leaves such a row out."""
  # CTC logits over 4 positions that read "3 5": the second hypothesis.
  logits = jnp.log(jax.nn.one_hot(jnp.array([[3, 0, 5, 0]]), 8) * 0.97 + 0.03 / 8)
  mask = jnp.ones((1, 4), bool)
  seqs = jnp.array([[[3, 3, EOS_ID, 0], [3, 5, EOS_ID, 0], [6, EOS_ID, 0, 0]]])
  scores = jnp.array([[-0.5, -0.9, -jnp.inf]])     # the attention decoder prefers "3 3"
  pick = lambda w: np.asarray(steps.ctc_rescore(seqs, scores, logits, mask, weight=w,
                                                alpha=0.6))[0].tolist()
  assert pick(0.0) == [3, 3, EOS_ID, 0]
  assert pick(0.3) == [3, 5, EOS_ID, 0]
  ll = layers.ctc_log_likelihood(jnp.repeat(logits, 2, axis=0), jnp.ones((2, 4), bool),
                                 jnp.array([[3, 5, EOS_ID, 0], [3, 3, EOS_ID, 0]]), EOS_ID)
  assert np.isfinite(float(ll[0])) and -1.0 < float(ll[0]) < 0
  short = jnp.array([[True, True, False, False], [True, True, True, False]])
  ll = layers.ctc_log_likelihood(jnp.repeat(logits, 2, axis=0), short,
                                 jnp.array([[3, 3, EOS_ID, 0], [3, 3, EOS_ID, 0]]), EOS_ID)
  assert float(ll[0]) == -np.inf and np.isfinite(float(ll[1]))
  targets = jnp.array([[3, 3, EOS_ID, 0], [3, 5, EOS_ID, 0]])
  loss = layers.ctc_loss_sum(jnp.repeat(logits, 2, axis=0), short, targets)
  alone = layers.ctc_loss_sum(logits, short[1:], targets[1:])
  assert float(loss) == pytest.approx(float(alone)) and 0 < float(alone) < 100
  for bad, message in ((dict(ctc_weight=1.5), r'in \[0, 1\]'),
                       (dict(ctc_weight=0.3, method='greedy'), "needs decode.method='beam'"),
                       (dict(ctc_weight=0.3, beam_size=1), 'beam_size >= 2')):
    with pytest.raises(UserError, match=message):
      steps.check_decode_config(ml_collections.ConfigDict(dict(
          dict(method='beam', beam_size=4, max_len=8), **bad)))


def test_joint_loss_is_the_weighted_sum_of_ctc_and_cross_entropy():
  """The train step's loss = ((1 - w) CE + w CTC) / target tokens, CTC from optax over the
  labels before EOS; SpecAugment draws the same masks for the same step."""
  w = 0.4
  model = build_model(dict(_audio(SMALL['transformer'], spec_augment=()), ctc_weight=w), 0, 9)
  batch, _ = _wave_batches()
  targets = np.array([[5, 6, 7, EOS_ID], [8, EOS_ID, 0, 0]], np.int32)
  batch = dict(batch, targets=targets)
  params = model.init({'params': jax.random.key(0)}, batch, train=False)['params']
  config = ml_collections.ConfigDict({'seed': 0})   # the weight is the model's
  tx = optax.sgd(0.0)
  step = jax.jit(steps.make_train_step(model, tx, lambda s: 0.0, config))
  state = steps.TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params))
  _, metrics = step(state, batch)
  logits = model.apply({'params': params}, batch, train=False)
  ce, _ = steps.cross_entropy(logits, batch['targets'], (targets > 0).astype(np.float32))
  ctc_logits, mask = model.apply({'params': params}, batch['inputs'], batch['inputs_mask'],
                                 method='ctc_logits')
  per_row = optax.ctc_loss(ctc_logits, 1.0 - mask.astype(jnp.float32),
                           jnp.asarray([[5, 6, 7, 0], [8, 0, 0, 0]]),
                           jnp.asarray([[0, 0, 0, 1], [0, 1, 1, 1]], jnp.float32))
  expected = ((1 - w) * ce + w * jnp.sum(per_row)) / 6.0
  assert float(metrics['loss']) == pytest.approx(float(expected), rel=1e-5)


def test_spec_augment_only_in_training_and_from_the_rng():
  model = build_model(_audio(SMALL['rnn'], spec_augment=(2, 8, 2, 5, 1.0)), 0, 9)
  batch, _ = _wave_batches()
  params = model.init({'params': jax.random.key(0)}, batch, train=False)['params']

  def enc(train, key):
    return np.asarray(model.apply({'params': params}, batch['inputs'],
                                  inputs_mask=batch['inputs_mask'], train=train,
                                  rngs={'dropout': jax.random.key(key)}, method='encode')[0])
  assert np.array_equal(enc(False, 0), enc(False, 1))       # evaluation: no masks
  assert np.array_equal(enc(True, 0), enc(True, 0))         # the same key, the same masks
  assert not np.allclose(enc(True, 0), enc(False, 0))
  assert not np.allclose(enc(True, 0), enc(True, 1))


@pytest.mark.parametrize('setting', ['vtlp', 'speed'])
def test_vtlp_and_speed_only_in_training_and_from_the_rng(setting):
  plain = build_model(_audio(SMALL['rnn'], spec_augment=()), 0, 9)
  model = build_model(_audio(SMALL['rnn'], spec_augment=(), **{setting: (0.9, 1.1)}), 0, 9)
  batch, _ = _wave_batches()
  params = model.init({'params': jax.random.key(0)}, batch, train=False)['params']

  def enc(m, train, key):
    return np.asarray(m.apply({'params': params}, batch['inputs'],
                              inputs_mask=batch['inputs_mask'], train=train,
                              rngs={'dropout': jax.random.key(key)}, method='encode')[0])
  assert np.array_equal(enc(model, False, 0), enc(plain, False, 0))  # evaluation: unchanged
  assert np.array_equal(enc(model, True, 0), enc(model, True, 0))
  assert not np.allclose(enc(model, True, 0), enc(plain, True, 0))
  assert not np.allclose(enc(model, True, 0), enc(model, True, 1))
  for bad in ((1.1,), (1.1, 0.9)):   # checked when the model is set up, even for evaluation
    with pytest.raises(UserError, match=f'model.frontend.{setting} must be'):
      build_model(_audio(SMALL['rnn'], **{setting: bad}), 0, 9).apply(
          {'params': params}, batch, train=False)


# --- end to end ------------------------------------------------------------------------------
@pytest.mark.parametrize('model', [m for m, _ in COMBOS])
def test_train_eval_predict_and_mesh(model, dataset, tmp_path_factory):
  workdir, summary = _trained(dataset, tmp_path_factory, model)
  ref = runs.losses(workdir)
  assert sorted(ref) == list(range(1, STEPS + 1))
  # Every training shape compiled once: ahead, in the pool's threads (Transformer), or in the
  # loop when a step first met it (RNN); the loop never compiled one again.
  task = get_task(_config(dataset, model))
  shapes = task.make_batcher(*task.train_data(), batch_size=8, seed=0,
                             shuffle=True).shape_examples()
  threads = [t for f, t in _COMPILES[model] if 'train_step' in f]
  assert len(threads) == len(shapes) >= 1, _COMPILES[model]
  if model == 'transformer':
    assert all(t != 'MainThread' for t in threads), threads
  else:
    assert set(threads) == {'MainThread'}, threads
  assert ref[STEPS] < ref[1], ref
  for key in ('wer', 'cer', 'accuracy'):
    assert 0 <= summary[f'test/{key}'] <= 100
  assert summary['test/examples'] == 4
  # Predict: audio paths in, transcripts out; attention decoding and the CTC head alone
  # (RNN), the beam rescored with the CTC head (Transformer).
  lines = [dataset['inputs'][0], '', dataset['inputs'][1]]
  methods = {'rnn': (('beam', 0.0), ('ctc_greedy', 0.0)), 'transformer': (('beam', 0.5),)}
  for method, ctc_weight in methods[model]:
    out = list(train.predict(_config(dataset, model, mesh=(1, 1, 1), **{
        'decode.method': method, 'decode.ctc_weight': ctc_weight}), workdir, lines))
    assert len(out) == 3 and out[1] == ''
    assert all(set(o) <= set('abc ') for o in out), out
  with pytest.raises(UserError, match='no such file'):
    list(train.predict(_config(dataset, model, mesh=(1, 1, 1)), workdir, ['nothing.wav']))


def test_a_resumed_run_gets_the_same_waveform_batches(dataset):
  """What makes a killed speech run resume exactly (the trainer's resume itself is killed and
  restarted in tests/test_launch.py and test_translation_e2e.py): a waveform batch is a pure
  function of the seed and the step, whichever steps a batcher made before; SpecAugment and
  dropout draw from the step-folded key (test_spec_augment_only_in_training_and_from_the_rng,
  trainer/steps.py)."""
  task = get_task(_config(dataset, 'rnn', mesh=(1, 1, 1)))
  data = task.train_data()
  ran = task.make_batcher(*data, batch_size=8, seed=0, shuffle=True)
  seen = [ran.get_batch(s) for s in range(7)]          # a run that went through step 6
  fresh = task.make_batcher(*data, batch_size=8, seed=0, shuffle=True)   # the resumed run
  for step in (4, 5, 6):
    for key, value in seen[step].items():
      np.testing.assert_array_equal(fresh.get_batch(step)[key], value, err_msg=key)
  assert len({b['inputs'].tobytes() for b in seen}) > 1   # (the batches do differ)


# --- paper configurations ----------------------------------------------------------------------
@pytest.mark.parametrize('spec,count', [
    ('librispeech_transformer.py', 29_718_016),       # docstring: fairseq's 29,536,256
    ('librispeech_transformer.py:ctc', 29_718_016 + 256 * 10_000 + 10_000),
    ('librispeech_las.py', 14_738_720),
    ('librispeech_las.py:ctc', 14_738_720 + 512 * 32 + 32),
])
def test_paper_configs_have_the_documented_sizes(spec, count):
  config = config_lib.load_config(os.path.join(ROOT, 'experiments', spec), [])
  assert train.info(config)['num_params'] == count
