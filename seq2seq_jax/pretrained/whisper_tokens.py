"""Whisper's tokens as a task's targets: its tokenizer, prompt and suppressed tokens, in the
codebase's id conventions.

The trainer, the batchers and the searches reserve ids 0, 1, 2 for PAD, BOS and EOS
(data/vocab.py); in Whisper's vocabulary those are the text tokens '!', '"' and '#'. Rather
than teach every step another convention, the model's vocabulary is Whisper's with three
swaps (`to_model`, its own inverse):

  PAD 0 <-> <|startoflm|>            (never a target, never emitted: suppressed)
  BOS 1 <-> <|startoftranscript|>    (the decoder's first input, as Whisper's)
  EOS 2 <-> <|endoftext|>            (ends a transcript, as Whisper's)

so the embedding rows are permuted once when the weights are loaded
(checkpoints.params_for_task) and every step, the loss and the searches run unchanged. A
target is Whisper's prompt after <|startoftranscript|>: <|lang|> <|task|> <|notimestamps|>,
then the text's tokens (with a leading space, as Whisper writes a transcript's first word),
then EOS: Hugging Face's fine-tuning labels (the three prompt tokens are in the loss). When
decoding, `rules()` forces the prompt (decoding/search.py: Rules) and applies Whisper's
suppression: config.json's suppress_ids and the task tokens every step
(faster-whisper's get_suppressed_tokens), suppress_ids_begin at the first free step
(suppress_blank).
"""
from typing import Any, Sequence

import numpy as np

from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seq2seq_jax.errors import UserError

TASKS = ('transcribe', 'translate')


class WhisperTokens:
  """Whisper's tokenizer in the model's token order (see the module docstring).

  Args:
    tokenizer_path: tokenizer.json.
    config_json: the checkpoint's config.json (suppress_ids, suppress_ids_begin; or Hugging
      Face's suppress_tokens, begin_suppress_tokens).
    vocab_size: rows of the checkpoint's embedding.
    language: the prompt's language code (decode.language, e.g. 'en', 'cs').
    task: 'transcribe' or 'translate' (decode.task).
  """

  def __init__(self, tokenizer_path: str, config_json: dict[str, Any], vocab_size: int,
               language: str, task: str = 'transcribe'):
    from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
    from seq2seq_jax.pretrained import whisper  # pylint: disable=g-import-not-at-top
    if not tokenizer_path:
      raise UserError('model.pretrained: the checkpoint has no tokenizer.json')
    self.tokenizer = Tokenizer.from_file(tokenizer_path)
    if task not in TASKS:
      raise UserError(f'decode.task must be one of {TASKS}, got {task!r}')
    self.eot = self._id('<|endoftext|>')
    sot = self._id('<|startoftranscript|>')
    lang = self.tokenizer.token_to_id(f'<|{language}|>')
    if lang is None:
      known = sorted(t[2:-2] for t in self.tokenizer.get_vocab()
                     if t.startswith('<|') and t.endswith('|>') and 2 <= len(t) - 4 <= 3
                     and t[2:-2].isalpha() and t[2:-2].islower())
      raise UserError(f'decode.language={language!r} is not a language of this checkpoint '
                      f'(known: {", ".join(known) or "none"})')
    pad = next((self.tokenizer.token_to_id(t) for t in ('<|startoflm|>', '<|nocaptions|>')
                if self.tokenizer.token_to_id(t) is not None), None)
    if pad is None:
      raise UserError('tokenizer.json has neither <|startoflm|> nor <|nocaptions|> (the '
                      'token that stands for padding)')
    swaps = {PAD_ID: pad, BOS_ID: sot, EOS_ID: self.eot}
    if min(swaps.values()) <= max(swaps):
      raise UserError('tokenizer.json: Whisper\'s special tokens are expected after its text')
    perm = np.arange(vocab_size)
    for ours, theirs in swaps.items():
      perm[ours], perm[theirs] = theirs, ours
    self.to_model = perm          # model id -> Whisper id (and back: the swaps are disjoint)
    self.vocab_size = vocab_size
    whisper_prompt = [sot, lang, self._id(f'<|{task}|>'), self._id('<|notimestamps|>')]
    self.prefix = tuple(int(perm[i]) for i in whisper_prompt[1:])
    never = set(whisper.suppressed_ids(self.tokenizer, config_json)) | {pad, sot}
    self.never = tuple(sorted(int(perm[i]) for i in never if i < vocab_size))
    begin = config_json.get('suppress_ids_begin', config_json.get('begin_suppress_tokens'))
    self.never_first = tuple(sorted(int(perm[int(i)]) for i in (begin or ())))

  def _id(self, token: str) -> int:
    i = self.tokenizer.token_to_id(token)
    if i is None:
      raise UserError(f'tokenizer.json has no token {token!r}')
    return i

  def encode(self, text: str) -> np.ndarray:
    """The target ids of a transcript: the prompt's tail, then the text (no EOS)."""
    ids = self.tokenizer.encode(' ' + text.strip(), add_special_tokens=False).ids
    return np.asarray(self.prefix + tuple(int(self.to_model[i]) for i in ids), np.int32)

  def text_ids(self, ids: Sequence[int]) -> list[int]:
    """Whisper's text token ids of a model output, up to EOS (prompt and specials dropped)."""
    out = []
    for i in ids:
      i = int(i)
      if i == EOS_ID:
        break
      w = int(self.to_model[i]) if 0 <= i < self.vocab_size else self.eot
      if w < self.eot:
        out.append(w)
    return out

  def decode(self, ids: Sequence[int]) -> str:
    """A model output's text, as faster-whisper decodes it (text tokens, stripped)."""
    return self.tokenizer.decode(self.text_ids(ids)).strip()

  def pieces(self, ids: Sequence[int]) -> list[str]:
    """One string per output position before EOS (attention-map labels)."""
    out = []
    for i in ids:
      if int(i) == EOS_ID:
        break
      w = int(self.to_model[int(i)])
      out.append(self.tokenizer.id_to_token(w) or '?')
    return out
