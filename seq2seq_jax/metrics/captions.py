"""Captioning metrics: BLEU-1..4 and CIDEr-D, every image scored against all its references.

  tokenize(text)                 lower case, punctuation replaced by spaces, split on white
                                 space (close to the COCO caption evaluation's PTB tokenizer
                                 followed by its punctuation removal; that one needs Java)
  bleu(hyps, refs)               {'bleu1'..'bleu4'}: corpus BLEU over multiple references
                                 (sacrebleu on the tokenized text: closest reference length,
                                 no smoothing, as the COCO evaluation computes it)
  cider_d(hyps, refs)            CIDEr-D (Vedantam, Zitnick and Parikh 2015): TF-IDF n-gram
                                 vectors (n = 1..4), document frequencies from the evaluated
                                 references, hypothesis counts clipped by the reference's, a
                                 Gaussian length penalty (sigma 6), x 10, averaged over
                                 references, n and images, as the COCO evaluation code does

All take one hypothesis per image and a list of references per image, as strings.
"""
import collections
import math
import re
from typing import Sequence

import numpy as np

_PUNCT = re.compile(r'[^\w\s]|_')


def tokenize(text: str) -> list[str]:
  return _PUNCT.sub(' ', text.lower()).split()


def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
  """BLEU-1..4 in percent over the corpus, each hypothesis against all its references."""
  from sacrebleu.metrics import BLEU  # pylint: disable=g-import-not-at-top
  if len(hyps) != len(refs):
    raise ValueError(f'{len(hyps)} hypotheses but {len(refs)} reference lists')
  most = max((len(r) for r in refs), default=0)
  streams = [[' '.join(tokenize(r[j])) if j < len(r) else None for r in refs]
             for j in range(most)]
  hyp = [' '.join(tokenize(h)) for h in hyps]
  return {f'bleu{n}': float(BLEU(tokenize='none', max_ngram_order=n,
                                 effective_order=False).corpus_score(hyp, streams).score)
          for n in range(1, 5)}


def _ngrams(tokens: list[str], n: int = 4) -> collections.Counter:
  return collections.Counter(tuple(tokens[i:i + k]) for k in range(1, n + 1)
                             for i in range(len(tokens) - k + 1))


def cider_d(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4,
            sigma: float = 6.0) -> float:
  """CIDEr-D of the corpus (the mean of the per-image scores); see the module docstring."""
  if len(hyps) != len(refs):
    raise ValueError(f'{len(hyps)} hypotheses but {len(refs)} reference lists')
  if not hyps:
    return 0.0
  ref_counts = [[_ngrams(tokenize(r), n) for r in rs] for rs in refs]
  df: collections.Counter = collections.Counter()
  for rs in ref_counts:  # an n-gram counts once per image, however many references hold it
    df.update(set().union(*[set(c) for c in rs]))
  log_images = math.log(float(len(refs)))

  def vec(counts):
    v = [dict() for _ in range(n)]
    norm = np.zeros(n)
    length = 0
    for gram, tf in counts.items():
      k = len(gram) - 1
      v[k][gram] = tf * (log_images - math.log(max(1.0, df[gram])))
      norm[k] += v[k][gram] ** 2
      if k == 1:  # the reference code measures length in bigrams; kept for comparability
        length += tf
    return v, np.sqrt(norm), length

  scores = []
  for h, rs in zip(hyps, ref_counts):
    vh, nh, lh = vec(_ngrams(tokenize(h), n))
    total = np.zeros(n)
    for r in rs:
      vr, nr, lr = vec(r)
      for k in range(n):
        val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
        if nh[k] != 0 and nr[k] != 0:
          val /= nh[k] * nr[k]
        total[k] += val * math.exp(-((lh - lr) ** 2) / (2 * sigma ** 2))
    scores.append(float(np.mean(total)) / max(len(rs), 1) * 10.0)
  return float(np.mean(scores))
