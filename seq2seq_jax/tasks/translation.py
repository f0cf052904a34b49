"""Machine translation: TFDS datasets or a user's corpus, SentencePiece, packing, BLEU/chrF.

Config keys (config.data.*): see experiments/wmt14_ende_transformer_base.py. Vocabulary sizes
come from the config, so Task(config) needs no data (`--mode=info` works without it).
"""
import collections
import os
import sys
from typing import Any

import numpy as np

from seq2seq_jax.data import corpus as corpus_lib
from seq2seq_jax.data import packing
from seq2seq_jax.data import pipeline
from seq2seq_jax.data import spm as spm_lib
from seq2seq_jax.data.vocab import EOS_ID, UNK_ID
from seq2seq_jax.errors import UserError

SOURCES = ('tfds', 'files', 'tsv', 'num2words')


class Task:
  """Translation from data.src_lang to data.tgt_lang."""

  best_metric = 'bleu'
  best_mode = 'max'

  def __init__(self, config: Any):
    d = config.data
    self.data = d
    self.seed = int(config.seed)
    if d.source not in SOURCES:
      raise UserError(f'data.source must be one of {SOURCES}, got {d.source!r}')
    self.shared = bool(d.shared_vocab)
    if self.shared:
      self.src_vocab_size = self.tgt_vocab_size = int(d.vocab_size)
    else:
      self.src_vocab_size, self.tgt_vocab_size = int(d.src_vocab_size), int(d.tgt_vocab_size)
    if min(self.src_vocab_size, self.tgt_vocab_size) <= 8:
      raise UserError('vocabulary sizes must be set (data.vocab_size, or data.src_vocab_size and '
                      'data.tgt_vocab_size when data.shared_vocab=False)')
    self._corpora: dict[str, corpus_lib.Corpus] = {}
    self._sp_src = self._sp_tgt = None
    self._warned_signature = False

  # --- data -------------------------------------------------------------------------
  def _split_name(self, split: str) -> str:
    return {'train': self.data.train_split, 'validation': self.data.eval_split,
            'test': self.data.test_split}[split]

  def corpus(self, split: str) -> corpus_lib.Corpus:
    """Raw text pairs of 'train', 'validation' or 'test' (cached)."""
    if split not in self._corpora:
      d = self.data
      if d.source == 'tfds':
        c = corpus_lib.read_tfds(d.tfds_name, self._split_name(split), d.src_lang, d.tgt_lang,
                                 d.data_dir)
      elif d.source == 'num2words':
        c = corpus_lib.read_num2words(split, d.src_lang, d.tgt_lang, int(d.num2words_max))
      elif d.source == 'files':
        files = {'train': d.train_files, 'validation': d.eval_files, 'test': d.test_files}[split]
        if len(files) != 2:
          raise UserError(f'data.{split}_files must be (source_path, target_path)')
        c = corpus_lib.read_aligned_files(files[0], files[1], d.bad_pairs)
      else:
        path = {'train': d.train_tsv, 'validation': d.eval_tsv, 'test': d.test_tsv}[split]
        c = corpus_lib.read_tsv(path, d.bad_pairs)
      if c.skipped:
        print(f'{c.origin}: skipped {c.skipped} bad pair(s)', file=sys.stderr, flush=True)
      if not c.pairs:
        raise UserError(f'{c.origin}: no sentence pairs')
      self._corpora[split] = c
    return self._corpora[split]

  def setup(self, workdir: str) -> None:
    """Trains SentencePiece on first use (saved in workdir/spm/), then loads it."""
    d = self.data
    kw = dict(model_type=d.spm_model_type, max_sentences=int(d.spm_train_sentences),
              seed=self.seed)
    base = os.path.join(workdir, 'spm')
    if self.shared:
      path = os.path.join(base, 'shared.model')
      spm_lib.train_once(lambda: [s for p in self.corpus('train').pairs for s in p], path,
                         vocab_size=self.src_vocab_size, **kw)
      self._sp_src = self._sp_tgt = spm_lib.load(path)
    else:
      src = os.path.join(base, f'{d.src_lang}.model')
      tgt = os.path.join(base, f'{d.tgt_lang}.model')
      spm_lib.train_once(lambda: [s for s, _ in self.corpus('train').pairs], src,
                         vocab_size=self.src_vocab_size, **kw)
      spm_lib.train_once(lambda: [t for _, t in self.corpus('train').pairs], tgt,
                         vocab_size=self.tgt_vocab_size, **kw)
      self._sp_src, self._sp_tgt = spm_lib.load(src), spm_lib.load(tgt)
    for sp, want in ((self._sp_src, self.src_vocab_size), (self._sp_tgt, self.tgt_vocab_size)):
      if sp.get_piece_size() > want:
        raise UserError(f'sentencepiece model has {sp.get_piece_size()} pieces, more than the '
                        f'configured vocabulary ({want})')

  def _need_setup(self):
    if self._sp_src is None:
      raise RuntimeError('Task.setup(workdir) must run before the data is used')

  def _encode(self, sp, texts: list[str]) -> list[np.ndarray]:
    return [np.asarray(ids, np.int32) for ids in sp.encode(texts)]

  def _encode_pairs(self, pairs):
    self._need_setup()
    return (self._encode(self._sp_src, [s for s, _ in pairs]),
            self._encode(self._sp_tgt, [t for _, t in pairs]))

  def train_data(self):
    return self._encode_pairs(self.corpus('train').pairs)

  def eval_loss_data(self, split: str):
    pairs = self.corpus(split).pairs
    if int(self.data.eval_max_examples):
      pairs = pairs[:int(self.data.eval_max_examples)]
    return self._encode_pairs(pairs)

  def eval_set(self, split: str) -> pipeline.EvalSet:
    self._need_setup()
    refs: dict[str, list[str]] = collections.OrderedDict()
    for s, t in self.corpus(split).pairs:
      refs.setdefault(s, []).append(t)
    sources = list(refs)
    if int(self.data.eval_max_examples):
      sources = sources[:int(self.data.eval_max_examples)]
    return pipeline.EvalSet(sources=self._encode(self._sp_src, sources), texts=sources,
                            references=[refs[s] for s in sources])

  def make_batcher(self, src, tgt, **kwargs):
    if self.data.packing:
      return packing.PackedBatcher(src, tgt, max_len=int(self.data.max_len), **kwargs)
    return pipeline.Batcher(src, tgt, buckets=tuple(self.data.buckets), **kwargs)

  # --- text in, text out ----------------------------------------------------------------
  def encode_source(self, text: str) -> tuple[np.ndarray, int]:
    self._need_setup()
    ids = np.asarray(self._sp_src.encode(text.strip()), np.int32)
    return ids, int(np.sum(ids == UNK_ID))

  def decode_target(self, ids) -> str:
    self._need_setup()
    ids = [int(i) for i in ids]
    if EOS_ID in ids:
      ids = ids[:ids.index(EOS_ID)]
    return self._sp_tgt.decode([i for i in ids if i > EOS_ID])

  def score(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    """Detokenized corpus BLEU and chrF with sacrebleu's defaults (13a tokenization)."""
    announce = not self._warned_signature  # print the signature once per run
    self._warned_signature = True
    return bleu_chrf(hyps, refs, announce=announce)


def bleu_chrf(hyps: list[str], refs: list[list[str]], announce: bool = False) -> dict[str, float]:
  """sacrebleu corpus BLEU and chrF; several references per hypothesis allowed."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  n = max(len(r) for r in refs) if refs else 1
  # sacrebleu takes reference *streams*; repeat a hypothesis's first reference where it has
  # fewer than n (a duplicate reference changes neither BLEU's clipped counts nor chrF's max).
  streams = [[r[min(i, len(r) - 1)] for r in refs] for i in range(n)]
  bleu = sacrebleu.BLEU()
  chrf = sacrebleu.CHRF()
  b = bleu.corpus_score(hyps, streams)
  c = chrf.corpus_score(hyps, streams)
  if announce:
    print(f'BLEU signature: {bleu.get_signature()} | chrF signature: {chrf.get_signature()}',
          flush=True)
  return {'bleu': b.score, 'chrf': c.score}
