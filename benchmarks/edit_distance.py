r"""The edit distance behind WER/CER and PER: rapidfuzz (C++, what seq2seq_jax uses) beside a
pure-Python dynamic programme (what it used before), on the same random utterances.

300 reference strings of 208 characters over 'abcdefgh ', each hypothesis the reference
with about 20% of its characters replaced at random; both compute character edit distances
and must give the same total. The time covers the distances alone.

  python benchmarks/edit_distance.py
  python benchmarks/edit_distance.py --workdir=runs/spoken_digits --rounds=2

With --workdir: a trained run's whole evaluation of its test split (seq2seq_jax.load, then
.evaluate('test'): batching, decoding and scoring), in alternating rounds with each edit
distance, after one untimed pass that compiles; the metrics must be identical.
"""
import argparse
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


def whole_eval(workdir: str, rounds: int) -> None:
  import seq2seq_jax  # pylint: disable=g-import-not-at-top
  model = seq2seq_jax.load(workdir)
  model.evaluate('test')                     # compiles every batch shape
  fast = error_rates.edit_distance
  seconds, metrics = {'rapidfuzz': [], 'python DP': []}, {}
  try:
    for r in range(rounds):
      for name, fn in (('rapidfuzz', fast), ('python DP', python_dp)):
        error_rates.edit_distance = fn
        start = time.perf_counter()
        metrics[name] = model.evaluate('test')
        seconds[name].append(time.perf_counter() - start)
        print(f'round {r + 1}: {name}: eval of the test split {seconds[name][-1]:.2f} s '
              f"({metrics[name].get('examples', '?')} examples, step {model.step})", flush=True)
  finally:
    error_rates.edit_distance = fast
  for name in seconds:
    print(f'{name}: best {min(seconds[name]):.2f} s; '
          + ', '.join(f'{k} {v:.4g}' for k, v in sorted(metrics[name].items())
                      if k != 'seconds'))
  same = {k: v for k, v in metrics['rapidfuzz'].items() if k != 'seconds'} == {
      k: v for k, v in metrics['python DP'].items() if k != 'seconds'}
  print(f'identical metrics: {same}')
  assert same


if __name__ == '__main__':
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdir', default='', help="a trained run: time its test split's eval")
  p.add_argument('--rounds', type=int, default=2)
  a = p.parse_args()
  if a.workdir:
    whole_eval(a.workdir, a.rounds)
  else:
    main()
