"""A pretrained text checkpoint's tokens (Marian, BART, and families like them: T5) as the
sources and targets of the translation and summarization tasks, in the codebase's id
conventions.

Tokenizers, read from the checkpoint directory as the hub ships them, without transformers:
  tokenizer.json                   any family: the `tokenizers` package (BART, T5, ...)
  source.spm, target.spm, vocab.json (+ target_vocab.json)
                                   Marian (OPUS-MT): SentencePiece segments, vocab.json maps
                                   pieces to ids (a piece it lacks is <unk>), </s> appended;
                                   a leading language code such as >>fra<< is one token
  vocab.json + merges.txt          BART without tokenizer.json: a byte-level BPE with
                                   RoBERTa's <s> ... </s> around each text
  spiece.model                     T5 / mT5 without tokenizer.json (mT5 on the hub): its
                                   SentencePiece ids are the checkpoint's (<pad> 0, </s> 1,
                                   <unk> 2), </s> appended
Each text gets the special tokens its tokenizer adds (BART: <s> text </s>; Marian and T5:
text </s>); the final </s> is left to the batcher, which ends every source and target with EOS.
Decoding drops special tokens, as transformers' decode(skip_special_tokens=True). (The Moses
punctuation normalisation MarianTokenizer applies when `sacremoses` is installed is not.)

Ids. The trainer, the batchers and the searches reserve ids 0 (PAD) and 2 (EOS), and start
the decoder from BOS (1). The model's vocabulary is the checkpoint's with at most two swaps
(`model_order`): PAD_ID <-> its pad_token_id and EOS_ID <-> its eos_token_id, so padding,
the source mask and the end of a text work unchanged; the embedding rows, the logits bias and
an untied output projection are permuted once when the weights are loaded
(checkpoints.params_for_task). These families start the decoder from a token that is also
another special token (Marian and T5: <pad>; BART: </s>), so the model reads its
decoder_start_token_id at target position 0 whatever the batch holds there
(`model.decoder_start`, set from config.json), and BOS's id 1 is an ordinary token of the
checkpoint that the searches may emit. A forced_bos_token_id (bart-large) is a forced first
output token (decoding.Rules) and, as the tokenizer writes it, the targets' first token.
"""
import json
import os
from typing import Any, Sequence

import numpy as np

from seq2seq_jax.data.vocab import EOS_ID, PAD_ID
from seq2seq_jax.errors import UserError

_SPIECE = '\u2581'


def model_order(size: int, pad: int, eos: int) -> np.ndarray:
  """model id -> checkpoint id: the identity but for PAD_ID <-> pad and EOS_ID <-> eos."""
  if pad == eos or not (0 <= pad < size and 0 <= eos < size):
    raise UserError(f'config.json: pad_token_id {pad} and eos_token_id {eos} must be two '
                    f'ids of the vocabulary of {size}')
  order = np.arange(size)
  for ours, theirs in ((PAD_ID, pad), (EOS_ID, eos)):
    at = int(np.flatnonzero(order == theirs)[0])
    order[ours], order[at] = order[at], order[ours]
  return order


def special_ids(cfg: dict[str, Any]) -> tuple[int, int, int]:
  """(pad, eos, decoder start) of a config.json, in the checkpoint's ids."""
  if cfg.get('pad_token_id') is None or cfg.get('eos_token_id') is None:
    raise UserError('config.json needs pad_token_id and eos_token_id')
  pad, eos = int(cfg['pad_token_id']), int(cfg['eos_token_id'])
  start = cfg.get('decoder_start_token_id')
  return pad, eos, pad if start is None else int(start)


def decoder_start(cfg: dict[str, Any], tgt_vocab: int) -> int:
  """The model's `decoder_start`: the decoder start token in the model's ids."""
  pad, eos, start = special_ids(cfg)
  return int(np.argsort(model_order(tgt_vocab, pad, eos))[start])


# --- tokenizers: text <-> the checkpoint's ids --------------------------------------------
class _Tokenizers:
  """tokenizer.json, or BART's vocab.json + merges.txt, through the `tokenizers` package."""

  def __init__(self, directory: str, cfg: dict[str, Any]):
    from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
    path = os.path.join(directory, 'tokenizer.json')
    if os.path.isfile(path):
      self.tok, self.files = Tokenizer.from_file(path), [path]
    else:
      self.tok, self.files = _byte_level_bpe(directory, cfg)
    self.unk = self.tok.token_to_id('<unk>')

  def encode(self, text: str) -> list[int]:
    return self.tok.encode(text).ids

  def decode(self, ids: Sequence[int]) -> str:
    return self.tok.decode(list(ids), skip_special_tokens=True)

  def token(self, i: int) -> str:
    return self.tok.id_to_token(i) or '?'


def _byte_level_bpe(directory: str, cfg: dict[str, Any]):
  """RoBERTa's tokenizer (as transformers' BartTokenizer builds it) from vocab.json +
  merges.txt."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors  # pylint: disable=g-import-not-at-top
  vocab, merges = (os.path.join(directory, f) for f in ('vocab.json', 'merges.txt'))
  tok = Tokenizer(models.BPE.from_file(vocab, merges))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  bos, eos = int(cfg.get('bos_token_id', 0)), int(cfg['eos_token_id'])
  tok.post_processor = processors.RobertaProcessing(
      (tok.id_to_token(eos), eos), (tok.id_to_token(bos), bos), add_prefix_space=False)
  specials = [t for t in ('<s>', '<pad>', '</s>', '<unk>', '<mask>')
              if tok.token_to_id(t) is not None]
  tok.add_special_tokens(specials)
  return tok, [vocab, merges]


class _Marian:
  """MarianTokenizer's encoding and decoding from source.spm / target.spm and vocab.json
  (target_vocab.json: separate target vocabulary), one side of it."""

  def __init__(self, directory: str, side: str):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    from seq2seq_jax.pretrained import hf_text  # pylint: disable=g-import-not-at-top
    target_vocab = os.path.join(directory, 'target_vocab.json')
    separate = os.path.isfile(target_vocab)
    vocab = (target_vocab if side == 'target' and separate
             else os.path.join(directory, 'vocab.json'))
    self.ids = hf_text.read_json(vocab)
    self.tokens = {int(i): t for t, i in self.ids.items()}
    self.sp = spm.SentencePieceProcessor(model_file=os.path.join(directory, f'{side}.spm'))
    # transformers decodes a shared vocabulary's pieces with the source model.
    self.sp_decode = self.sp if separate or side == 'source' else spm.SentencePieceProcessor(
        model_file=os.path.join(directory, 'source.spm'))
    self.files = [os.path.join(directory, f'{side}.spm'), vocab]
    self.unk, self.eos = self.ids['<unk>'], self.ids['</s>']
    self.specials = {self.ids[t] for t in ('<unk>', '</s>', '<pad>') if t in self.ids}

  def encode(self, text: str) -> list[int]:
    code = []
    if text.startswith('>>') and (end := text.find('<<')) != -1:   # a language code
      code, text = [text[:end + 2]], text[end + 2:]
    pieces = code + self.sp.encode(text, out_type=str)
    return [self.ids.get(p, self.unk) for p in pieces] + [self.eos]

  def decode(self, ids: Sequence[int]) -> str:
    pieces = [self.tokens[i] for i in ids if i not in self.specials and i in self.tokens]
    return self.sp_decode.decode_pieces(pieces).replace(_SPIECE, ' ').strip()

  def token(self, i: int) -> str:
    return self.tokens.get(i, '?')


class _SentencePiece:
  """T5's / mT5's spiece.model alone, as transformers' T5Tokenizer reads it: the
  SentencePiece ids are the checkpoint's, </s> is appended; decoding drops the control and
  unknown pieces and ids beyond the SentencePiece model (T5's <extra_id_N> sentinels, the
  embedding's spare rows)."""

  def __init__(self, directory: str, cfg: dict[str, Any]):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    path = os.path.join(directory, 'spiece.model')
    self.sp = spm.SentencePieceProcessor(model_file=path)
    self.files = [path]
    self.size = self.sp.get_piece_size()
    self.eos = int(cfg['eos_token_id'])
    if self.sp.eos_id() != self.eos:
      raise UserError(f'{path}: its </s> is id {self.sp.eos_id()}, config.json\'s '
                      f'eos_token_id {self.eos}')
    self.unk = self.sp.unk_id()

  def encode(self, text: str) -> list[int]:
    return list(self.sp.encode(text)) + [self.eos]

  def decode(self, ids: Sequence[int]) -> str:
    return self.sp.decode([i for i in ids if 0 <= i < self.size and not (
        self.sp.is_control(i) or self.sp.is_unknown(i))])

  def token(self, i: int) -> str:
    return self.sp.id_to_piece(i) if 0 <= i < self.size else '?'


def _tokenizers(directory: str, cfg: dict[str, Any]) -> tuple[Any, Any]:
  """(source side, target side) of the checkpoint's tokenizer."""
  has = lambda *names: all(os.path.isfile(os.path.join(directory, n)) for n in names)
  if has('source.spm', 'target.spm', 'vocab.json') and not has('tokenizer.json'):
    return _Marian(directory, 'source'), _Marian(directory, 'target')
  if has('tokenizer.json') or (cfg.get('model_type') == 'bart'
                               and has('vocab.json', 'merges.txt')):
    tok = _Tokenizers(directory, cfg)
    return tok, tok
  if has('spiece.model') and cfg.get('model_type') in ('t5', 'mt5'):
    tok = _SentencePiece(directory, cfg)
    return tok, tok
  raise UserError(f'model.pretrained={directory!r} has no tokenizer this codebase reads: '
                  'tokenizer.json, Marian\'s source.spm + target.spm + vocab.json, '
                  'BART\'s vocab.json + merges.txt, or T5\'s spiece.model')


# --- the task's view -----------------------------------------------------------------------
class TextTokens:
  """A checkpoint's tokenizer in the model's token order (see the module docstring).

  Args:
    directory: the checkpoint directory.
    cfg: its config.json (generation_config.json's forced_bos_token_id is read too).
    src_vocab, tgt_vocab: the checkpoint's table sizes.
    source_prefix: text put before every source (T5's task prefixes, data.source_prefix).
  """

  def __init__(self, directory: str, cfg: dict[str, Any], src_vocab: int, tgt_vocab: int,
               source_prefix: str = ''):
    pad, eos, _ = special_ids(cfg)
    self.src_to_model = model_order(src_vocab, pad, eos)   # model id -> checkpoint id
    self.to_model = model_order(tgt_vocab, pad, eos)
    self._src_ids, self._tgt_ids = np.argsort(self.src_to_model), np.argsort(self.to_model)
    self.src_vocab_size, self.vocab_size = src_vocab, tgt_vocab
    self.source_prefix = source_prefix
    self.source, self.target = _tokenizers(directory, cfg)
    self.files = sorted(set(self.source.files + self.target.files))
    generation = os.path.join(directory, 'generation_config.json')
    forced = dict(cfg, **(json.load(open(generation)) if os.path.isfile(generation) else {}))
    forced = forced.get('forced_bos_token_id')
    self.prefix = () if forced is None else (int(self._tgt_ids[int(forced)]),)

  def _ids(self, raw: list[int], table: np.ndarray, eos: int) -> np.ndarray:
    if raw and raw[-1] == eos:      # the batcher ends every text with EOS
      raw = raw[:-1]
    for i in raw:
      if not 0 <= i < len(table):
        raise UserError(f'the tokenizer gave id {i}, beyond the checkpoint\'s vocabulary '
                        f'of {len(table)}')
    return table[np.asarray(raw, np.int64)].astype(np.int32)

  def encode_source(self, text: str) -> tuple[np.ndarray, int]:
    """(the model's source ids, without the final EOS; how many are the unknown token)."""
    raw = self.source.encode(self.source_prefix + text)
    unknown = sum(i == self.source.unk for i in raw) if self.source.unk is not None else 0
    return self._ids(raw, self._src_ids, int(self.src_to_model[EOS_ID])), unknown

  def encode_target(self, text: str) -> np.ndarray:
    """The model's target ids of a text, without the final EOS."""
    return self._ids(self.target.encode(text), self._tgt_ids, int(self.to_model[EOS_ID]))

  def _raw(self, ids: Sequence[int]) -> list[int]:
    out = []
    for i in ids:
      i = int(i)
      if i == EOS_ID:
        break
      if i != PAD_ID and 0 <= i < self.vocab_size:
        out.append(int(self.to_model[i]))
    return out

  def decode(self, ids: Sequence[int]) -> str:
    """A model output's text: up to EOS, special tokens dropped."""
    return self.target.decode(self._raw(ids))

  def pieces(self, ids: Sequence[int]) -> list[str]:
    """One string per output token before EOS (attention-map labels)."""
    return [self.target.token(i) for i in self._raw(ids)]

  def rules(self) -> Any:
    """decoding.Rules: the forced first token (forced_bos_token_id), or None."""
    from seq2seq_jax.decoding import search  # pylint: disable=g-import-not-at-top
    return search.Rules(prefix=self.prefix) if self.prefix else None

  def describe(self) -> str:
    """One line for the run's log."""
    files = ', '.join(os.path.basename(f) for f in self.files)
    prefix = f', source prefix {self.source_prefix!r}' if self.source_prefix else ''
    return (f'tokenizer of the pretrained checkpoint: {files} (vocabularies '
            f'{self.src_vocab_size:,} / {self.vocab_size:,}){prefix}')


def for_config(config: Any) -> TextTokens | None:
  """The TextTokens of config.model.pretrained (None without one), with
  config.data.source_prefix; a checkpoint of another kind (Whisper) is a UserError."""
  from seq2seq_jax.pretrained import checkpoints  # pylint: disable=g-import-not-at-top
  spec = checkpoints.spec_of(config.model) if 'model' in config else ''
  if not spec:
    return None
  ckpt = checkpoints.load(spec)
  if ckpt.family not in checkpoints.TEXT_FAMILIES:
    raise UserError(f'model.pretrained={spec!r} is a {ckpt.family} checkpoint; the text '
                    f'tasks read {", ".join(checkpoints.TEXT_FAMILIES)}')
  return TextTokens(ckpt.directory, ckpt.config_json, ckpt.src_vocab_size, ckpt.vocab_size,
                    str(config.data.get('source_prefix', '') or ''))
