"""Summarization: CNN/DailyMail, Gigaword, a user's corpus, or code-to-text from Python source;
word or SentencePiece vocabularies, source OOVs for copying, ROUGE.

Config keys (config.data.*) are those of experiments/common.py summarization_data():
  source            'tfds' | 'files' | 'tsv' | 'pydoc'
  tfds_name, src_feature, tgt_feature, data_dir, train_split, eval_split, test_split
                    a prepared TFDS dataset read without TensorFlow; the features default
                    ('') to 'article' -> 'highlights' for cnn_dailymail and 'document' ->
                    'summary' for gigaword
  train_files, eval_files, test_files / train_tsv, eval_tsv, test_tsv, bad_pairs
                    a user's corpus, read as the translation task reads it
  pydoc             PydocSpec fields (seq2seq_jax/datasets/pydoc_pairs.py): the offline
                    code-to-text corpus, built once under data_dir
  vocab_type        'word' (the most frequent training words, source and target together: See
                    et al. 2017 use one 50k vocabulary) | 'sentencepiece' (spm_model_type)
  vocab_size        the shared table size, special tokens included
  lowercase         lowercase text before tokenizing (See et al. do)
  max_source_len, max_target_len
                    tokens kept of each side (truncation, not dropping; See et al.: 400 / 100)
  buckets           padded source lengths of the training batches (targets are padded to
                    max_target_len + 1)

Words are runs of word characters or single other characters (`\\w+|[^\\w\\s]`): for code,
identifiers stay whole and punctuation splits off; whitespace (and so a function's layout) is
not a token. Outputs are the words joined by single spaces.

Copying (model.copy=True, See et al. 2017, Sec. 2.2): each source's out-of-vocabulary words get
temporary ids tgt_vocab_size + j, j = 0, 1, ... in order of first appearance (at most
model.max_oovs of them; later ones stay UNK). Sources carry these extended ids (the model
embeds them as UNK and copies by them); a target word that is not in the vocabulary but is in
its source gets the source's temporary id, so the loss rewards copying it. Predictions map
temporary ids back to the source's words (decode_prediction). With copy off every OOV is UNK.

Pretrained (model.pretrained: a BART, T5 or Marian checkpoint, pretrained/checkpoints.py): sources
and summaries are the checkpoint's tokens (pretrained/text_tokens.py), truncated at
max_source_len / max_target_len tokens, data.source_prefix before every source text (T5's
'summarize: '); vocab_type and vocab_size are not read, outputs are the tokenizer's text.

Metrics: ROUGE-1/2/L F1 (rouge-score, stemmed) and CodeXGLUE's smoothed sentence BLEU-4,
each x 100, as eval/rouge1, eval/rouge2, eval/rougeL, eval/bleu; the best checkpoint is the
one with the highest ROUGE-L.
"""
import collections
import os
import re
from typing import Any, Sequence

import numpy as np

from seq2seq_jax.metrics import summaries as summary_metrics
from seq2seq_jax.data import corpus as corpus_lib
from seq2seq_jax.data import pipeline
from seq2seq_jax.data import sources
from seq2seq_jax.data import spm as spm_lib
from seq2seq_jax.data import vocab as vocab_lib
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, NUM_SPECIAL, PAD_ID, SPECIALS, UNK_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.pretrained import text_tokens
from seq2seq_jax.tasks import base

SOURCES = ('tfds', 'files', 'tsv', 'pydoc')   # the entries of data/sources.py it reads
SPLITS = ('train', 'validation', 'test')
VOCAB_TYPES = ('word', 'sentencepiece')
_WORD = re.compile(r'\w+|[^\w\s]')
# Source and target features of the TFDS summarization datasets this task knows.
TFDS_FEATURES = {'cnn_dailymail': ('article', 'highlights'), 'gigaword': ('document', 'summary')}
_KEYS = ('source', 'vocab_type', 'vocab_size', 'lowercase', 'max_source_len', 'max_target_len',
         'buckets', 'bad_pairs', 'data_dir', 'eval_batch_size', 'eval_max_examples')
_TFDS_KEYS = ('src_feature', 'tgt_feature')   # beyond the tfds source's own keys


def tokenize(text: str, lowercase: bool = False) -> list[str]:
  """Words and single punctuation characters; whitespace separates and is dropped."""
  return _WORD.findall(text.lower() if lowercase else text)


def source_oovs(words: Sequence[str], in_vocab, max_oovs: int) -> list[str]:
  """The source's out-of-vocabulary words in order of first appearance, at most max_oovs."""
  out: list[str] = []
  for w in words:
    if len(out) == max_oovs:
      break
    if not in_vocab(w) and w not in out:
      out.append(w)
  return out


def _check_config(config: Any, pretrained: bool) -> None:
  d = config.data
  source = d.get('source', None)
  if source not in SOURCES:
    raise UserError(f'data.source must be one of {SOURCES}, got {source!r}')
  for key in _KEYS + sources.get(source).keys + (_TFDS_KEYS if source == 'tfds' else ()):
    if key not in d:
      raise UserError(f'config.data.{key} is missing (task summarization: see '
                      'summarization_data() in experiments/common.py)')
  if pretrained:
    pass     # the checkpoint's vocabulary: vocab_type, vocab_size are not read
  elif d.vocab_type not in VOCAB_TYPES:
    raise UserError(f'data.vocab_type must be one of {VOCAB_TYPES}, got {d.vocab_type!r}')
  elif d.vocab_type == 'sentencepiece':
    spm_lib.check_model_type(d.get('spm_model_type', 'bpe'))
  if not pretrained and int(d.vocab_size) <= NUM_SPECIAL + 4:
    raise UserError(f'data.vocab_size must be the vocabulary size, got {d.vocab_size}')
  for key in ('max_source_len', 'max_target_len'):
    if int(d[key]) < 1:
      raise UserError(f'data.{key} must be >= 1, got {d[key]}')
  if not d.buckets or max(d.buckets) < int(d.max_source_len) + 1:
    raise UserError(f'data.buckets {tuple(d.buckets)} must reach max_source_len + 1 '
                    f'({int(d.max_source_len) + 1}: the source and its EOS)')
  corpus_lib.check_policy(d.bad_pairs)
  model = config.get('model', {})
  if model.get('copy', False) and int(model.get('max_oovs', 0)) < 1:
    raise UserError('model.copy needs model.max_oovs >= 1 (temporary ids per source)')


class Task(base.BaseTask):
  """Summarization of data.source; see the module docstring."""

  best_metric = 'rougeL'
  best_mode = 'max'

  def __init__(self, config: Any):
    # model.pretrained: the checkpoint's tokenizer and vocabularies (pretrained/text_tokens.py)
    self.pretrained_tokens = text_tokens.for_config(config)
    _check_config(config, self.pretrained_tokens is not None)
    super().__init__(config)
    d = config.data
    if self.pretrained_tokens is not None:
      self.src_vocab_size = self.pretrained_tokens.src_vocab_size
      self.tgt_vocab_size = self.pretrained_tokens.vocab_size
    else:
      self.src_vocab_size = self.tgt_vocab_size = int(d.vocab_size)
    self.lowercase = bool(d.lowercase)
    self.max_source_len, self.max_target_len = int(d.max_source_len), int(d.max_target_len)
    model = config.get('model', {})
    self.copy = bool(model.get('copy', False))
    self.max_oovs = int(model.get('max_oovs', 0)) if self.copy else 0
    self.buckets = tuple(sorted(int(b) for b in d.buckets))
    self.source = sources.select(d, SOURCES, d.source)
    self._pairs: dict[str, list[tuple[str, str]]] = {}
    self._words: dict[str, int] | None = None      # word -> id (vocab_type='word')
    self._symbols: list[str] = []
    self._sp = None

  # --- corpora ---------------------------------------------------------------------------------
  def pairs(self, split: str) -> list[tuple[str, str]]:
    """(source text, summary text) of a split, read once."""
    if split not in SPLITS:
      raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    if split not in self._pairs:
      self._pairs[split] = self._read(split)
    return self._pairs[split]

  def _read(self, split: str) -> list[tuple[str, str]]:
    kw = dict(features=self._tfds_features(), check=self._check_tfds) if self.source.tfds else {}
    c = self.source.read('pairs', self.data, split, **kw).read()
    if not c.pairs:
      raise UserError(f'{c.origin}: no (source, summary) pairs')
    note = f' ({c.skipped} bad pair(s) skipped)' if c.skipped else ''
    base.log(f'{split}: {len(c.pairs):,} pairs from {c.origin}{note}')
    return c.pairs

  def _tfds_features(self) -> tuple[str, str]:
    """The TFDS source's (source, summary) features: data.src_feature / tgt_feature, else
    those of a dataset in TFDS_FEATURES."""
    d = self.data
    known = TFDS_FEATURES.get(d.tfds_name.partition('/')[0], ('', ''))
    src_key, tgt_key = d.src_feature or known[0], d.tgt_feature or known[1]
    if not (src_key and tgt_key):
      raise UserError(f'data.src_feature and data.tgt_feature must name the features of '
                      f'{d.tfds_name} (known defaults: {TFDS_FEATURES})')
    return src_key, tgt_key

  def _check_tfds(self, have: list[str]) -> None:
    src_key, tgt_key = self._tfds_features()
    if {src_key, tgt_key} - set(have):
      raise UserError(f'{self.data.tfds_name} has features {have}; data.src_feature='
                      f'{src_key!r} and data.tgt_feature={tgt_key!r} must be two of them')

  # --- vocabulary ------------------------------------------------------------------------------
  def setup(self, workdir: str) -> None:
    """Counts the training words into workdir/vocab.txt (or trains SentencePiece into
    workdir/spm/) on first use; loads it on resume and in predict mode. A pretrained model
    brings its own tokenizer."""
    if self.pretrained_tokens is not None:
      base.log(self.pretrained_tokens.describe())
      return
    if self.data.vocab_type == 'sentencepiece':
      self._sp, _ = spm_lib.setup(
          lambda: [s for p in self.pairs('train') for s in p],
          os.path.join(workdir, 'spm', 'shared.model'), vocab_size=self.src_vocab_size,
          size_key='data.vocab_size', model_type=self.data.get('spm_model_type', 'bpe'),
          max_sentences=int(self.data.get('spm_train_sentences', 1_000_000)), seed=self.seed)
      return

    def count():
      counts = collections.Counter()
      for s, t in self.pairs('train'):
        counts.update(self._words_of(s, self.max_source_len))
        counts.update(self._words_of(t, self.max_target_len))
      return counts

    words, counts = vocab_lib.word_list(os.path.join(workdir, 'vocab.txt'), count,
                                        self.tgt_vocab_size)
    if counts is not None:
      seen = sum(counts.values())
      covered = sum(counts[w] for w in words)
      base.log(f'vocabulary: {len(words):,} of {len(counts):,} training words (table of '
               f'{self.tgt_vocab_size:,}), covering {100 * covered / max(seen, 1):.1f}% of tokens')
    self._symbols = list(SPECIALS) + words
    self._words = {w: i + NUM_SPECIAL for i, w in enumerate(words)}

  def _need_setup(self) -> None:
    if self._words is None and self._sp is None and self.pretrained_tokens is None:
      raise RuntimeError('Task.setup(workdir) must run before the data is used')

  def _words_of(self, text: str, limit: int) -> list[str]:
    return tokenize(text, self.lowercase)[:limit]

  # --- encoding --------------------------------------------------------------------------------
  def encode_pair(self, source: str, target: str | None = None):
    """(source ids, target ids or None, number of UNK source tokens): extended ids if copying."""
    self._need_setup()
    tokens = self.pretrained_tokens
    if tokens is not None:
      src, unknown = tokens.encode_source(source.lower() if self.lowercase else source)
      tgt = None
      if target is not None:
        tgt = tokens.encode_target(target.lower() if self.lowercase else target)
        tgt = tgt[:self.max_target_len]
      return src[:self.max_source_len], tgt, unknown
    if self._sp is not None:
      text_s = source.lower() if self.lowercase else source
      src = np.asarray(self._sp.encode(text_s)[:self.max_source_len], np.int32)
      tgt = None
      if target is not None:
        text_t = target.lower() if self.lowercase else target
        tgt = np.asarray(self._sp.encode(text_t)[:self.max_target_len], np.int32)
      return src, tgt, int(np.count_nonzero(src == UNK_ID))
    words = self._words_of(source, self.max_source_len)
    oov = {w: self.tgt_vocab_size + j
           for j, w in enumerate(source_oovs(words, self._words.__contains__, self.max_oovs))}
    src = np.asarray([self._words.get(w, oov.get(w, UNK_ID)) for w in words], np.int32)
    unknown = sum(w not in self._words for w in words)
    tgt = None
    if target is not None:
      tgt = np.asarray([self._words.get(w, oov.get(w, UNK_ID))
                        for w in self._words_of(target, self.max_target_len)], np.int32)
    return src, tgt, unknown

  def _encode_pairs(self, pairs) -> base.Examples:
    src, tgt = [], []
    for s, t in pairs:
      a, b, _ = self.encode_pair(s, t)
      if len(a) and len(b):
        src.append(a)
        tgt.append(b)
    return src, tgt

  # --- the trainer's data ----------------------------------------------------------------------
  def dummy_batch(self, rows: int) -> dict[str, np.ndarray]:
    z = np.zeros((rows, 8), np.int32)
    return {'inputs': z, 'decoder_inputs': z}

  def train_data(self) -> base.Examples:
    """Reads the evaluation splits first (a bad one stops the run before step 0)."""
    self._need_setup()
    for split in ('validation', 'test'):
      self.pairs(split)
    out = self._encode_pairs(self.pairs('train'))
    del self._pairs['train']
    return out

  def make_batcher(self, sources, targets, *, batch_size, seed, shuffle, process_index=0,
                   process_count=1):
    """Source-length buckets (data.buckets); targets padded to max_target_len + 1."""
    return pipeline.TokenBatcher(sources, targets, batch_size=batch_size, buckets=self.buckets,
                                 seed=seed, shuffle=shuffle, process_index=process_index,
                                 process_count=process_count,
                                 target_length=self.max_target_len + 1)

  def eval_loss_data(self, split: str) -> base.Examples:
    return self._encode_pairs(self.eval_subset(self.pairs(split)))

  def eval_set(self, split: str) -> pipeline.EvalSet:
    self._need_setup()
    pairs = self.eval_subset(self.pairs(split))
    return pipeline.EvalSet(sources=[self.encode_pair(s)[0] for s, _ in pairs],
                            texts=[s for s, _ in pairs], references=[[t] for _, t in pairs])

  # --- text in, text out -----------------------------------------------------------------------
  def encode_source(self, line: str) -> tuple[np.ndarray, int]:
    src, _, unknown = self.encode_pair(line)
    return src, unknown

  def _output_tokens(self, ids: Sequence[int], source_text: str | None) -> list[str]:
    self._need_setup()
    if self.pretrained_tokens is not None:
      return [self.pretrained_tokens.decode(ids)]
    ids = [int(i) for i in ids]
    if EOS_ID in ids:
      ids = ids[:ids.index(EOS_ID)]
    ids = [i for i in ids if i not in (PAD_ID, BOS_ID)]
    if self._sp is not None:
      return [self._sp.decode(ids)]
    oovs = []
    if source_text is not None and self.copy:
      oovs = source_oovs(self._words_of(source_text, self.max_source_len),
                         self._words.__contains__, self.max_oovs)
    out = []
    for i in ids:
      if i < len(self._symbols):
        out.append(self._symbols[i])
      elif 0 <= i - self.tgt_vocab_size < len(oovs):
        out.append(oovs[i - self.tgt_vocab_size])
      else:
        out.append(SPECIALS[UNK_ID])
    return out

  def decode_target(self, ids: Sequence[int]) -> str:
    """Output ids -> words joined by spaces (temporary copy ids become '<unk>': use
    decode_prediction with the source to recover them)."""
    return ' '.join(self._output_tokens(ids, None))

  def decode_prediction(self, ids: Sequence[int], source_text: str) -> str:
    """Output ids -> text, temporary copy ids mapped back to the source's words."""
    return ' '.join(self._output_tokens(ids, source_text))

  def target_tokens(self, ids: Sequence[int]) -> list[str]:
    if self.pretrained_tokens is not None:
      return self.pretrained_tokens.pieces(ids)
    return self._output_tokens(ids, None) if self._sp is None else super().target_tokens(ids)

  def decode_rules(self) -> Any:
    """A pretrained model's forced first token (forced_bos_token_id), else None."""
    return None if self.pretrained_tokens is None else self.pretrained_tokens.rules()

  def score(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    """{'rouge1', 'rouge2', 'rougeL', 'bleu'} x 100 against the first reference."""
    first = [r[0] for r in refs]
    out = summary_metrics.rouge(hyps, first)
    out['bleu'] = summary_metrics.smoothed_bleu(hyps, first)
    return out
