"""SentencePiece vocabularies, trained on first use and kept in the workdir.

Special ids match the rest of the codebase: pad 0, bos 1, eos 2, unk 3.
"""
import fcntl
import os
import random
from typing import Sequence

import sentencepiece as spm

from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from seq2seq_jax.errors import UserError


def train(sentences: Sequence[str], model_path: str, *, vocab_size: int,
          model_type: str = 'bpe', max_sentences: int = 1_000_000, seed: int = 0) -> str:
  """Trains a model on (a sample of) `sentences` and writes model_path ('.model' file).

  Returns:
    model_path.
  """
  if model_type not in ('bpe', 'unigram', 'word', 'char'):
    raise UserError(f"data.spm_model_type must be bpe, unigram, word or char, got {model_type!r}")
  sample = list(sentences)
  if len(sample) > max_sentences:
    sample = random.Random(seed).sample(sample, max_sentences)
  prefix = model_path[:-len('.model')] if model_path.endswith('.model') else model_path
  tmp_prefix = prefix + '.tmp'
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sample), model_prefix=tmp_prefix, vocab_size=vocab_size,
        model_type=model_type, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
        character_coverage=1.0, input_sentence_size=0, shuffle_input_sentence=False,
        num_threads=os.cpu_count() or 1, minloglevel=2, hard_vocab_limit=False)
  except RuntimeError as e:
    raise UserError(f'sentencepiece training failed: {str(e).splitlines()[-1]}') from None
  os.replace(tmp_prefix + '.model', prefix + '.model')
  os.replace(tmp_prefix + '.vocab', prefix + '.vocab')
  return prefix + '.model'


def load(model_path: str) -> spm.SentencePieceProcessor:
  if not os.path.isfile(model_path):
    raise UserError(f'no sentencepiece model at {model_path} (train first with --mode=train)')
  return spm.SentencePieceProcessor(model_file=model_path)


def train_once(sentences_fn, model_path: str, **kwargs) -> str:
  """Trains unless model_path exists; a file lock makes concurrent processes wait, not race."""
  os.makedirs(os.path.dirname(model_path), exist_ok=True)
  if os.path.isfile(model_path):
    return model_path
  with open(model_path + '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.isfile(model_path):
      train(sentences_fn(), model_path, **kwargs)
  return model_path
