"""Summarization metrics: ROUGE (Lin 2004) through Google's rouge-score, and the smoothed
sentence BLEU-4 that CodeXGLUE reports for code-to-text.

  rouge(hyps, refs)        -> {'rouge1', 'rouge2', 'rougeL'}: mean F1 x 100 over the pairs,
                              Porter stemming on (as See et al. 2017 and most papers report)
  smoothed_bleu(hyps, refs) -> mean sentence BLEU-4 x 100, CodeXGLUE's smooth_bleu.py:
                              lowercased, words and punctuation split apart, n-gram precisions
                              for n = 2..4 add-one smoothed (Lin and Och 2004), brevity
                              penalty min(0, 1 - (r + 1) / (c + 1)) in the log
"""
import collections
import math
import re
import sys
from typing import Sequence

from seq2seq_jax.errors import UserError

ROUGE_TYPES = ('rouge1', 'rouge2', 'rougeL')


def rouge(hyps: Sequence[str], refs: Sequence[str], stem: bool = True) -> dict[str, float]:
  """Mean ROUGE-1/2/L F1 (x 100) of each hypothesis against its reference."""
  if len(hyps) != len(refs):
    raise UserError(f'{len(hyps)} hypotheses for {len(refs)} references')
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=stem)
  totals = dict.fromkeys(ROUGE_TYPES, 0.0)
  for hyp, ref in zip(hyps, refs):
    scores = scorer.score(ref, hyp)          # (target, prediction)
    for t in ROUGE_TYPES:
      totals[t] += scores[t].fmeasure
  n = max(len(hyps), 1)
  return {t: 100.0 * v / n for t, v in totals.items()}


def _tokens(text: str) -> list[str]:
  """CodeXGLUE's splitPuncts + lower(): runs of word characters, and each other character."""
  return re.findall(r'[\w]+|[^\s\w]', text.strip().lower())


def _ngrams(words: list[str], n: int) -> collections.Counter:
  return collections.Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def sentence_bleu_smoothed(hyp: str, ref: str, max_n: int = 4) -> float:
  """One sentence's smoothed BLEU in [0, 1], as CodeXGLUE's score_cooked(smooth=1) computes
  it: log precisions with add-one for n >= 2 (a tiny epsilon keeps log(0) finite), brevity
  penalty min(0, 1 - (r + 1) / (c + 1))."""
  h, r = _tokens(hyp), _tokens(ref)
  tiny = sys.float_info.min
  log_bleu = 0.0
  for n in range(1, max_n + 1):
    guess = max(len(h) - n + 1, 0)
    ref_ngrams = _ngrams(r, n)
    correct = sum(min(c, ref_ngrams[g]) for g, c in _ngrams(h, n).items())
    add = 1 if n > 1 else 0
    log_bleu += math.log(correct + add + tiny) - math.log(guess + add + tiny)
  log_bleu = log_bleu / max_n + min(0.0, 1.0 - (len(r) + 1) / (len(h) + 1))
  return math.exp(log_bleu)


def smoothed_bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
  """Mean smoothed sentence BLEU-4 x 100 (CodeXGLUE code-to-text)."""
  if len(hyps) != len(refs):
    raise UserError(f'{len(hyps)} hypotheses for {len(refs)} references')
  return 100.0 * sum(map(sentence_bleu_smoothed, hyps, refs)) / max(len(hyps), 1)
