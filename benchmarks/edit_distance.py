r"""The edit distance behind WER/CER and PER: rapidfuzz (C++, what seq2seq_jax uses) beside a
pure-Python dynamic programme (what it used before), on the same random utterances.

300 reference strings of 208 characters over 'abcdefgh ', each hypothesis the reference
with about 20% of its characters replaced at random; both compute character edit distances
and must give the same total. The time covers the distances alone.

  python benchmarks/edit_distance.py
"""
import random
import time

from seq2seq_jax.metrics import error_rates


def python_dp(a, b) -> int:
  if len(a) < len(b):
    a, b = b, a
  prev = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    cur = [i]
    for j, y in enumerate(b, 1):
      cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
    prev = cur
  return prev[-1]


def main() -> None:
  rng = random.Random(0)
  refs = [''.join(rng.choice('abcdefgh ') for _ in range(208)) for _ in range(300)]
  hyps = [''.join(c if rng.random() > .2 else rng.choice('abcdefgh ') for c in r)
          for r in refs]
  totals = {}
  for name, fn in (('python DP', python_dp), ('rapidfuzz', error_rates.edit_distance)):
    start = time.perf_counter()
    totals[name] = sum(fn(list(h), list(r)) for h, r in zip(hyps, refs))
    print(f'{name}: total distance {totals[name]}, {time.perf_counter() - start:.3f} s '
          'for 300 utterances of 208 characters', flush=True)
  assert len(set(totals.values())) == 1, totals


if __name__ == '__main__':
  main()
