"""Edit distance and the G2P error rates (PER, WER)."""
from typing import Sequence


def edit_distance(a: Sequence, b: Sequence) -> int:
  """Levenshtein distance (unit insert / delete / substitute costs)."""
  if len(a) < len(b):
    a, b = b, a
  prev = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    cur = [i]
    for j, y in enumerate(b, 1):
      cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
    prev = cur
  return prev[-1]


def g2p_scores(hyps: Sequence[Sequence[str]],
               refs: Sequence[Sequence[Sequence[str]]]) -> dict[str, float]:
  """Phoneme and word error rates in percent, over words with several references.

  PER = sum of edit distances to each word's closest reference / sum of those references'
  lengths (ties go to the shorter reference). WER = share of words whose hypothesis matches
  no reference exactly.

  Args:
    hyps: one phoneme list per word.
    refs: per word, its reference phoneme lists (at least one).

  Returns:
    {'per': ..., 'wer': ...} in percent.
  """
  if len(hyps) != len(refs):
    raise ValueError(f'{len(hyps)} hypotheses for {len(refs)} reference sets')
  errors = length = wrong = 0
  for hyp, rs in zip(hyps, refs):
    hyp = list(hyp)
    dist, ref_len = min((edit_distance(hyp, list(r)), len(r)) for r in rs)
    errors += dist
    length += ref_len
    wrong += not any(hyp == list(r) for r in rs)
  n = max(len(hyps), 1)
  return {'per': 100.0 * errors / max(length, 1), 'wer': 100.0 * wrong / n}
