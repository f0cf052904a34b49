"""Speech recognition: a waveform in, its transcript out.

Data (config.data):
  train_tsv, eval_tsv, test_tsv
      per split, a TSV of `audio_path<TAB>transcript` lines (a relative path is relative to
      the TSV's folder); any format libsndfile reads (wav, flac, ogg, ...) through
      `soundfile`. Several channels are averaged; other sample rates are resampled to 16 kHz
      with soxr (its 'VHQ' quality).
  tfds_name, train_split, eval_split, test_split, data_dir, tfds_audio_key, tfds_text_key
      instead of the TSVs: a prepared TFDS dataset, by default LibriSpeech ('librispeech':
      'train_clean100+train_clean360+train_other500', 'dev_clean', 'test_clean'; features
      'speech' (16 kHz int16) and 'text'), read without TensorFlow (array_record; prepare it
      with `tfds build librispeech --file_format=array_record`). Split names join with '+'.
  spoken_digits
      instead of the TSVs: a dict of seq2seq_jax/datasets/spoken_digits.SpokenDigitSpec fields
      ({} for the defaults): connected digit strings spoken by eSpeak NG, built once into
      data_dir (experiments/spoken_digits.py).
  fillets
      instead of the TSVs: a dict of seq2seq_jax/datasets/fillets_speech.FilletsSpec fields ({}
      for the defaults): the Czech voice recordings of Debian's fillets-ng-data-cs with their
      lines (experiments/fillets_czech.py).
  cache_audio
      True (default): every utterance is held in memory as 16-bit samples (32 KB per second);
      False: TFDS utterances stay in the dataset and are read when a batch needs them, so
      memory does not grow with the corpus (LibriSpeech 960 h: 110 GB of samples).
  targets
      'chars' (default): one id per character of `alphabet` (characters outside it are UNK);
      'sentencepiece': SentencePiece units (`spm_vocab_size`, `spm_model_type`, default
      'unigram'), trained on the training transcripts into DIR/spm/speech.model on first use.
      With `model.pretrained` (a pretrained Whisper: pretrained/checkpoints.py) the targets
      are the checkpoint's own tokens whatever this says ('sentencepiece' is refused), with
      the prompt of config.decode.language and config.decode.task ('transcribe' or
      'translate'), and decoding follows Whisper's conventions (pretrained/whisper_tokens.py);
      data.alphabet is not read.
  score_normalizer
      '' (default): hypotheses and references scored as `lowercase` leaves them; 'basic':
      both lower-cased, every punctuation mark, symbol and combining mark (Unicode categories
      P, S, M after NFKC) replaced by a space, whitespace collapsed: openai-whisper's
      BasicTextNormalizer (remove_diacritics=False), for a model that writes punctuation.
  lowercase
      True (default): transcripts are lower-cased (LibriSpeech's are upper case); whitespace
      is collapsed either way. Scoring compares the normalised texts.
  second_buckets
      padded durations in seconds (e.g. (2, 4, 8, 16, 35)): utterances are batched with
      others of their bucket, padded to its length; longer training utterances are dropped
      and counted; longer evaluation ones are padded to a multiple of 32 samples.
  target_len
      padded target length with EOS; longer training targets are dropped (counted).
  bad_pairs
      'error' (default): an unreadable, cut-off or missing audio file, a line without a TAB,
      or audio too short for its transcript (more than `max_chars_per_second`, default 40,
      characters a second) stops the run naming file and line; 'skip': skipped and counted.

Batches carry 'inputs' float32 [batch, samples] in [-1, 1] and 'inputs_mask' [batch, samples]
(true on real samples); the model's audio frontend ('log_mel' or 'audio_conv') computes the
log-mel features inside the jitted step (models/frontends.py). Metrics: 'wer' and 'cer' (word
and character edit distance over the reference's length, in percent, summed over the split)
and 'accuracy' (share of exactly right transcripts); the best checkpoint has the lowest
validation WER.
"""
import functools
import json
import os
import re
import unicodedata
from typing import Any, Sequence

import numpy as np

from seq2seq_jax.data import corpus as corpus_lib
from seq2seq_jax.data import features
from seq2seq_jax.data import spm as spm_lib
from seq2seq_jax.data.vocab import EOS_ID, NUM_SPECIAL
from seq2seq_jax.decoding import search as decoding
from seq2seq_jax.errors import UserError
from seq2seq_jax.pretrained import checkpoints
from seq2seq_jax.tasks import base
from seq2seq_jax.tasks import file_inputs

SAMPLE_RATE = 16_000
TARGETS = ('chars', 'sentencepiece')
SCORE_NORMALIZERS = ('', 'basic')
# The TFDS source's split names when data.train_split etc. are not set: LibriSpeech's.
TFDS_SPLITS = {'train': 'train_clean100+train_clean360+train_other500',
               'validation': 'dev_clean', 'test': 'test_clean'}


class Waveform:
  """An utterance held as 16-bit samples; as an array, float32 in [-1, 1)."""
  __slots__ = ('pcm',)
  dtype = np.dtype(np.float32)

  def __init__(self, pcm: np.ndarray):
    self.pcm = pcm

  @property
  def shape(self) -> tuple[int]:
    return self.pcm.shape

  def __len__(self) -> int:
    return len(self.pcm)

  def __array__(self, dtype=None, copy=None):
    x = self.pcm.astype(np.float32) / 32768.0
    return x if dtype is None else x.astype(dtype)


class LazyWaveform(Waveform):
  """An utterance read from its dataset when a batch needs it (its length known)."""
  __slots__ = ('_load', '_length')

  def __init__(self, load, length: int):  # pylint: disable=super-init-not-called
    self._load, self._length = load, length

  @property
  def shape(self) -> tuple[int]:
    return (self._length,)

  def __len__(self) -> int:
    return self._length

  @property
  def pcm(self) -> np.ndarray:
    return self._load()


def to_pcm16(x: np.ndarray) -> np.ndarray:
  """Float samples in [-1, 1] (or int16) -> int16, clipped."""
  if x.dtype == np.int16:
    return x
  return np.clip(np.round(np.asarray(x, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def wav_shortfall(path) -> tuple[int, int] | None:
  """(bytes the WAV header's data chunk declares, bytes the file holds) of a cut-off RIFF/WAVE
  file; None for an intact one or another format. libsndfile reads a cut-off WAV without
  complaint (a 60-byte file of a 1-second clip reads as 8 samples)."""
  if not isinstance(path, (str, os.PathLike)):
    return None
  with open(path, 'rb') as f:
    head = f.read(12)
    if len(head) < 12 or head[:4] != b'RIFF' or head[8:12] != b'WAVE':
      return None
    while True:
      chunk = f.read(8)
      if len(chunk) < 8:
        return None
      size = int.from_bytes(chunk[4:8], 'little')
      if chunk[:4] == b'data':
        have = os.fstat(f.fileno()).st_size - f.tell()
        return (size, have) if have < size else None
      f.seek(size + (size & 1), os.SEEK_CUR)


def read_audio(path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """An audio file (or file object) as int16 samples at `sample_rate`, mono. A cut-off WAV
  file is an error (ValueError), not a shorter clip."""
  import soundfile  # pylint: disable=g-import-not-at-top
  short = wav_shortfall(path)
  if short is not None:
    raise ValueError(f'the file is cut off: its header declares {short[0]:,} bytes of '
                     f'samples and it holds {short[1]:,}')
  x, rate = soundfile.read(path, dtype='float32', always_2d=True)
  x = x.mean(axis=1)
  if not len(x):
    raise ValueError('no samples')
  if rate != sample_rate:
    import soxr  # pylint: disable=g-import-not-at-top
    x = soxr.resample(x, rate, sample_rate, quality='VHQ')
  return to_pcm16(x)


def to_pcm16_ints(x) -> np.ndarray:
  """Integer samples (TFDS stores LibriSpeech's as int64) -> int16, clipped."""
  return np.clip(np.asarray(x).reshape(-1), -32768, 32767).astype(np.int16)


def _tfds_pcm(source, index: int, key: str) -> np.ndarray:
  return to_pcm16_ints(source[index][key])


class Task(file_inputs.FileToTextTask):
  """See the module docstring; the contract is seq2seq_jax/tasks/base.py."""

  input_kind = 'audio'
  best_metric = 'wer'
  SOURCES = ('tsv', 'spoken_digits', 'fillets', 'tfds')

  def __init__(self, config: Any):
    super().__init__(config)
    d = config.data
    self.lowercase = bool(d.get('lowercase', True))
    self.cache_audio = bool(d.get('cache_audio', True))
    self.targets = str(d.get('targets', 'chars'))
    if self.targets not in TARGETS:
      raise UserError(f'data.targets must be one of {TARGETS}, got {self.targets!r}')
    self.score_normalizer = str(d.get('score_normalizer', ''))
    if self.score_normalizer not in SCORE_NORMALIZERS:
      raise UserError(f'data.score_normalizer must be one of {SCORE_NORMALIZERS}, got '
                      f'{self.score_normalizer!r}')
    self._sp = None
    self.pretrained_tokens = None
    spec = checkpoints.spec_of(config.model) if 'model' in config else ''
    if spec:
      if self.targets == 'sentencepiece':
        raise UserError("data.targets='sentencepiece' and model.pretrained exclude each "
                        "other: a pretrained model's targets are its own tokens")
      self.targets = 'pretrained'
      self.pretrained_tokens = self._tokens_of(spec, config)
      self.tgt_vocab_size = self.pretrained_tokens.vocab_size
    if self.targets == 'sentencepiece':
      self.tgt_vocab_size = int(d.get('spm_vocab_size', 0))
      if self.tgt_vocab_size <= NUM_SPECIAL:
        raise UserError(f"data.targets='sentencepiece' needs data.spm_vocab_size > "
                        f'{NUM_SPECIAL}, got {self.tgt_vocab_size}')
      spm_lib.check_model_type(str(d.get('spm_model_type', 'unigram')))
    seconds = tuple(float(s) for s in d.get('second_buckets', ()))
    if not seconds or min(seconds) <= 0:
      raise UserError(f'data.second_buckets must be positive durations in seconds, got '
                      f'{seconds}')
    self.sample_buckets = tuple(int(np.ceil(s * SAMPLE_RATE)) for s in sorted(seconds))
    rate = config.get('decode', {}).get('max_tokens_per_second', 0.0) if 'decode' in config else 0.0
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate < 0:
      raise UserError(f'decode.max_tokens_per_second must be a number >= 0 (0: no limit), '
                      f'got {rate!r}')
    self.max_tokens_per_second = float(rate)

  def character_targets(self, config: Any) -> bool:
    return not ('model' in config and checkpoints.spec_of(config.model))

  @staticmethod
  def _tokens_of(spec: str, config: Any):
    from seq2seq_jax.pretrained import whisper_tokens  # pylint: disable=g-import-not-at-top
    decode = config.get('decode', {})
    language = str(decode.get('language', '') or '')
    if not language:
      raise UserError('model.pretrained needs the language of the speech: set '
                      'decode.language (e.g. --config.decode.language=en)')
    ckpt = checkpoints.load(spec)
    if ckpt.family != 'whisper':
      raise UserError(f'model.pretrained={spec!r} is a {ckpt.family} checkpoint; the speech '
                      'task reads Whisper')
    return whisper_tokens.WhisperTokens(ckpt.tokenizer, ckpt.config_json, ckpt.vocab_size,
                                        language, str(decode.get('task', 'transcribe')))

  # --- text -------------------------------------------------------------------------------
  def normalize(self, text: str) -> str:
    text = ' '.join(text.split())
    return text.lower() if self.lowercase else text

  def score_text(self, text: str) -> str:
    """A hypothesis or reference as scoring compares it (data.score_normalizer)."""
    text = self.normalize(text)
    if self.score_normalizer == 'basic':
      text = ''.join(' ' if unicodedata.category(c)[0] in 'MSP' else c
                     for c in unicodedata.normalize('NFKC', text))
      text = ' '.join(text.lower().split())
    return text

  def decode_rules(self) -> decoding.Rules | None:
    """Whisper's prompt and suppressed tokens (a pretrained model), and with
    decode.max_tokens_per_second = r > 0 a length limit: at most r tokens per second of the
    row's audio plus one second's worth (r), then EOS (search.Rules.max_new)."""
    t = self.pretrained_tokens
    rate = self.max_tokens_per_second
    limit = (rate / SAMPLE_RATE, rate) if rate > 0 else ()
    if t is None:
      return decoding.Rules(max_new=limit) if limit else None
    return decoding.Rules(t.prefix, t.never, t.never_first, max_new=limit)

  def setup(self, workdir: str) -> None:
    """SentencePiece targets: trains the model on the training transcripts into
    workdir/spm/speech.model on first use; loads it on resume and in predict mode."""
    if self.targets != 'sentencepiece':
      return
    self._sp, _ = spm_lib.setup(lambda: [t for _, t in self._read_split('train')],
                                os.path.join(workdir, 'spm', 'speech.model'),
                                vocab_size=self.tgt_vocab_size, size_key='data.spm_vocab_size',
                                model_type=str(self.data.get('spm_model_type', 'unigram')),
                                seed=self.seed)

  def encode_text(self, text: str) -> np.ndarray:
    if self.pretrained_tokens is not None:
      return self.pretrained_tokens.encode(text)
    if self._sp is None and self.targets == 'sentencepiece':
      raise RuntimeError('setup(workdir) loads the SentencePiece model first')
    if self._sp is not None:
      return np.asarray(self._sp.encode(text), np.int32)
    return self.vocab.encode(text)[0]

  def decode_target(self, ids: Sequence[int]) -> str:
    if self.pretrained_tokens is not None:
      return self.pretrained_tokens.decode(ids)
    if self._sp is None:
      return super().decode_target(ids)
    out = []
    for i in ids:
      if int(i) == EOS_ID:
        break
      if int(i) >= NUM_SPECIAL:
        out.append(int(i))
    return self._sp.decode(out)

  def score(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    return super().score([self.score_text(h) for h in hyps],
                         [[self.score_text(r) for r in rs] for rs in refs])

  # --- audio ------------------------------------------------------------------------------
  def load_input(self, path: str) -> Waveform:
    return Waveform(read_audio(path))

  def check_pair(self, array, text: str) -> str | None:
    """An utterance too short for its transcript (more than data.max_chars_per_second
    characters a second; speech runs at about 15) is a bad line, not a training example."""
    seconds = len(array) / SAMPLE_RATE
    limit = float(self.data.get('max_chars_per_second', 40))
    if limit and len(text) > limit * seconds:
      return (f'audio too short for its transcript: {seconds:.2f} s for {len(text)} characters '
              f'(data.max_chars_per_second={limit:g})')
    return None

  def _read_split(self, split: str) -> list[tuple[str, str]]:
    if split not in self._lines:
      if self.source.name == 'tfds':
        self._lines[split] = self._read_tfds(split)
      else:
        lines = super()._read_split(split)
        self._lines[split] = [(p, self.normalize(t)) for p, t in lines]
    return self._lines[split]

  def _read_tfds(self, split: str) -> list[tuple[str, str]]:
    """(key, transcript) per utterance of a librispeech-style TFDS split (data/tfds_raw.py:
    tfds.features.Audio needs TensorFlow, so the records are read without feature classes)."""
    name = str(self.data.tfds_name)
    audio_key = str(self.data.get('tfds_audio_key', 'speech'))
    text_key = str(self.data.get('tfds_text_key', 'text'))

    def check(have):
      if not {audio_key, text_key} <= set(have):
        raise UserError(f'{name} has features {have}; the speech task reads '
                        f'{audio_key!r} and {text_key!r} (data.tfds_audio_key, '
                        'data.tfds_text_key)')

    source = self.source.read('tfds', self.data, split, default_splits=TFDS_SPLITS, raw=True,
                              check=check)
    tsplit = source.split
    rate = re.search(r'"sampleRate":\s*"?(\d+)', json.dumps(source.features.get(audio_key, {})))
    if rate and int(rate.group(1)) != SAMPLE_RATE:
      raise UserError(f'{name}: {audio_key!r} is sampled at {rate.group(1)} Hz; the speech '
                      f'task reads {SAMPLE_RATE} Hz')
    items, skipped = [], 0
    for i, ex in source.records(256):
      if audio_key not in ex or text_key not in ex:
        raise UserError(f'{name}/{tsplit}: record {i} has no {audio_key!r} or {text_key!r} '
                        f'(it has {sorted(ex)})')
      text = self.normalize(corpus_lib.text_of(ex[text_key][0]) if ex[text_key] else '')
      pcm = to_pcm16_ints(ex[audio_key])
      if not text or not len(pcm):
        skipped += 1
        continue
      k = f'tfds:{name}/{tsplit}/{i}'
      self._arrays[k] = (Waveform(pcm) if self.cache_audio else LazyWaveform(
          functools.partial(_tfds_pcm, source, i, audio_key), len(pcm)))
      items.append((k, text))
    if not items:
      raise UserError(f'tfds:{name}/{tsplit}: no utterances with transcripts')
    note = f' ({skipped} empty skipped)' if skipped else ''
    hours = sum(len(self._arrays[k]) for k, _ in items) / SAMPLE_RATE / 3600
    base.log(f'{split}: {len(items):,} utterances, {hours:.2f} h from {source.origin}{note}')
    return items

  # --- the trainer's interface -------------------------------------------------------------
  def _examples(self, lines) -> base.Examples:
    return [self._arrays[p] for p, _ in lines], [self.encode_text(t) for _, t in lines]

  def dummy_batch(self, rows: int) -> dict[str, np.ndarray]:
    n = self.sample_buckets[0]
    return {'inputs': np.zeros((rows, n), np.float32), 'inputs_mask': np.ones((rows, n), bool),
            'decoder_inputs': np.zeros((rows, 8), np.int32)}

  def make_batcher(self, sources, targets, *, batch_size, seed, shuffle, process_index=0,
                   process_count=1):
    return features.FeatureBatcher(sources, targets, batch_size=batch_size,
                                   target_len=self.target_len, seed=seed, shuffle=shuffle,
                                   frame_buckets=self.sample_buckets,
                                   process_index=process_index, process_count=process_count)

  def collate_sources(self, sources, rows):
    return features.collate_inputs(sources, rows, self.sample_buckets)

  def target_tokens(self, ids: Sequence[int]) -> list[str]:
    if self.pretrained_tokens is not None:
      return self.pretrained_tokens.pieces(ids)
    if self._sp is None:
      return super().target_tokens(ids)
    out = []
    for i in ids:
      if int(i) == EOS_ID:
        break
      out.append(self._sp.id_to_piece(int(i)))
    return out

