"""Spoken digit strings (eSpeak NG through espeakng-loader): real synthesis of a tiny dataset,
its audio and transcripts, held-out test voices, determinism and reuse."""
import json
import os

import numpy as np
import pytest
import soundfile

from seq2seq_jax.datasets import spoken_digits
from seq2seq_jax.errors import UserError

SPEC = spoken_digits.SpokenDigitSpec(counts=(6, 3, 3), seed=5, chunk=2)


@pytest.fixture(scope='module')
def built(tmp_path_factory) -> str:
  return spoken_digits.build(str(tmp_path_factory.mktemp('spoken')), SPEC, workers=1)


def _lines(folder, split):
  with open(os.path.join(folder, f'{split}.tsv'), encoding='utf-8') as f:
    return [line.split('\t') for line in f.read().splitlines()]


def test_audio_is_16k_mono_int16_speech_with_digit_word_transcripts(built):
  for split, count in zip(spoken_digits.SPLITS, SPEC.counts):
    lines = _lines(built, split)
    assert len(lines) == count
    for path, transcript in lines:
      words = transcript.split(' ')
      assert set(words) <= set(spoken_digits.VOCABULARY) and 1 <= len(words) <= 7
      assert transcript == transcript.strip() and '  ' not in transcript
      info = soundfile.info(os.path.join(built, path))
      assert (info.samplerate, info.channels, info.subtype, info.format) == (
          16_000, 1, 'PCM_16', 'WAV')
      audio, rate = soundfile.read(os.path.join(built, path), dtype='int16')
      assert rate == 16_000 and audio.ndim == 1 and audio.dtype == np.int16
      # At least the 0.1 s of padding and a word; peak at -12 to -1 dB full scale.
      assert len(audio) > 0.4 * rate
      peak = np.abs(audio.astype(np.int32)).max()
      assert 10 ** (-12.1 / 20) * 32767 <= peak <= 10 ** (-0.9 / 20) * 32767
      # Speech, not noise alone: the loudest 50 ms is far above the quietest (the padding).
      frames = audio[:len(audio) // 800 * 800].astype(np.float64).reshape(-1, 800)
      energy = np.sort((frames ** 2).mean(axis=1))
      assert energy[-1] > 5 * energy[0] and energy[-1] > 100 ** 2
  meta = json.load(open(os.path.join(built, 'spec.json'), encoding='utf-8'))
  assert meta['counts'] == list(SPEC.counts) and meta['sample_rate'] == 16_000
  for split in spoken_digits.SPLITS:
    seconds = sum(soundfile.info(os.path.join(built, p)).duration for p, _ in _lines(built, split))
    assert meta['seconds'][split] == pytest.approx(seconds, abs=0.02)


def test_test_voices_never_speak_in_training_or_validation(built):
  meta = json.load(open(os.path.join(built, 'spec.json'), encoding='utf-8'))
  voices = {split: set(v) for split, v in meta['voices'].items()}
  assert voices['validation'] == voices['train']
  assert not voices['test'] & voices['train']
  variants = {split: {v.split('+')[1] for v in vs} for split, vs in voices.items()}
  assert not variants['test'] & variants['train']   # held out by variant, in every language
  assert variants['test'] == set(spoken_digits.TEST_VARIANTS)
  # Each drawn utterance is read by one of its split's voices.
  for split in spoken_digits.SPLITS:
    assert {u.voice for u in spoken_digits.utterances(SPEC, split)} <= voices[split]


def test_zeros_read_zero_or_oh_and_every_length_drawn():
  spec = spoken_digits.SpokenDigitSpec(counts=(3000, 1, 1))
  drawn = spoken_digits.utterances(spec, 'train')
  words = ' '.join(u.transcript for u in drawn).split()
  assert 0.4 < words.count('oh') / (words.count('oh') + words.count('zero')) < 0.6
  assert {len(u.transcript.split()) for u in drawn} == set(range(1, 8))
  assert len({u.voice for u in drawn}) > 100
  assert drawn == spoken_digits.utterances(spec, 'train')
  assert [u.transcript for u in spoken_digits.utterances(
      spoken_digits.SpokenDigitSpec(counts=(30, 1, 1), oh_fraction=0.0), 'train')
          if 'oh' in u.transcript.split()] == []


def test_building_twice_gives_the_same_bytes_whatever_the_worker_count(built, tmp_path):
  # Two chunks per split here (chunk=2): every chunk is synthesized in a fresh process.
  again = spoken_digits.build(str(tmp_path), SPEC, workers=2)
  assert os.path.basename(again) == os.path.basename(built) and again != built
  for split in spoken_digits.SPLITS:
    lines = _lines(built, split)
    assert _lines(again, split) == lines
    for path, _ in lines:
      with open(os.path.join(built, path), 'rb') as a, open(os.path.join(again, path),
                                                             'rb') as b:
        assert a.read() == b.read()


def test_built_once_and_named_by_its_parameters(built):
  root = os.path.dirname(built)
  stamp = os.path.getmtime(os.path.join(built, 'train.tsv'))
  wav = os.path.join(built, 'train', '000000.wav')
  wav_stamp = os.path.getmtime(wav)
  assert spoken_digits.build(root, SPEC) == built
  assert os.path.getmtime(os.path.join(built, 'train.tsv')) == stamp
  assert os.path.getmtime(wav) == wav_stamp
  assert not [n for n in os.listdir(root) if n.startswith('.')]  # no temporary left
  assert spoken_digits.SpokenDigitSpec(counts=(6, 3, 3), seed=6).key() != SPEC.key()


@pytest.mark.parametrize('change, match', [
    (dict(min_digits=0), 'min_digits'),
    (dict(min_digits=4, max_digits=3), 'min_digits'),
    (dict(counts=(6, 0, 3)), 'counts'),
    (dict(rate=(230, 130)), 'rate'),
    (dict(pitch=(25, 175)), 'pitch'),
    (dict(test_variants=('m1', 'f4')), 'unheard'),
    (dict(noise_colours=('white', 'purple')), 'noise_colours'),
    (dict(oh_fraction=1.5), 'oh_fraction'),
    (dict(test_variants=('no_such_variant',)), 'no_such_variant'),
    (dict(languages=('en-us', 'en-mars')), 'en-mars'),
    (dict(whispered=('f4',)), 'whispered must name training variants'),
    (dict(whispered=('m1',), train_variants=('m1', 'm1-whisper')), 'clash'),
])
def test_bad_specs_are_user_errors(tmp_path, change, match):
  spec = spoken_digits.SpokenDigitSpec(**{**SPEC.__dict__, **change})
  with pytest.raises(UserError, match=match):
    spoken_digits.build(str(tmp_path), spec)
  assert not os.listdir(tmp_path)   # nothing was started


def test_a_spec_without_whispers_keeps_the_key_of_datasets_built_before_they_existed():
  # The keys (folder names) of the experiment's and these tests' datasets, computed before
  # SpokenDigitSpec had `whispered`: old builds are found again, not rebuilt.
  assert spoken_digits.SpokenDigitSpec(counts=(6000, 300, 600)).key() == '7e43c8599643'
  assert SPEC.key() == '8178829093fd'
  assert spoken_digits.SpokenDigitSpec(counts=(6, 3, 3), seed=5, chunk=2,
                                       whispered=('f1',)).key() != SPEC.key()


def test_whispered_variant_takes_the_whisper_source_and_keeps_the_speaker():
  variant = ('language variant\nname female3\ngender female\npitch 140 240\n'
             'formant 1 120  75 150 -50\nbreath 0 2 3 3 3 3 3 2\necho 120 10\nvoicing 80\n')
  whisper = ('language variant\nname whisper\ngender male\npitch 82 117\nvoicing 17\n'
             'breath   75  75  50  40  15  10\nbreathw 150 150 200 200 400 400\n')
  lines = spoken_digits.whispered_variant(variant, whisper, 'f3-whisper').splitlines()
  assert lines[:2] == ['language variant', 'name f3-whisper']
  assert {'gender female', 'pitch 140 240', 'formant 1 120  75 150 -50'} <= set(lines)
  assert {'voicing 17', 'breath   75  75  50  40  15  10',
          'breathw 150 150 200 200 400 400'} <= set(lines)
  assert not {'voicing 80', 'echo 120 10', 'breath 0 2 3 3 3 3 3 2', 'pitch 82 117',
              'name female3'} & set(lines)
  with pytest.raises(ValueError, match='breathw'):
    spoken_digits.whispered_variant(variant, 'voicing 17\nbreath 75\n', 'x')


def _periodicity(audio: np.ndarray, rate: int) -> float:
  """Mean over the loud 40 ms frames of the normalised autocorrelation's peak at lags of
  80-400 Hz pitch periods: voiced speech is near 1, a whisper (noise-excited) far lower."""
  x = audio.astype(np.float64)
  n = int(0.04 * rate)
  frames = x[:len(x) // n * n].reshape(-1, n)
  frames = frames - frames.mean(axis=1, keepdims=True)
  loud = frames[(frames ** 2).mean(axis=1) > 0.3 * (x ** 2).mean()]
  peaks = []
  for f in loud:
    ac = np.correlate(f, f, 'full')[n - 1:]
    peaks.append(ac[rate // 400:rate // 80].max() / ac[0])
  return float(np.mean(peaks))


def test_whispered_training_voices_are_spoken_whispered_and_only_in_training(tmp_path):
  spec = spoken_digits.SpokenDigitSpec(
      counts=(8, 2, 2), languages=('en-us',), train_variants=('f1',), whispered=('f1',),
      test_variants=('f4',), snr_db=(60.0, 60.0), chunk=12, seed=3)
  built = spoken_digits.build(str(tmp_path), spec, workers=1)
  meta = json.load(open(os.path.join(built, 'spec.json'), encoding='utf-8'))
  assert set(meta['voices']['train']) == {'en-us+f1', 'en-us+f1-whisper'}
  assert meta['voices']['test'] == ['en-us+f4'] and meta['whispered'] == ['f1']
  periodicity = {'en-us+f1': [], 'en-us+f1-whisper': []}
  for u in spoken_digits.utterances(spec, 'train'):
    audio, rate = soundfile.read(os.path.join(built, u.name), dtype='int16')
    periodicity[u.voice].append(_periodicity(audio, rate))
  assert periodicity['en-us+f1'] and periodicity['en-us+f1-whisper']   # both drawn
  assert min(periodicity['en-us+f1']) > 0.5 > 0.35 > max(periodicity['en-us+f1-whisper'])
  # The private voice folder was removed; the wheel's voice data is untouched.
  assert 'f1-whisper' not in spoken_digits.installed_voices()[1]
