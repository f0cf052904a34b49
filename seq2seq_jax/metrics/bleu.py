"""Corpus BLEU and chrF with sacreBLEU (Post 2018), on detokenized text.

Scores are sacreBLEU's defaults (BLEU: 13a tokenization, exp smoothing; chrF: n=6, beta=2),
so they compare with any published sacreBLEU number that has the same signature. They are
not the tokenized, compound-split BLEU of Vaswani et al. 2017 Table 2, which runs about one
point higher on WMT'14 en-de.
"""
from typing import Sequence

import sacrebleu


def _bleu_for(tgt_lang: str) -> sacrebleu.BLEU:
  """sacreBLEU's tokenizer for the target language (zh, ja, ko differ from 13a).

  The ja/ko tokenizers need MeCab (`pip install sacrebleu[ja]`); without it we fall back
  to 13a rather than fail an evaluation. The signature's tok: field says which one ran.
  """
  try:
    return sacrebleu.BLEU(trg_lang=tgt_lang)
  except (ImportError, RuntimeError):
    return sacrebleu.BLEU()


def reference_streams(refs: Sequence[Sequence[str]]) -> list[list[str | None]]:
  """Per-hypothesis reference lists -> sacreBLEU's reference streams.

  Args:
    refs: refs[i] holds the references of hypothesis i (one or more).

  Returns:
    n streams (n = the most references any hypothesis has), stream j holding every
    hypothesis's j-th reference, or None where it has fewer: sacreBLEU skips None.
  """
  n = max((len(r) for r in refs), default=1)
  for i, r in enumerate(refs):
    if not r:
      raise ValueError(f'hypothesis {i} has no reference')
  return [[r[j] if j < len(r) else None for r in refs] for j in range(n)]


def corpus_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]],
                  tgt_lang: str = '') -> tuple[dict[str, float], str]:
  """Corpus BLEU and chrF of detokenized hypotheses.

  Args:
    hyps: one detokenized hypothesis per segment.
    refs: refs[i] holds one or more detokenized references of segment i.
    tgt_lang: target language code; picks sacreBLEU's tokenizer for zh/ja/ko.

  Returns:
    ({'bleu': .., 'chrf': ..}, the signature string, e.g.
    'BLEU nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 |
    chrF2 nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0').
  """
  if len(hyps) != len(refs):
    raise ValueError(f'{len(hyps)} hypotheses for {len(refs)} reference sets')
  if not hyps:
    return {'bleu': 0.0, 'chrf': 0.0}, ''
  streams = reference_streams(refs)
  bleu, chrf = _bleu_for(tgt_lang), sacrebleu.CHRF()
  scores = {'bleu': bleu.corpus_score(list(hyps), streams).score,
            'chrf': chrf.corpus_score(list(hyps), streams).score}
  signature = f'BLEU {bleu.get_signature()} | chrF2 {chrf.get_signature()}'
  return scores, signature
