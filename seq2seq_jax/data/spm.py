"""SentencePiece vocabularies, trained on first use and kept in the workdir.

Special ids match the rest of the codebase (data/vocab.py): pad 0, bos 1, eos 2, unk 3.
A model is trained once, from a sample of the training data, and then only loaded: on
resume and in predict mode the ids must be exactly those the checkpoint was trained with.
"""
import fcntl
import json
import os
import random
from typing import Callable, Iterable

import sentencepiece as spm

from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from seq2seq_jax.errors import UserError

MODEL_TYPES = ('bpe', 'unigram', 'word', 'char')


def check_model_type(model_type: str) -> None:
  if model_type not in MODEL_TYPES:
    raise UserError(f'data.spm_model_type must be one of {MODEL_TYPES}, got {model_type!r}')


def train(sentences: Iterable[str], model_path: str, *, vocab_size: int,
          model_type: str = 'bpe', max_sentences: int = 1_000_000, seed: int = 0) -> str:
  """Trains a model on (a sample of) `sentences`; writes model_path and its .vocab.

  Args:
    sentences: training text, one sentence per item (any iterable: streamed).
    model_path: where the model goes; must end in '.model'.
    vocab_size: pieces including the 4 special tokens; an upper bound (a corpus too
      small to fill it gives a smaller model rather than an error).
    model_type: 'bpe' (Sennrich et al. 2016, as in Vaswani et al. 2017), 'unigram'
      (Kudo 2018), 'word' (whitespace words: the fixed word vocabularies of Sutskever et
      al. 2014 / Bahdanau et al. 2015) or 'char'.
    max_sentences: at most this many sentences, sampled uniformly with `seed`.
    seed: sampling seed.

  Returns:
    model_path.
  """
  check_model_type(model_type)
  if not model_path.endswith('.model'):
    raise ValueError(f'model_path must end in .model, got {model_path}')
  sample = _sample((s for s in sentences if s), max_sentences, seed)
  if not sample:
    raise UserError(f'no training sentences for the sentencepiece model {model_path}')
  prefix = model_path[:-len('.model')]
  tmp_prefix = f'{prefix}.tmp{os.getpid()}'
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sample), model_prefix=tmp_prefix, vocab_size=vocab_size,
        model_type=model_type, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
        # Every character seen in training gets a piece; a rarer-character cut-off is for
        # scripts with thousands of characters (use model_type='char' or unigram there).
        character_coverage=1.0,
        input_sentence_size=0, shuffle_input_sentence=False,  # we sampled already
        hard_vocab_limit=False, num_threads=os.cpu_count() or 1, minloglevel=2)
  except RuntimeError as e:
    raise UserError(f'sentencepiece training failed: {str(e).strip().splitlines()[-1]}') from None
  os.replace(tmp_prefix + '.vocab', prefix + '.vocab')
  os.replace(tmp_prefix + '.model', model_path)  # last: its existence means "done"
  return model_path


def _sample(items: Iterable[str], k: int, seed: int) -> list[str]:
  """A uniform sample of k items in one pass, holding only k (reservoir sampling, Vitter's
  algorithm R): a corpus of millions of sentences is streamed, never held. All items, in
  order, when there are at most k."""
  rng = random.Random(seed)
  out: list[str] = []
  for n, item in enumerate(items):
    if n < k:
      out.append(item)
    else:
      j = rng.randrange(n + 1)
      if j < k:
        out[j] = item
  return out


def load(model_path: str) -> spm.SentencePieceProcessor:
  """Loads a trained model; UserError if there is none."""
  if not os.path.isfile(model_path):
    raise UserError(f'no sentencepiece model at {model_path} (train first with --mode=train)')
  return spm.SentencePieceProcessor(model_file=model_path)


def _settings_path(model_path: str) -> str:
  return model_path[:-len('.model')] + '.json'


def train_once(sentences_fn: Callable[[], Iterable[str]], model_path: str, *, vocab_size: int,
               model_type: str = 'bpe', max_sentences: int = 1_000_000, seed: int = 0) -> bool:
  """Trains unless model_path exists; concurrent callers wait on a file lock, not race.

  The settings a model was trained with are kept beside it (.json); asking for other
  settings later is a UserError, because the ids would no longer match the checkpoints
  trained with the existing model.

  Args:
    sentences_fn: returns the training sentences; called only when training is needed
      (so predict mode and resumed runs never read the corpus).
    model_path: '<dir>/<name>.model'.
    vocab_size: see train().
    model_type: see train().
    max_sentences: see train().
    seed: see train().

  Returns:
    True if this call trained the model, False if it existed.
  """
  settings = {'vocab_size': int(vocab_size), 'model_type': model_type}
  os.makedirs(os.path.dirname(model_path) or '.', exist_ok=True)
  trained = False
  if not os.path.isfile(model_path):
    with open(model_path + '.lock', 'w') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even on a crash
      if not os.path.isfile(model_path):
        sentences = sentences_fn()
        with open(_settings_path(model_path), 'w') as f:  # before the model appears
          json.dump(settings, f)
        train(sentences, model_path, vocab_size=vocab_size, model_type=model_type,
              max_sentences=max_sentences, seed=seed)
        trained = True
  if os.path.isfile(_settings_path(model_path)):
    with open(_settings_path(model_path)) as f:
      saved = json.load(f)
    diff = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
    if diff:
      k, (old, new) = next(iter(diff.items()))
      raise UserError(f'{model_path} was trained with {k}={old!r} but the config asks for '
                      f'{new!r}; its ids are what this workdir\'s checkpoints were trained on. '
                      'Use a new --workdir, or the old setting.')
  return trained


def setup(sentences_fn: Callable[[], Iterable[str]], model_path: str, *, vocab_size: int,
          size_key: str, model_type: str = 'bpe', max_sentences: int = 1_000_000,
          seed: int = 0) -> tuple[spm.SentencePieceProcessor, bool]:
  """A task's SentencePiece model: trained on first use (train_once), else loaded, and checked.

  Every task that tokenizes with SentencePiece sets it up here, so the checks are the same
  everywhere: at most `vocab_size` pieces (the model's tables have that many rows) and the
  special ids of data/vocab.py.

  Args:
    sentences_fn: see train_once().
    model_path: '<workdir>/spm/<name>.model'.
    vocab_size: see train().
    size_key: the config key that sets vocab_size, for messages ('data.vocab_size').
    model_type: see train().
    max_sentences: see train().
    seed: see train().

  Returns:
    (the loaded model, True if this call trained it).
  """
  trained = train_once(sentences_fn, model_path, vocab_size=vocab_size, model_type=model_type,
                       max_sentences=max_sentences, seed=seed)
  sp = load(model_path)
  if sp.get_piece_size() > vocab_size:
    raise UserError(f'{model_path} has {sp.get_piece_size()} pieces, more than '
                    f'{size_key}={vocab_size}')
  ids = (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id())
  if ids != (PAD_ID, BOS_ID, EOS_ID, UNK_ID):
    raise UserError(f'{model_path} has pad/bos/eos/unk ids {ids}; this codebase needs '
                    f'{(PAD_ID, BOS_ID, EOS_ID, UNK_ID)}')
  return sp, trained
