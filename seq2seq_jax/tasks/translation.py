"""Machine translation: TFDS datasets or a user's corpus, SentencePiece, packing, BLEU/chrF.

Config keys (config.data.*) are those of experiments/common.py translation_data(). Vocabulary
sizes come from the config, so Task(config) reads no data (`--mode=info` works on a paper
config without its dataset). The trainer then calls, in this order:

  setup(workdir)   trains SentencePiece on first use into workdir/spm/, else loads it
  train_data()     reads every split (a bad corpus stops the run before step 0), encodes train
                   (data.token_cache: once, streaming, into workdir/cache/; later starts
                   open the cache: see data/token_cache.py)
  make_batcher()   packed rows (data.packing) or pipeline.Batcher's length buckets
  eval_loss_data(), eval_set(), decode_target(), score()   at every evaluation

Evaluation scores every segment of a split in order, one reference each, as sacreBLEU does
on WMT test sets, so the BLEU is comparable with published sacreBLEU numbers.

With model.pretrained (a Marian, BART or T5 checkpoint: pretrained/checkpoints.py) sources and
targets are the checkpoint's tokens (pretrained/text_tokens.py), data.source_prefix goes before
every source text (T5's task prefixes), and the vocabulary keys (vocab_size, spm_*) are not
read; nothing is trained into workdir/spm/.
"""
import itertools
import os
from typing import Any, Sequence

import numpy as np

from seq2seq_jax.metrics import bleu
from seq2seq_jax.data import corpus as corpus_lib
from seq2seq_jax.data import packing
from seq2seq_jax.data import pipeline
from seq2seq_jax.data import sources
from seq2seq_jax.data import spm as spm_lib
from seq2seq_jax.data import token_cache
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, NUM_SPECIAL, PAD_ID, UNK_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.pretrained import text_tokens
from seq2seq_jax.tasks import base

SOURCES = ('tfds', 'files', 'tsv', 'num2words')   # the entries of data/sources.py it reads
SPLITS = ('train', 'validation', 'test')
_COMMON_KEYS = ('source', 'src_lang', 'tgt_lang', 'bad_pairs', 'vocab_type', 'spm_model_type',
                'shared_vocab', 'spm_train_sentences', 'max_len', 'packing', 'eval_batch_size',
                'eval_max_examples')

Pairs = tuple[list[np.ndarray], list[np.ndarray]]


def _check_config(config: Any, pretrained: bool) -> None:
  """Every data key this task reads exists and makes sense (UserError otherwise). With a
  pretrained model the vocabulary is the checkpoint's: the vocabulary keys are not read."""
  d = config.data
  source = d.get('source', None)
  if source not in SOURCES:
    raise UserError(f'data.source must be one of {SOURCES}, got {source!r}')
  vocab_keys = ('vocab_size',) if d.get('shared_vocab', True) else ('src_vocab_size',
                                                                     'tgt_vocab_size')
  if pretrained:
    vocab_keys = ()
  for key in _COMMON_KEYS + sources.get(source).keys + vocab_keys:
    if key not in d:
      raise UserError(f'config.data.{key} is missing (task translation: see '
                      'translation_data() in experiments/common.py)')
  if not d.packing and 'buckets' not in d:
    raise UserError('config.data.buckets is missing (needed when data.packing=False)')
  corpus_lib.check_policy(d.bad_pairs)
  if not pretrained and d.vocab_type != 'sentencepiece':
    raise UserError(f"data.vocab_type must be 'sentencepiece', got {d.vocab_type!r}")
  spm_lib.check_model_type(d.spm_model_type)
  for key in vocab_keys:
    if int(d[key]) <= NUM_SPECIAL + 4:
      raise UserError(f'data.{key} must be set to the vocabulary size, got {d[key]}')
  if d.src_lang == d.tgt_lang:
    raise UserError(f'data.src_lang and data.tgt_lang are both {d.src_lang!r}')
  if int(d.max_len) < 2:
    raise UserError(f'data.max_len must be >= 2, got {d.max_len}')
  if source == 'num2words':
    if int(d.num2words_max) < 100:
      raise UserError(f'data.num2words_max must be >= 100, got {d.num2words_max}')
    corpus_lib.check_num2words_lang(d.src_lang)
    corpus_lib.check_num2words_lang(d.tgt_lang)
  # Learned position tables have model.max_len rows; a longer row would index past them.
  # (A pretrained model's table: the model says so when a batch is longer.)
  model = config.get('model', {})
  if model.get('positions', '') == 'learned' and 'max_len' in model:
    row = int(d.max_len) if d.packing else max(d.buckets)
    if int(model.max_len) < row:
      raise UserError(f'model.max_len={model.max_len} is shorter than the data rows ({row} '
                      'tokens) and model.positions is learned')


class Task(base.BaseTask):
  """Translation from data.src_lang to data.tgt_lang; see seq2seq_jax/tasks/base.py."""

  best_metric = 'bleu'
  best_mode = 'max'

  def __init__(self, config: Any):
    # model.pretrained: the checkpoint's tokenizer and vocabularies (pretrained/text_tokens.py)
    self.pretrained_tokens = text_tokens.for_config(config)
    _check_config(config, self.pretrained_tokens is not None)
    super().__init__(config)
    d = config.data
    self.shared = bool(d.shared_vocab)
    if self.pretrained_tokens is not None:
      self.src_vocab_size = self.pretrained_tokens.src_vocab_size
      self.tgt_vocab_size = self.pretrained_tokens.vocab_size
    elif self.shared:
      self.src_vocab_size = self.tgt_vocab_size = int(d.vocab_size)
    else:
      self.src_vocab_size, self.tgt_vocab_size = int(d.src_vocab_size), int(d.tgt_vocab_size)
    self.source = sources.select(d, SOURCES, d.source)
    self._corpora: dict[str, corpus_lib.Corpus] = {}
    self._sp_src = self._sp_tgt = None
    self._spm_paths: list[str] = []
    self._workdir = ''
    self._ready = False
    self._announced = False

  # --- corpora ------------------------------------------------------------------------
  def corpus(self, split: str) -> corpus_lib.Corpus:
    """Text pairs of 'train', 'validation' or 'test' (read once, then cached)."""
    if split not in SPLITS:
      raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    if split not in self._corpora:
      self._corpora[split] = self._read(split)
    return self._corpora[split]

  def _stream(self, split: str) -> corpus_lib.Stream:
    """The pairs of `split`, read as they are consumed."""
    kw = dict(features=(self.data.src_lang, self.data.tgt_lang)) if self.source.tfds else {}
    return self.source.read('pairs', self.data, split, **kw)

  def _read(self, split: str) -> corpus_lib.Corpus:
    c = self._stream(split).read()
    if not c.pairs:
      raise UserError(f'{c.origin}: no sentence pairs')
    note = f' ({c.skipped} bad pair(s) skipped)' if c.skipped else ''
    base.log(f'{split}: {len(c.pairs):,} pairs from {c.origin}{note}')
    return c

  def _uses_cache(self) -> bool:
    return bool(self.data.get('token_cache', False))

  def _train_sentences(self, side: int | None):
    """Training sentences of one side (0 source, 1 target) or both, for SentencePiece; with
    data.token_cache streamed (the corpus is never held), else from the held corpus."""
    pairs = self._stream('train').pairs if self._uses_cache() else self.corpus('train').pairs
    for p in pairs:
      if side is None:
        yield from p
      else:
        yield p[side]

  # --- vocabulary -------------------------------------------------------------------------
  def setup(self, workdir: str) -> None:
    """Trains SentencePiece on first use (workdir/spm/), else loads it; see spm.train_once.

    Only training needs the corpus: on resume and in predict mode the saved model is
    loaded and no data is read. A pretrained model brings its own tokenizer.
    """
    d = self.data
    if self.pretrained_tokens is not None:
      base.log(self.pretrained_tokens.describe())
      self._spm_paths, self._workdir, self._ready = self.pretrained_tokens.files, workdir, True
      return
    # (file name, which side's sentences, vocabulary size, the key that sets it)
    if self.shared:
      models = [('shared', None, self.src_vocab_size, 'data.vocab_size')]
    else:
      models = [('source', 0, self.src_vocab_size, 'data.src_vocab_size'),
                ('target', 1, self.tgt_vocab_size, 'data.tgt_vocab_size')]
    paths, loaded = [], []
    for name, side, size, key in models:
      path = os.path.join(workdir, 'spm', f'{name}.model')
      sp, trained = spm_lib.setup(lambda side=side: self._train_sentences(side), path,
                                  vocab_size=size, size_key=key, model_type=d.spm_model_type,
                                  max_sentences=int(d.spm_train_sentences), seed=self.seed)
      base.log(f'sentencepiece {d.spm_model_type}: {"trained" if trained else "loaded"} '
               f'{path} ({sp.get_piece_size():,} pieces)')
      paths.append(path)
      loaded.append(sp)
    self._sp_src, self._sp_tgt = loaded[0], loaded[-1]
    self._spm_paths, self._workdir, self._ready = paths, workdir, True

  def sentencepiece_models(self) -> tuple[str, str]:
    """The SentencePiece model files of the source and the target side (one shared model:
    the same path twice); what --mode=export copies beside a CTranslate2 model."""
    self._need_setup()
    return self._spm_paths[0], self._spm_paths[-1]

  def _need_setup(self) -> None:
    if not self._ready:
      raise RuntimeError('Task.setup(workdir) must run before the data is used')

  def _encode(self, side: int, texts: Sequence[str]) -> list[np.ndarray]:
    """Ids (no EOS) of source (side 0) or target (side 1) texts."""
    tokens = self.pretrained_tokens
    if tokens is not None:
      return [tokens.encode_source(t)[0] if side == 0 else tokens.encode_target(t)
              for t in texts]
    sp = self._sp_src if side == 0 else self._sp_tgt
    return [np.asarray(ids, np.int32) for ids in sp.encode(list(texts))]

  def _encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> Pairs:
    self._need_setup()
    return (self._encode(0, [s for s, _ in pairs]), self._encode(1, [t for _, t in pairs]))

  # --- the trainer's data ---------------------------------------------------------------
  def train_data(self):
    """(src, tgt) id arrays (no BOS/EOS) of every training pair; with data.token_cache a
    (token_cache.CachedPairs, None) over workdir/cache/train.* instead, built on first use.

    Reads the validation and test splits first, so a missing or bad evaluation corpus
    stops the run now rather than at its first evaluation.
    """
    self._need_setup()
    for split in ('validation', 'test'):
      self.corpus(split)
    if self._uses_cache():
      return self._cached_train_pairs(), None
    out = self._encode_pairs(self.corpus('train').pairs)
    del self._corpora['train']  # the ids are all we need now
    return out

  def _corpus_fingerprint(self) -> dict:
    """What the training pairs are: the source's config keys (not the evaluation splits',
    whose changes leave the training cache valid), and files' sizes and times."""
    d = self.data
    keys = ('source', 'src_lang', 'tgt_lang', 'bad_pairs') + tuple(
        k for k in self.source.keys if not k.startswith(('eval_', 'test_')))
    out = {k: list(d[k]) if isinstance(d[k], (tuple, list)) else d[k] for k in keys}
    if d.source == 'files':
      out['stat'] = token_cache.file_fingerprint(d.train_files)
    elif d.source == 'tsv':
      out['stat'] = token_cache.file_fingerprint([d.train_tsv])
    return out

  def _cached_train_pairs(self) -> token_cache.CachedPairs:
    """The training pairs tokenized once into workdir/cache/train.* (data/token_cache.py)."""
    prefix = os.path.join(self._workdir, 'cache', 'train')
    source = {'corpus': self._corpus_fingerprint(),
              'vocab': [token_cache.digest(p) for p in self._spm_paths]}
    if self.pretrained_tokens is not None and self.pretrained_tokens.source_prefix:
      source['source_prefix'] = self.pretrained_tokens.source_prefix
    streams: list[corpus_lib.Stream] = []

    def chunks(size: int = 65536):
      streams.append(self._stream('train'))
      it = streams[0].pairs
      while chunk := list(itertools.islice(it, size)):
        yield chunk

    def encode(chunk):
      return self._encode_pairs(chunk)

    def extra():
      return {'origin': streams[0].origin, 'skipped': streams[0].bad.count}

    pairs, built = token_cache.open_or_build(
        prefix, chunks, encode, vocab_size=max(self.src_vocab_size, self.tgt_vocab_size),
        source=source, log=base.log, extra=extra)
    meta = pairs.meta
    if not len(pairs):
      raise UserError(f'{meta["origin"]}: no sentence pairs')
    note = f' ({meta["skipped"]} bad pair(s) skipped)' if meta['skipped'] else ''
    base.log(f'train: {len(pairs):,} pairs from {meta["origin"]}{note}, '
             f'{"tokenized" if built else "read from the token cache"} {prefix}.array_record')
    return pairs

  def _eval_pairs(self, split: str) -> list[tuple[str, str]]:
    """The split, or data.eval_max_examples (> 0) segments spread evenly over it."""
    return self.eval_subset(self.corpus(split).pairs)

  def eval_loss_data(self, split: str) -> Pairs:
    """(src, tgt) of the pairs eval_set(split) scores."""
    return self._encode_pairs(self._eval_pairs(split))

  def eval_set(self, split: str) -> pipeline.EvalSet:
    """Every segment of the split in order, each with its one reference."""
    self._need_setup()
    pairs = self._eval_pairs(split)
    sources = [s for s, _ in pairs]
    return pipeline.EvalSet(sources=self._encode(0, sources), texts=sources,
                            references=[[t] for _, t in pairs])

  def make_batcher(self, src, tgt=None, *, batch_size: int, seed: int, shuffle: bool,
                   process_index: int = 0, process_count: int = 1):
    """Packed rows of data.max_len (data.packing), else length buckets (data.buckets).

    `src`, `tgt`: id arrays, or a token_cache.Pairs and None (from train_data). Either way
    pairs with more than data.max_len tokens on a side (incl. EOS) are dropped and counted
    in the batcher's num_dropped.
    """
    pairs = token_cache.as_pairs(src, tgt)
    kw = dict(batch_size=batch_size, seed=seed, shuffle=shuffle, process_index=process_index,
              process_count=process_count)
    max_len = int(self.data.max_len)
    if self.data.packing:
      batcher = packing.PackedBatcher(pairs, max_len=max_len, **kw)
      if shuffle:
        base.log(f'packing: {len(batcher.keep):,} pairs, rows of {max_len} tokens '
                 f'{100 * batcher.fill:.0f}% full, {batcher.batches_per_epoch:,} batches per epoch')
      return batcher
    return pipeline.TokenBatcher(pairs, buckets=tuple(self.data.buckets), max_len=max_len, **kw)

  # --- text in, text out ------------------------------------------------------------------
  def encode_source(self, text: str) -> tuple[np.ndarray, int]:
    """A source sentence as ids (no EOS), and how many of them are UNK."""
    self._need_setup()
    if self.pretrained_tokens is not None:
      return self.pretrained_tokens.encode_source(text.strip())
    ids = np.asarray(self._sp_src.encode(text.strip()), np.int32)
    return ids, int(np.count_nonzero(ids == UNK_ID))

  def decode_target(self, ids: Sequence[int]) -> str:
    """Output ids -> detokenized text; stops at EOS, skips PAD and BOS (a pretrained
    model's: its special tokens)."""
    self._need_setup()
    if self.pretrained_tokens is not None:
      return self.pretrained_tokens.decode(ids)
    ids = [int(i) for i in ids]
    if EOS_ID in ids:
      ids = ids[:ids.index(EOS_ID)]
    return self._sp_tgt.decode([i for i in ids if i not in (PAD_ID, BOS_ID)])

  def target_tokens(self, ids: Sequence[int]) -> list[str]:
    if self.pretrained_tokens is not None:
      return self.pretrained_tokens.pieces(ids)
    return super().target_tokens(ids)

  def decode_rules(self) -> Any:
    """A pretrained model's forced first token (forced_bos_token_id), else None."""
    return None if self.pretrained_tokens is None else self.pretrained_tokens.rules()

  def score(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    """{'bleu', 'chrf'}: sacreBLEU corpus scores on detokenized text (see seq2seq_jax/metrics/bleu.py).

    The sacreBLEU signature is printed with the first evaluation of a run.
    """
    scores, signature = bleu.corpus_scores(hyps, refs, tgt_lang=self.data.tgt_lang)
    if not self._announced and signature:
      base.log(f'sacreBLEU signature: {signature}')
      self._announced = True
    return scores
