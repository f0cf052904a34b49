r"""The edit distance behind WER/CER and PER: rapidfuzz (C++, what seq2seq_jax uses) beside a
pure-Python dynamic programme (what it used before), on the same random utterances.

300 reference strings of 208 characters over 'abcdefgh ', each hypothesis the reference
with about 20% of its characters replaced at random; both compute character edit distances
and must give the same total. The time covers the distances alone.

  python benchmarks/edit_distance.py
  python benchmarks/edit_distance.py --spoken_digits
  python benchmarks/edit_distance.py --workdir=runs/spoken_digits --rounds=2

--spoken_digits times what an evaluation of experiments/spoken_digits.py spends on scoring:
the speech task's own `score` (CER and WER over characters and words) on the test split's 600
reference transcripts (drawn by the dataset's generator; no audio is synthesized), against
hypotheses made from them by replacing, dropping or inserting about one word in five, once with
rapidfuzz and once with the pure-Python DP put in its place; both must give the same figures.

With --workdir: a trained run's whole evaluation of its test split (seq2seq_jax.load, then
.evaluate('test'): batching, decoding and scoring), in alternating rounds with each edit
distance, after one untimed pass that compiles; the metrics must be identical.
"""
import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from seq2seq_jax.metrics import error_rates  # pylint: disable=g-import-not-at-top


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


def spoken_digits() -> None:
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax import tasks  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.datasets import spoken_digits as sd  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), 'experiments', 'spoken_digits.py'), [])
  spec = sd.SpokenDigitSpec(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in config.data.spoken_digits.to_dict().items()})
  refs = [u.transcript for u in sd.utterances(spec, 'test')]
  rng = random.Random(0)
  hyps = []
  for r in refs:
    words = []
    for w in r.split():
      x = rng.random()
      if x < 0.07:
        words.append(rng.choice(sd.DIGIT_WORDS))          # substituted
      elif x < 0.13:
        continue                                         # dropped
      elif x < 0.2:
        words += [w, rng.choice(sd.DIGIT_WORDS)]         # an extra word
      else:
        words.append(w)
    hyps.append(' '.join(words))
  score = tasks.get_task(config).score   # (reads no data: the split is read on first use)
  results = {}
  for name, fn in (('python DP', python_dp), ('rapidfuzz', error_rates.Levenshtein.distance)):
    error_rates.edit_distance = fn
    start = time.perf_counter()
    results[name] = score(hyps, [[r] for r in refs])
    print(f'{name}: {results[name]}, {time.perf_counter() - start:.3f} s to score the '
          f'{len(refs)} test utterances ({sum(map(len, refs)) / len(refs):.1f} characters '
          'on average)', flush=True)
  assert results['python DP'] == results['rapidfuzz'], results


if __name__ == '__main__':
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdir', default='', help="a trained run: time its test split's eval")
  p.add_argument('--rounds', type=int, default=2)
  p.add_argument('--spoken_digits', action='store_true',
                 help="score spoken_digits' test references against perturbed copies")
  a = p.parse_args()
  if a.workdir:
    whole_eval(a.workdir, a.rounds)
  elif a.spoken_digits:
    spoken_digits()
  else:
    main()
