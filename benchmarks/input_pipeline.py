r"""The translation input pipeline at WMT scale: preparation, restart, memory, batches/s.

  python benchmarks/input_pipeline.py                    # 4.5M pairs (WMT14 en-de's size)
  python benchmarks/input_pipeline.py --pairs=200000     # a quick look
  python benchmarks/input_pipeline.py --train_step       # + the train step's tokens/s here

Generates a parallel corpus of --pairs sentence pairs as two aligned text files (not a mock:
the files the 'files' source reads), sentences of WMT-like lengths (words per sentence
log-normal, median 20, mean 23, a long tail cut at 200) over two made-up languages of 60,000
Zipf-distributed words each, the target about as long as its source. Then, each in a fresh
process, with the data settings of experiments/wmt14_ende_transformer_base.py (37k shared
BPE, max_len 256, packed rows, batch 96) and data.source=files:

  first run   SentencePiece trained on a sample (data.spm_train_sentences) + every pair
              tokenized into the token cache (data/token_cache.py) + epoch 0 packed
  restart     the same command again: the vocabulary and the cache are only opened

and reports wall time of each stage, the process's peak RSS, and batches/s and tokens/s
(non-padding source + target ids) of get_batch on one core (the process pinned to CPU 0)
over --batches batches of a random walk through the steps. --train_step also compiles the
Transformer base train step (8 rows of 256 + 256 slots; every slot counted) and times it, to
show how many times over the pipeline outruns what this machine's training consumes.

Goals (issue 18): preparation <= 10 min, restart <= 30 s, peak RSS <= 4 GB, pipeline >= 20x
the train step's tokens/s. Prints one JSON line per phase and a summary line.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

import numpy as np  # pylint: disable=g-import-not-at-top

_CONSONANTS = list('bcdfghjklmnprstvwz')
_VOWELS = list('aeiouy')


def _words(rng: np.random.Generator, n: int) -> np.ndarray:
  """n distinct made-up words of consonant-vowel syllables, shortest first (frequent words
  are short, as in natural languages): every word of 1 and 2 syllables, then random ones of
  3 and 4, a third of them with a closing consonant."""
  syl = [c + v for c in _CONSONANTS for v in _VOWELS]
  out = syl + [a + b for a in syl for b in syl]
  seen = set(out)
  while len(out) < n:
    k = int(rng.integers(3, 5))
    for idx in rng.integers(0, len(syl), (n, k)).tolist():
      w = ''.join(syl[i] for i in idx) + (_CONSONANTS[idx[0] % 18] if idx[-1] % 3 == 0 else '')
      if w not in seen and len(out) < n:
        seen.add(w)
        out.append(w)
  return np.array(out[:n])


def _lengths(rng: np.random.Generator, n: int) -> np.ndarray:
  """Words per sentence: log-normal, median 20, mean about 23, 1..200."""
  return np.clip(np.round(rng.lognormal(np.log(20.0), 0.55, n)), 1, 200).astype(np.int64)


def generate(path_src: str, path_tgt: str, pairs: int, seed: int = 0,
             chunk: int = 100_000) -> dict:
  """Writes the two aligned files; returns their sizes and the time it took."""
  t0 = time.perf_counter()
  rng = np.random.default_rng(seed)
  vocab = [_words(rng, 60_000), _words(rng, 60_000)]
  ranks = np.arange(1, 60_001, dtype=np.float64)
  zipf = ranks ** -1.07
  cdf = np.cumsum(zipf / zipf.sum())
  with open(path_src, 'w') as fs, open(path_tgt, 'w') as ft:
    for start in range(0, pairs, chunk):
      n = min(chunk, pairs - start)
      src_len = _lengths(rng, n)
      tgt_len = np.clip(np.round(src_len * rng.lognormal(0.0, 0.15, n)), 1, 200).astype(np.int64)
      for f, lens, words in ((fs, src_len, vocab[0]), (ft, tgt_len, vocab[1])):
        ids = np.searchsorted(cdf, rng.random(int(lens.sum())))
        text = words[np.minimum(ids, len(words) - 1)]
        ends = np.cumsum(lens)
        lines = [' '.join(text[e - k:e]) for e, k in zip(ends.tolist(), lens.tolist())]
        f.write('\n'.join(lines) + '\n')
  return {'pairs': pairs, 'generate_s': round(time.perf_counter() - t0, 1),
          'raw_bytes': os.path.getsize(path_src) + os.path.getsize(path_tgt)}


def _config(src: str, tgt: str, spm_sentences: int, batch: int):
  """The WMT14 base config's data settings over the generated files; the evaluation splits
  are the first 100 pairs (train_data() reads them first; they are not what is measured)."""
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  path = os.path.join(ROOT, 'experiments', 'wmt14_ende_transformer_base.py')
  config = config_lib.load_config(path, [])
  config.unlock()
  heads = []
  for path in (src, tgt):
    with open(path) as f, open(path + '.head', 'w') as out:
      out.writelines(line for _, line in zip(range(100), f))
    heads.append(path + '.head')
  config.data.update(source='files', train_files=(src, tgt), eval_files=tuple(heads),
                     test_files=tuple(heads), spm_train_sentences=spm_sentences)
  config.batch_size = batch
  return config


def run_phase(args) -> dict:
  """One start of the pipeline, as the trainer does it (setup, train_data, make_batcher);
  then batches on one core."""
  from seq2seq_jax.tasks import translation  # pylint: disable=g-import-not-at-top
  config = _config(args.src, args.tgt, args.spm_sentences, args.batch)
  out = {}
  t0 = time.perf_counter()
  task = translation.Task(config)
  task.setup(args.workdir)
  out['vocab_s'] = time.perf_counter() - t0
  t = time.perf_counter()
  data = task.train_data()
  out['train_data_s'] = time.perf_counter() - t
  t = time.perf_counter()
  batcher = task.make_batcher(*data, batch_size=args.batch, seed=0, shuffle=True)
  out['plan_s'] = time.perf_counter() - t
  out['total_s'] = time.perf_counter() - t0
  out.update(pairs=len(batcher.keep), dropped=batcher.num_dropped,
             batches_per_epoch=batcher.batches_per_epoch, fill=round(batcher.fill, 3))
  os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core from here on
  rng = np.random.default_rng(1)
  steps = rng.integers(0, batcher.batches_per_epoch, args.batches)
  batcher.get_batch(int(steps[0]))
  tokens = 0
  t = time.perf_counter()
  for s in steps:
    b = batcher.get_batch(int(s))
    tokens += int(np.count_nonzero(b['inputs']) + np.count_nonzero(b['targets']))
  dt = time.perf_counter() - t
  out.update(batches_per_s=args.batches / dt, tokens_per_s=tokens / dt,
             peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20)
  return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def train_step_rate() -> dict:
  """The Transformer base train step's tokens/s here (8 rows x 256 + 256 slots)."""
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
  import train_throughput  # pylint: disable=g-import-not-at-top
  peak = train_throughput.peak_flops_per_s()
  r = train_throughput.measure('transformer_base', batch=8, src_len=256, tgt_len=256, steps=2,
                               warmup=1, peak=peak, vocab=37000)
  return {'train_tokens_per_s': r['tokens_per_s'], 'train_step_s': r['step_ms'] / 1000,
          'matmul_flops_per_s': peak}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--pairs', type=int, default=4_500_000)
  p.add_argument('--dir', default='/tmp/input_pipeline_bench', help='corpus and workdir')
  p.add_argument('--spm_sentences', type=int, default=1_000_000,
                 help='data.spm_train_sentences (the WMT configs: 1,000,000)')
  p.add_argument('--batch', type=int, default=96, help='rows of 256 per batch')
  p.add_argument('--batches', type=int, default=200, help='batches timed per phase')
  p.add_argument('--train_step', action='store_true', help='also time the train step')
  p.add_argument('--phase', default='', help=argparse.SUPPRESS)
  p.add_argument('--src', default='', help=argparse.SUPPRESS)
  p.add_argument('--tgt', default='', help=argparse.SUPPRESS)
  p.add_argument('--workdir', default='', help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.phase:
    print(json.dumps(run_phase(args)), flush=True)
    return
  if args.pairs < 1000:
    sys.exit('error: --pairs must be >= 1000')
  os.makedirs(args.dir, exist_ok=True)
  src, tgt = os.path.join(args.dir, 'train.en'), os.path.join(args.dir, 'train.de')
  gen = generate(src, tgt, args.pairs)
  print(json.dumps({'phase': 'generate', **gen}), flush=True)
  workdir = os.path.join(args.dir, 'workdir')
  subprocess.run(['rm', '-rf', workdir], check=True)
  results = {}
  for phase in ('first_run', 'restart'):
    cmd = [sys.executable, os.path.abspath(__file__), '--phase', phase, '--src', src, '--tgt',
           tgt, '--workdir', workdir, '--spm_sentences', str(args.spm_sentences), '--batch',
           str(args.batch), '--batches', str(args.batches)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode:
      sys.exit(f'error: the {phase} process failed:\n{r.stderr[-3000:]}')
    results[phase] = json.loads(r.stdout.strip().splitlines()[-1])
    results[phase]['process_s'] = round(time.perf_counter() - t, 1)
    print(json.dumps({'phase': phase, **results[phase]}), flush=True)
  cache = os.path.join(workdir, 'cache', 'train.array_record')
  summary = {'pairs': args.pairs, 'raw_gb': round(gen['raw_bytes'] / 2 ** 30, 3),
             'cache_gb': round(os.path.getsize(cache) / 2 ** 30, 3),
             'prepare_s': results['first_run']['process_s'],
             'restart_s': results['restart']['process_s'],
             'peak_rss_gb': max(r['peak_rss_gb'] for r in results.values()),
             'tokens_per_s': results['restart']['tokens_per_s']}
  if args.train_step:
    summary.update(train_step_rate())
    summary['pipeline_over_train_step'] = round(
        summary['tokens_per_s'] / summary['train_tokens_per_s'], 1)
  print(json.dumps({'phase': 'summary', **summary}), flush=True)


if __name__ == '__main__':
  main()
