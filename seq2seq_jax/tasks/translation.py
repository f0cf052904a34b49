"""Machine translation: TFDS datasets or a user's corpus, SentencePiece, packing, BLEU/chrF.

Config keys (config.data.*) are those of experiments/common.py translation_data(). Vocabulary
sizes come from the config, so Task(config) reads no data (`--mode=info` works on a paper
config without its dataset). The trainer then calls, in this order:

  setup(workdir)   trains SentencePiece on first use into workdir/spm/, else loads it
  train_data()     reads every split (a bad corpus stops the run before step 0), encodes train
  make_batcher()   packed rows (data.packing) or pipeline.Batcher's length buckets
  eval_loss_data(), eval_set(), decode_target(), score()   at every evaluation

Evaluation scores every segment of a split in order, one reference each, as sacreBLEU does
on WMT test sets, so the BLEU is comparable with published sacreBLEU numbers.
"""
import os
import sys
from typing import Any, Sequence

import numpy as np

from seq2seq_jax import bleu
from seq2seq_jax.data import corpus as corpus_lib
from seq2seq_jax.data import packing
from seq2seq_jax.data import pipeline
from seq2seq_jax.data import spm as spm_lib
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, NUM_SPECIAL, PAD_ID, UNK_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import base

SOURCES = ('tfds', 'files', 'tsv', 'num2words')
SPLITS = ('train', 'validation', 'test')
_COMMON_KEYS = ('source', 'src_lang', 'tgt_lang', 'bad_pairs', 'vocab_type', 'spm_model_type',
                'shared_vocab', 'spm_train_sentences', 'max_len', 'packing', 'eval_batch_size',
                'eval_max_examples')
_SOURCE_KEYS = {'tfds': ('tfds_name', 'data_dir', 'train_split', 'eval_split', 'test_split'),
                'files': ('train_files', 'eval_files', 'test_files'),
                'tsv': ('train_tsv', 'eval_tsv', 'test_tsv'),
                'num2words': ('num2words_max',)}

Pairs = tuple[list[np.ndarray], list[np.ndarray]]


def _log(msg: str) -> None:
  """Process 0 reports on stderr: stdout carries only results (eval JSON, predictions)."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    print(msg, file=sys.stderr, flush=True)


def _check_config(config: Any) -> None:
  """Every data key this task reads exists and makes sense (UserError otherwise)."""
  d = config.data
  source = d.get('source', None)
  if source not in SOURCES:
    raise UserError(f'data.source must be one of {SOURCES}, got {source!r}')
  vocab_keys = ('vocab_size',) if d.get('shared_vocab', True) else ('src_vocab_size',
                                                                     'tgt_vocab_size')
  for key in _COMMON_KEYS + _SOURCE_KEYS[source] + vocab_keys:
    if key not in d:
      raise UserError(f'config.data.{key} is missing (task translation: see '
                      'translation_data() in experiments/common.py)')
  if not d.packing and 'buckets' not in d:
    raise UserError('config.data.buckets is missing (needed when data.packing=False)')
  corpus_lib.check_policy(d.bad_pairs)
  if d.vocab_type != 'sentencepiece':
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
  model = config.get('model', {})
  if model.get('positions', '') == 'learned' and 'max_len' in model:
    row = int(d.max_len) if d.packing else max(d.buckets)
    if int(model.max_len) < row:
      raise UserError(f'model.max_len={model.max_len} is shorter than the data rows ({row} '
                      'tokens) and model.positions is learned')


class Task(base.Task):
  """Translation from data.src_lang to data.tgt_lang; see seq2seq_jax/tasks/base.py."""

  best_metric = 'bleu'
  best_mode = 'max'

  def __init__(self, config: Any):
    _check_config(config)
    super().__init__(config)
    d = config.data
    self.shared = bool(d.shared_vocab)
    if self.shared:
      self.src_vocab_size = self.tgt_vocab_size = int(d.vocab_size)
    else:
      self.src_vocab_size, self.tgt_vocab_size = int(d.src_vocab_size), int(d.tgt_vocab_size)
    self._corpora: dict[str, corpus_lib.Corpus] = {}
    self._sp_src = self._sp_tgt = None
    self._announced = False

  # --- corpora ------------------------------------------------------------------------
  def corpus(self, split: str) -> corpus_lib.Corpus:
    """Text pairs of 'train', 'validation' or 'test' (read once, then cached)."""
    if split not in SPLITS:
      raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    if split not in self._corpora:
      self._corpora[split] = self._read(split)
    return self._corpora[split]

  def _read(self, split: str) -> corpus_lib.Corpus:
    d = self.data
    key = {'train': 'train', 'validation': 'eval', 'test': 'test'}[split]
    if d.source == 'tfds':
      c = corpus_lib.read_tfds(d.tfds_name, d[f'{key}_split'], d.src_lang, d.tgt_lang,
                               d.data_dir)
    elif d.source == 'num2words':
      c = corpus_lib.read_num2words(split, d.src_lang, d.tgt_lang, int(d.num2words_max))
    else:
      c = corpus_lib.read_user_split(d, key, split)
    if not c.pairs:
      raise UserError(f'{c.origin}: no sentence pairs')
    note = f' ({c.skipped} bad pair(s) skipped)' if c.skipped else ''
    _log(f'{split}: {len(c.pairs):,} pairs from {c.origin}{note}')
    return c

  # --- vocabulary -------------------------------------------------------------------------
  def setup(self, workdir: str) -> None:
    """Trains SentencePiece on first use (workdir/spm/), else loads it; see spm.train_once.

    Only training needs the corpus: on resume and in predict mode the saved model is
    loaded and no data is read.
    """
    d = self.data
    kw = dict(model_type=d.spm_model_type, max_sentences=int(d.spm_train_sentences),
              seed=self.seed)
    base = os.path.join(workdir, 'spm')

    def text(side: int | None):
      pairs = self.corpus('train').pairs
      return [s for p in pairs for s in p] if side is None else [p[side] for p in pairs]

    if self.shared:
      paths = [os.path.join(base, 'shared.model')]
      trained = [spm_lib.train_once(lambda: text(None), paths[0], vocab_size=self.src_vocab_size,
                                    **kw)]
    else:
      paths = [os.path.join(base, 'source.model'), os.path.join(base, 'target.model')]
      trained = [spm_lib.train_once(lambda: text(0), paths[0], vocab_size=self.src_vocab_size,
                                    **kw),
                 spm_lib.train_once(lambda: text(1), paths[1], vocab_size=self.tgt_vocab_size,
                                    **kw)]
    models = [spm_lib.load(p) for p in paths]
    for path, sp, was_trained in zip(paths, models, trained):
      self._check_model(path, sp)
      _log(f'sentencepiece {d.spm_model_type}: {"trained" if was_trained else "loaded"} '
           f'{path} ({sp.get_piece_size():,} pieces)')
    self._sp_src, self._sp_tgt = models[0], models[-1]

  def _check_model(self, path: str, sp) -> None:
    want = self.tgt_vocab_size if path.endswith('target.model') else self.src_vocab_size
    if sp.get_piece_size() > want:
      raise UserError(f'{path} has {sp.get_piece_size()} pieces, more than the configured '
                      f'vocabulary ({want})')
    ids = (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id())
    if ids != (PAD_ID, BOS_ID, EOS_ID, UNK_ID):
      raise UserError(f'{path} has pad/bos/eos/unk ids {ids}; this codebase needs '
                      f'{(PAD_ID, BOS_ID, EOS_ID, UNK_ID)}')

  def _need_setup(self) -> None:
    if self._sp_src is None:
      raise RuntimeError('Task.setup(workdir) must run before the data is used')

  @staticmethod
  def _encode(sp, texts: Sequence[str]) -> list[np.ndarray]:
    return [np.asarray(ids, np.int32) for ids in sp.encode(list(texts))]

  def _encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> Pairs:
    self._need_setup()
    return (self._encode(self._sp_src, [s for s, _ in pairs]),
            self._encode(self._sp_tgt, [t for _, t in pairs]))

  # --- the trainer's data ---------------------------------------------------------------
  def train_data(self) -> Pairs:
    """(src, tgt) id arrays (no BOS/EOS) of every training pair.

    Reads the validation and test splits first, so a missing or bad evaluation corpus
    stops the run now rather than at its first evaluation.
    """
    self._need_setup()
    for split in ('validation', 'test'):
      self.corpus(split)
    out = self._encode_pairs(self.corpus('train').pairs)
    del self._corpora['train']  # the ids are all we need now; WMT's text is gigabytes
    return out

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
    return pipeline.EvalSet(sources=self._encode(self._sp_src, sources), texts=sources,
                            references=[[t] for _, t in pairs])

  def make_batcher(self, src: Sequence[np.ndarray], tgt: Sequence[np.ndarray], *,
                   batch_size: int, seed: int, shuffle: bool, process_index: int = 0,
                   process_count: int = 1):
    """Packed rows of data.max_len (data.packing), else length buckets (data.buckets).

    Either way pairs with more than data.max_len tokens on a side (incl. EOS) are dropped
    and counted in the batcher's num_dropped.
    """
    kw = dict(batch_size=batch_size, seed=seed, shuffle=shuffle, process_index=process_index,
              process_count=process_count)
    max_len = int(self.data.max_len)
    if self.data.packing:
      batcher = packing.PackedBatcher(src, tgt, max_len=max_len, **kw)
      if shuffle:
        _log(f'packing: {len(batcher.src):,} pairs, rows of {max_len} tokens '
             f'{100 * batcher.fill:.0f}% full, {batcher.batches_per_epoch:,} batches per epoch')
      return batcher
    keep = [i for i in range(len(src)) if len(src[i]) < max_len and len(tgt[i]) < max_len]
    batcher = pipeline.TokenBatcher([src[i] for i in keep], [tgt[i] for i in keep],
                               buckets=tuple(self.data.buckets), **kw)
    batcher.num_dropped += len(src) - len(keep)
    return batcher

  # --- text in, text out ------------------------------------------------------------------
  def encode_source(self, text: str) -> tuple[np.ndarray, int]:
    """A source sentence as ids (no EOS), and how many of them are UNK."""
    self._need_setup()
    ids = np.asarray(self._sp_src.encode(text.strip()), np.int32)
    return ids, int(np.count_nonzero(ids == UNK_ID))

  def decode_target(self, ids: Sequence[int]) -> str:
    """Output ids -> detokenized text; stops at EOS, skips PAD and BOS."""
    self._need_setup()
    ids = [int(i) for i in ids]
    if EOS_ID in ids:
      ids = ids[:ids.index(EOS_ID)]
    return self._sp_tgt.decode([i for i in ids if i not in (PAD_ID, BOS_ID)])

  def score(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    """{'bleu', 'chrf'}: sacreBLEU corpus scores on detokenized text (see seq2seq_jax/bleu.py).

    The sacreBLEU signature is printed with the first evaluation of a run.
    """
    scores, signature = bleu.corpus_scores(hyps, refs, tgt_lang=self.data.tgt_lang)
    if not self._announced and signature:
      _log(f'sacreBLEU signature: {signature}')
      self._announced = True
    return scores
