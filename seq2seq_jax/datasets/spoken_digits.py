"""Spoken connected-digit strings, synthesized with eSpeak NG, for speech recognition.

The TIDIGITS setting (Leonard 1984): strings of 1 to 7 digits read aloud as connected speech;
the target is the words spoken. Each zero is read "zero" or "oh" (a coin flip per zero) and the
transcript holds the word actually read, so transcripts use 11 words ("four oh seven one").

The speech comes from eSpeak NG through the `espeakng-loader` PyPI wheel, which ships
libespeak-ng and its voice data (`pip install espeakng-loader==0.2.4 soundfile soxr`); the
library is driven through its C API with ctypes. A voice is an English language (its accent:
en, en-us, en-gb-x-rp, en-029, ...) with a voice variant (the speaker: m1, f2, croak, klatt,
...). Each utterance draws a voice, a speaking rate, a pitch and extra pauses between words; the
native 22,050 Hz audio is resampled (soxr) to `sample_rate`, padded with a short lead-in and
tail, mixed with white, pink or brown Gaussian noise at a random SNR and scaled to a random
peak level.

Held-out speakers: the test split is read only by variants never heard in training or
validation (TEST_VARIANTS: m7, m8, f4, aunty, belinda, linda, whisperf, klatt4, michel), in all
the languages; validation shares the training voices (TRAIN_VARIANTS, 30 of them). Variants
that are near copies of each other are on the same side (f4 with aunty, linda and belinda,
whose formants they share; f5 with f2); whisperf whispers with formants close to f2's, a
female whisper the training voices do not have; klatt4's glottal source (Klatt type 4) is used
by no training variant. spec.json lists the voices of each split.

Whispered training voices (`whispered`, off by default): eSpeak ships one whisper per sex
(whisper, whisperf), the female one held out. `whispered=('f1', ...)` adds, for each named
training variant, a voice '<variant>-whisper' to training and validation: that speaker's
variant file with its voicing, breath and echo settings replaced by those of eSpeak's own
'whisper' variant (the way whisperf is f2 whispered). The variant files are written to a private
copy of eSpeak's data folder (symbolic links to the rest) made for the build.

`build` writes 16-bit mono WAVs and one TSV per split (`wav_path<TAB>transcript`) into a folder
named by every parameter that shapes the data, once: a second run (or another process) reuses
it. Building is deterministic: the same spec gives the same bytes. eSpeak keeps state across
utterances that its API cannot reset (the phase of its pitch flutter, among others), so the
utterances are synthesized in fixed chunks, each by a fresh worker process.
"""
import concurrent.futures
import ctypes
import dataclasses
import hashlib
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import tempfile
from typing import Optional

import numpy as np

from seq2seq_jax.data import built_dir
from seq2seq_jax.errors import UserError

SPLITS = ('train', 'validation', 'test')
DIGIT_WORDS = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')
VOCABULARY = ('zero', 'oh') + DIGIT_WORDS[1:]   # every word a transcript can hold
# The English languages (accents) of eSpeak NG 1.52, by the file names under
# espeak-ng-data/lang/gmw (en-Shaw, the Shavian alphabet, is left out).
LANGUAGES = ('en', 'en-us', 'en-gb-x-rp', 'en-029', 'en-gb-scotland', 'en-gb-x-gbclan',
             'en-gb-x-gbcwmd', 'en-us-nyc')
# Variants (speakers, espeak-ng-data/voices/!v) for training and validation. Left out: the
# robots and echo effects (robosoft*, UniRobot, RicishayMax*, Demonic, ...), 'fast'
# (unstable), 'caleb' (no voicing) and 'ed' (clips).
TRAIN_VARIANTS = ('m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'f1', 'f2', 'f3', 'f5', 'croak',
                  'whisper', 'klatt', 'klatt2', 'klatt3', 'adam', 'Alex', 'Annie', 'benjamin',
                  'david', 'Denis', 'edward', 'grandma', 'grandpa', 'iven3', 'max', 'quincy',
                  'robert', 'steph', 'travis')
# Further shipped variants for training (female or high voices, none a near copy of a test
# variant; the male 25 / voicing 35 family of michel stays out: Diogo, Henrique, Hugo, miguel).
MORE_TRAIN_VARIANTS = ('Alicia', 'anika', 'Andrea', 'shelby', 'steph2', 'steph3')
# Training variants that experiments/spoken_digits.py also has whispered (not f2: f2
# whispered is whisperf, a test speaker).
WHISPERED = ('f1', 'f3', 'f5', 'Annie', 'grandma', 'steph', 'm1', 'm3', 'klatt2', 'Alex')
WHISPER_SUFFIX = '-whisper'
WHISPER_KEYS = ('voicing', 'breath', 'breathw')   # taken from eSpeak's 'whisper' variant
# Held-out variants: the test split's only speakers.
TEST_VARIANTS = ('m7', 'm8', 'f4', 'aunty', 'belinda', 'linda', 'whisperf', 'klatt4', 'michel')
# Noise colours: the noise power spectrum falls as 1 / f**alpha (flat below NOISE_FLOOR_HZ).
NOISE_COLOURS = {'white': 0.0, 'pink': 1.0, 'brown': 2.0}
NOISE_FLOOR_HZ = 50.0
VOLUME = 60  # espeakVOLUME for every utterance (eSpeak's default 100 clips loud variants)


@dataclasses.dataclass(frozen=True)
class SpokenDigitSpec:
  """Everything that shapes the dataset (its folder name is a hash of it)."""
  counts: tuple[int, int, int] = (6000, 300, 600)  # utterances: train, validation, test
  min_digits: int = 1
  max_digits: int = 7
  oh_fraction: float = 0.5   # chance that a zero is read "oh" rather than "zero"
  languages: tuple[str, ...] = LANGUAGES
  train_variants: tuple[str, ...] = TRAIN_VARIANTS   # training and validation speakers
  test_variants: tuple[str, ...] = TEST_VARIANTS     # the test split's only speakers
  whispered: tuple[str, ...] = ()   # training variants also heard whispered ('f1-whisper')
  rate: tuple[int, int] = (130, 230)       # speaking rate, words per minute (eSpeak: 80-450)
  pitch: tuple[int, int] = (25, 75)        # eSpeak pitch, 0-100 (50: the variant's own)
  word_gap: tuple[int, int] = (0, 5)       # extra pause between words, units of 10 ms
  snr_db: tuple[float, float] = (10.0, 40.0)   # speech to noise power over the utterance
  noise_colours: tuple[str, ...] = ('white', 'pink', 'brown')
  peak_db: tuple[float, float] = (-12.0, -1.0)  # peak of the written audio, dB full scale
  pad: tuple[float, float] = (0.05, 0.3)   # seconds of noise alone before and after speech
  sample_rate: int = 16_000
  # Utterances synthesized per fresh process: eSpeak's hidden state carries from one
  # utterance to the next, so the audio depends on this grouping (not on the worker count).
  chunk: int = 200
  seed: int = 0

  def check(self) -> None:
    def bad(message):
      return UserError(f'spoken digits: {message}')
    if len(self.counts) != 3 or min(self.counts) < 1:
      raise bad(f'counts must be three positive numbers, got {self.counts}')
    if not 1 <= self.min_digits <= self.max_digits:
      raise bad(f'need 1 <= min_digits <= max_digits, got {self.min_digits}, '
                f'{self.max_digits}')
    if not 0 <= self.oh_fraction <= 1:
      raise bad(f'oh_fraction must be in [0, 1], got {self.oh_fraction}')
    ranges = dict(rate=(80, 450), pitch=(0, 100), word_gap=(0, 100), snr_db=(-20, 100),
                  peak_db=(-60, 0), pad=(0, 10))
    for name, (lo, hi) in ranges.items():
      value = getattr(self, name)
      if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
        raise bad(f'{name} must be a range (low, high) within [{lo}, {hi}], got {value}')
    names = dict(languages=self.languages, train_variants=self.train_variants,
                 test_variants=self.test_variants, whispered=self.whispered)
    for name, value in names.items():
      if name == 'whispered' and value == ():
        continue
      if isinstance(value, str) or not value or len(set(value)) != len(value) or any(
          not v or '+' in v or v != v.strip() for v in value):
        raise bad(f'{name} must be a non-empty tuple of distinct voice names, got {value!r}')
    shared = set(self.train_variants) & set(self.test_variants)
    if shared:
      raise bad(f'test variants must be unheard in training, but {sorted(shared)} are in both')
    if not set(self.whispered) <= set(self.train_variants):
      raise bad(f'whispered must name training variants, but '
                f'{sorted(set(self.whispered) - set(self.train_variants))} are not')
    clash = {v + WHISPER_SUFFIX for v in self.whispered} & (
        set(self.train_variants) | set(self.test_variants))
    if clash:
      raise bad(f'whispered voices {sorted(clash)} clash with variants of the same name')
    if (isinstance(self.noise_colours, str) or not self.noise_colours
        or not set(self.noise_colours) <= set(NOISE_COLOURS)):
      raise bad(f'noise_colours must be some of {sorted(NOISE_COLOURS)}, '
                f'got {self.noise_colours!r}')
    if not 8000 <= self.sample_rate <= 48_000:
      raise bad(f'sample_rate must be in [8000, 48000], got {self.sample_rate}')
    if self.chunk < 1:
      raise bad(f'chunk must be positive, got {self.chunk}')

  def key(self) -> str:
    fields = dataclasses.asdict(self)
    if not self.whispered:   # the key of every dataset built before the field existed
      del fields['whispered']
    blob = json.dumps(fields, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]

  def variants(self, split: str) -> tuple[str, ...]:
    """The voice variants that read `split`, whispered ones as 'f1-whisper'."""
    if split == 'test':
      return self.test_variants
    return self.train_variants + tuple(v + WHISPER_SUFFIX for v in self.whispered)

  def voices(self, split: str) -> list[str]:
    """The eSpeak voice names ('en-us+m3') that read `split`."""
    variants = self.variants(split)
    return [f'{language}+{variant}' for language in self.languages for variant in variants]


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One utterance's draw: what to synthesize and how to degrade it."""
  name: str          # the WAV's path relative to the dataset folder
  transcript: str    # the words read, space-separated
  voice: str         # eSpeak voice name, language+variant
  rate: int          # words per minute
  pitch: int         # 0-100
  word_gap: int      # x 10 ms
  snr_db: float
  colour: str        # a key of NOISE_COLOURS
  peak_db: float
  pad: tuple[float, float]  # seconds before and after the speech
  seed: int          # seeds eSpeak's random numbers and the noise


def utterances(spec: SpokenDigitSpec, split: str) -> list[Utterance]:
  """The split's utterances, drawn from a generator seeded by (seed, split index) only."""
  s = SPLITS.index(split)
  rng = np.random.default_rng([spec.seed, s])
  voices = spec.voices(split)
  out = []
  for n in range(spec.counts[s]):
    k = int(rng.integers(spec.min_digits, spec.max_digits + 1))
    digits = rng.integers(0, 10, size=k)
    ohs = rng.random(k) < spec.oh_fraction
    words = ['oh' if d == 0 and oh else DIGIT_WORDS[d] for d, oh in zip(digits, ohs)]
    out.append(Utterance(
        name=f'{split}/{n:06d}.wav', transcript=' '.join(words),
        voice=voices[int(rng.integers(len(voices)))],
        rate=int(rng.integers(spec.rate[0], spec.rate[1] + 1)),
        pitch=int(rng.integers(spec.pitch[0], spec.pitch[1] + 1)),
        word_gap=int(rng.integers(spec.word_gap[0], spec.word_gap[1] + 1)),
        snr_db=float(rng.uniform(*spec.snr_db)),
        colour=spec.noise_colours[int(rng.integers(len(spec.noise_colours)))],
        peak_db=float(rng.uniform(*spec.peak_db)),
        pad=(float(rng.uniform(*spec.pad)), float(rng.uniform(*spec.pad))),
        seed=int(rng.integers(2**31 - 1))))
  return out


# ---------------------------------------------------------------------------------------------
# eSpeak NG through ctypes (speak_lib.h)

_AUDIO_OUTPUT_SYNCHRONOUS = 2    # espeak_Synth returns when done, audio via the callback
_INITIALIZE_DONT_EXIT = 0x8000   # fail with an error code rather than exit(1)
_RATE, _VOLUME, _PITCH, _WORDGAP = 1, 2, 3, 7   # espeak_PARAMETER
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
# int callback(short *wav, int numsamples, espeak_EVENT *events): 0 goes on, 1 aborts.
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


def _loader():
  """The espeakng_loader module, or a UserError saying how to install it."""
  if importlib.util.find_spec('espeakng_loader') is None:
    raise UserError('spoken digits need eSpeak NG from the espeakng-loader package: '
                    'pip install espeakng-loader==0.2.4 soundfile soxr')
  import espeakng_loader  # pylint: disable=g-import-not-at-top
  return espeakng_loader


def installed_voices() -> tuple[list[str], list[str]]:
  """(languages, variants) in the shipped voice data; languages lower-case, as eSpeak
  matches them (lang/gmw/en-US is 'en-us')."""
  data = _loader().get_data_path()
  languages = [name.lower() for _, _, names in os.walk(os.path.join(data, 'lang'))
               for name in names]
  return sorted(languages), sorted(os.listdir(os.path.join(data, 'voices', '!v')))


class Espeak:
  """libespeak-ng, initialised for synchronous synthesis into a buffer. One per process: use
  `engine()`."""

  def __init__(self, data_path: Optional[str] = None):
    loader = _loader()
    self.data_path = data_path or loader.get_data_path()
    lib = ctypes.CDLL(loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                             self.data_path.encode(), _INITIALIZE_DONT_EXIT)
    if self.sample_rate <= 0:
      raise RuntimeError(f'espeak_Initialize failed ({self.sample_rate}) with the data in '
                         f'{self.data_path}')
    self.version = lib.espeak_Info(None).decode()
    self._lib = lib
    self._buffer = bytearray()
    self._callback = _SYNTH_CALLBACK(self._collect)  # referenced: eSpeak keeps the pointer
    lib.espeak_SetSynthCallback(self._callback)
    # libespeak-ng also calls libc's rand(): seeded too, before each utterance.
    self._srand = getattr(ctypes.CDLL(None), 'srand', None)

  def _collect(self, wav, numsamples, events):
    del events
    if numsamples > 0:
      self._buffer += ctypes.string_at(wav, 2 * numsamples)
    return 0

  def synthesize(self, text: str, voice: str, rate: int = 175, pitch: int = 50,
                 word_gap: int = 0, seed: int = 0) -> np.ndarray:
    """int16 samples at `self.sample_rate` of `text` read by `voice` ('en-us+m3').

    The audio is a function of the arguments and of every earlier call in this process.
    """
    code = self._lib.espeak_SetVoiceByName(voice.encode())
    if code != 0:
      raise UserError(f'eSpeak has no voice {voice!r} (error {code})')
    for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_WORDGAP, word_gap),
                             (_VOLUME, VOLUME)):
      self._lib.espeak_SetParameter(parameter, value, 0)
    self._lib.espeak_ng_SetRandSeed(seed)
    if self._srand is not None:
      self._srand(ctypes.c_uint(seed))
    self._buffer = bytearray()
    blob = text.encode() + b'\0'
    code = self._lib.espeak_Synth(blob, len(blob), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None,
                                  None)
    if code != 0:
      raise RuntimeError(f'espeak_Synth failed ({code}) on {text!r} with {voice!r}')
    return np.frombuffer(bytes(self._buffer), np.int16)


_ENGINE: Optional[Espeak] = None


def engine(data_path: Optional[str] = None) -> Espeak:
  """This process's eSpeak, initialised on first use with `data_path` (default: the wheel's
  voice data). libespeak-ng is initialised once per process: one data folder each."""
  global _ENGINE
  if _ENGINE is None:
    _ENGINE = Espeak(data_path)
  elif data_path and os.path.realpath(data_path) != os.path.realpath(_ENGINE.data_path):
    raise RuntimeError(f'eSpeak was initialised with {_ENGINE.data_path}, not {data_path}')
  return _ENGINE


def whispered_variant(variant_text: str, whisper_text: str, name: str) -> str:
  """A variant file: `variant_text` (a variant's file) with its voicing, breath and echo
  lines replaced by `whisper_text`'s (eSpeak's 'whisper' variant) voicing and breath lines,
  and named `name`."""
  def key(line):
    return line.split()[0] if line.split() else ''
  kept = [line for line in variant_text.splitlines()
          if key(line) not in WHISPER_KEYS + ('echo', 'name')]
  taken = [line for line in whisper_text.splitlines() if key(line) in WHISPER_KEYS]
  missing = set(WHISPER_KEYS) - {key(line) for line in taken}
  if missing:
    raise ValueError(f'the whisper variant has no {sorted(missing)} line')
  return '\n'.join([kept[0], f'name {name}'] + kept[1:] + ['', '// whispered'] + taken) + '\n'


def whisper_data_dir(dest: str, whispered: tuple[str, ...]) -> str:
  """DEST: eSpeak's data folder (symbolic links to the wheel's) whose voices/!v also holds
  '<variant>-whisper' for each of `whispered`. Returns dest."""
  data = _loader().get_data_path()
  for name in os.listdir(data):
    if name != 'voices':
      os.symlink(os.path.join(data, name), os.path.join(dest, name))
  os.makedirs(os.path.join(dest, 'voices'))
  for name in os.listdir(os.path.join(data, 'voices')):
    if name != '!v':
      os.symlink(os.path.join(data, 'voices', name), os.path.join(dest, 'voices', name))
  source, variants = os.path.join(data, 'voices', '!v'), os.path.join(dest, 'voices', '!v')
  os.makedirs(variants)
  for name in os.listdir(source):
    os.symlink(os.path.join(source, name), os.path.join(variants, name))

  def read(name):
    with open(os.path.join(source, name), encoding='utf-8', errors='replace') as f:
      return f.read()
  whisper = read('whisper')
  for variant in whispered:
    name = variant + WHISPER_SUFFIX
    with open(os.path.join(variants, name), 'w', encoding='utf-8') as f:
      f.write(whispered_variant(read(variant), whisper, name))
  return dest


# ---------------------------------------------------------------------------------------------
# Rendering

def coloured_noise(n: int, colour: str, sample_rate: int,
                   rng: np.random.Generator) -> np.ndarray:
  """n samples of unit-power Gaussian noise whose power spectrum falls as 1 / f**alpha
  (NOISE_COLOURS: 0 white, 1 pink, 2 brown), flat below NOISE_FLOOR_HZ."""
  noise = rng.standard_normal(n)
  alpha = NOISE_COLOURS[colour]
  if alpha and n > 1:
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), NOISE_FLOOR_HZ)
    spectrum = np.fft.rfft(noise) * freqs ** (-alpha / 2)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
  return noise / max(np.sqrt(np.mean(noise ** 2)), 1e-12)


def render(u: Utterance, sample_rate: int, data_path: Optional[str] = None) -> np.ndarray:
  """The utterance as written: int16 samples at `sample_rate`, synthesized by this process's
  eSpeak (reading `data_path`), resampled, padded, noised and scaled to its peak level."""
  import soxr  # pylint: disable=g-import-not-at-top
  espeak = engine(data_path)
  raw = espeak.synthesize(u.transcript, u.voice, u.rate, u.pitch, u.word_gap, u.seed)
  speech = soxr.resample(raw.astype(np.float64) / 32768.0, espeak.sample_rate, sample_rate)
  power = float(np.mean(speech ** 2)) if len(speech) else 0.0
  if power <= 0.0:
    raise RuntimeError(f'eSpeak gave silence for {u.transcript!r} with {u.voice!r}')
  lead, tail = (int(round(p * sample_rate)) for p in u.pad)
  audio = np.concatenate([np.zeros(lead), speech, np.zeros(tail)])
  rng = np.random.default_rng(u.seed)
  noise = coloured_noise(len(audio), u.colour, sample_rate, rng)
  audio += noise * np.sqrt(power / 10 ** (u.snr_db / 10))
  audio *= 10 ** (u.peak_db / 20) / np.max(np.abs(audio))
  return np.round(audio * 32767).astype(np.int16)


def _render_chunk(folder: str, sample_rate: int, chunk: list[Utterance],
                  data_path: Optional[str] = None) -> tuple[list[int], int, str]:
  """Writes a chunk's WAVs under `folder`; returns their lengths in samples, eSpeak's native
  sample rate and its version."""
  import soundfile  # pylint: disable=g-import-not-at-top
  lengths = []
  for u in chunk:
    audio = render(u, sample_rate, data_path)
    soundfile.write(os.path.join(folder, u.name), audio, sample_rate, subtype='PCM_16',
                    format='WAV')
    lengths.append(len(audio))
  return lengths, engine().sample_rate, engine().version


def _worker() -> None:
  """A worker process's body: a pickled (folder, sample_rate, chunk, data_path) on stdin, the
  pickled result of _render_chunk on stdout."""
  result = _render_chunk(*pickle.load(sys.stdin.buffer))
  sys.stdout.buffer.write(pickle.dumps(result))


def _run_worker(task) -> tuple[list[int], int, str]:
  """Renders a chunk in a new Python process (a new process: a fresh eSpeak)."""
  package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (package_parent, os.environ.get('PYTHONPATH')) if p))
  proc = subprocess.run(
      [sys.executable, '-c', f'from {__name__} import _worker; _worker()'],
      input=pickle.dumps(task), capture_output=True, env=env, check=False)
  if proc.returncode:
    raise RuntimeError(f'spoken digits: a synthesis worker failed (exit {proc.returncode}):\n'
                       + proc.stderr.decode(errors='replace')[-3000:])
  return pickle.loads(proc.stdout)


def build(root: str, spec: SpokenDigitSpec = SpokenDigitSpec(),
          workers: Optional[int] = None) -> str:
  """Writes ROOT/spoken_digits-<key>/{split}.tsv and its WAVs (once); returns that folder.

  Args:
    root: the data directory.
    spec: the dataset's parameters.
    workers: processes synthesizing at once (default: the CPU count). The audio does not
      depend on it.
  """
  spec.check()
  out = os.path.join(root, f'spoken_digits-{spec.key()}')
  if built_dir.is_built(out, 'spec.json'):
    return out
  for module in ('soundfile', 'soxr'):
    if importlib.util.find_spec(module) is None:
      raise UserError(f'spoken digits need {module}: pip install soundfile soxr')
  languages, variants = installed_voices()
  missing = sorted({l.lower() for l in spec.languages} - set(languages)) + sorted(
      (set(spec.train_variants) | set(spec.test_variants)) - set(variants))
  if missing:
    raise UserError(f'spoken digits: eSpeak NG has no language or variant {missing} (its '
                    f'English: {[l for l in languages if l.startswith("en")]}; variants: the '
                    f'files of {os.path.join(_loader().get_data_path(), "voices", "!v")})')
  plans = {split: utterances(spec, split) for split in SPLITS}
  tasks = [(split, plan[i:i + spec.chunk]) for split, plan in plans.items()
           for i in range(0, len(plan), spec.chunk)]
  with built_dir.building(out, 'spec.json') as tmp, tempfile.TemporaryDirectory() as voices:
    data_path = whisper_data_dir(voices, spec.whispered) if spec.whispered else None
    for split in SPLITS:
      os.makedirs(os.path.join(tmp, split))
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    samples = dict.fromkeys(SPLITS, 0)
    # Each chunk in a new process (threads only wait for them), so in a fresh eSpeak.
    pool = concurrent.futures.ThreadPoolExecutor(workers)
    try:
      results = pool.map(_run_worker, [(tmp, spec.sample_rate, chunk, data_path)
                                       for _, chunk in tasks])
      for (split, _), (lengths, native_rate, version) in zip(tasks, results):
        samples[split] += sum(lengths)
    finally:
      pool.shutdown(cancel_futures=True)  # on a failure, start no more chunks
    for split, plan in plans.items():
      with open(os.path.join(tmp, f'{split}.tsv'), 'w', encoding='utf-8') as f:
        f.writelines(f'{u.name}\t{u.transcript}\n' for u in plan)
    meta = dataclasses.asdict(spec) | {
        'voices': {split: spec.voices(split) for split in SPLITS},
        'seconds': {split: round(n / spec.sample_rate, 2) for split, n in samples.items()},
        'synthesizer': f'eSpeak NG {version} (espeakng-loader), {native_rate} Hz, '
                       f'volume {VOLUME}'}
    with open(os.path.join(tmp, 'spec.json'), 'w', encoding='utf-8') as f:
      json.dump(meta, f, indent=1)
  return out
