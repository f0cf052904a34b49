r"""CTranslate2 against our own beam search on an exported translation model: the same beam
output? and sentences per second of each, on the same inputs.

  /work/whisper_env/bin/python benchmarks/ctranslate2_export.py \
      --workdir=runs/ddtp_transformer --export_dir=runs/ddtp_transformer_ct2

Runs in an environment with ctranslate2 (never a dependency of this project; here
/work/whisper_env, which has no jax). Our side runs as a subprocess under `--ours_python`
(this project's environment) with `--side=ours`; it also writes the export first when
`--export_dir` does not exist yet (`launch.py --mode=export`, the workdir's best checkpoint).

Both sides decode the sources of `--split` (the task's evaluation set: every segment, in
order), as SentencePiece pieces of the exported source.model, with beam `--beam_size` and
CTranslate2's ranking: a finished hypothesis scores its summed log-probabilities over
length ** `--length_penalty`, the length counting EOS (the Translator keeps EOS in a
hypothesis until after the ranking), and an item stops once beam_size hypotheses have
finished (ours: decode.length_norm='length_eos', decode.patience=1; CTranslate2:
length_penalty, patience=1, its defaults). Our GNMT penalty (the configs' default) has no CTranslate2
equivalent, so it is not what is compared. Max output length: the run's decode.max_len (EOS
included; CTranslate2's max_decoding_length); batches: the run's data.eval_batch_size
(CTranslate2's max_batch_size, sorted by length as ours are).

Timing: a warm-up first (ours: a whole pass, which compiles every batch shape; CTranslate2:
one batch on the same Translator), then one timed pass
over the whole split: our decode_sources (jit, all cores) against Translator.translate_batch
(device cpu, inter_threads 1, intra_threads = the cores). Tokenization is outside both
timings. Prints identical n/N (token sequences), sentences/s of each, the first differences.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ours(args) -> dict:
  """Our side (this project's environment): pieces of the split's sources, our beam output
  as pieces, and the timed pass."""
  sys.path.insert(0, ROOT)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.data.vocab import EOS_ID  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import inference  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import throughput  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  config = inference.workdir_config(args.workdir)
  with config.unlocked():   # length_norm and patience are optional keys of decode
    config.decode.update(method='beam', beam_size=args.beam_size, alpha=args.length_penalty,
                         length_norm='length_eos', patience=1.0, ctc_weight=0.0)
  model = inference.Loaded(config, args.workdir, args.checkpoint)
  sources = model.run.task.eval_set(args.split).sources
  if args.limit:
    sources = sources[:args.limit]
  src_sp = spm.SentencePieceProcessor(model_file=os.path.join(args.export_dir, 'source.model'))
  tgt_sp = spm.SentencePieceProcessor(model_file=os.path.join(args.export_dir, 'target.model'))
  start = time.perf_counter()
  train.decode_sources(model.run, model.params, sources)         # compiles every shape
  warm = time.perf_counter() - start
  start = time.perf_counter()
  decoded = train.decode_sources(model.run, model.params, sources)
  seconds = time.perf_counter() - start

  def pieces(sp, ids):
    ids = [int(i) for i in ids]
    ids = ids[:ids.index(EOS_ID)] if EOS_ID in ids else ids
    return [sp.id_to_piece(i) for i in ids if i > 0]

  config = model.run.config
  return {'checkpoint': model.checkpoint, 'sources': [pieces(src_sp, s) for s in sources],
          'hypotheses': [pieces(tgt_sp, np.asarray(d)) for d in decoded],
          'seconds': seconds, 'warmup_seconds': warm,
          'host_matmul_flops_per_s': throughput.measured_matmul_flops_per_s(),
          'max_len': int(config.decode.max_len),
          'batch_size': int(config.data.eval_batch_size)}


def forced_scores(args) -> dict:
  """Our side of --differences: each (source index, target pieces) pair's per-token
  log-probabilities (EOS last) as our incremental decoder computes them in a search (init_cache
  and decode_step, one hypothesis), for the pairs in --pairs."""
  sys.path.insert(0, ROOT)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.data.vocab import BOS_ID, EOS_ID  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import inference  # pylint: disable=g-import-not-at-top
  config = inference.workdir_config(args.workdir)
  model = inference.Loaded(config, args.workdir, args.checkpoint)
  run, params = model.run, model.params
  sources = run.task.eval_set(args.split).sources
  tgt_sp = spm.SentencePieceProcessor(model_file=os.path.join(args.export_dir, 'target.model'))
  with open(args.pairs) as f:
    pairs = json.load(f)
  max_len = int(config.decode.max_len)
  init = jax.jit(lambda p, x: run.model.apply({'params': p}, x, max_len, 1,
                                              method='init_cache'))
  step = jax.jit(lambda p, t, c: run.model.apply({'params': p}, t, c, method='decode_step'))
  out = []
  for index, target in pairs:
    ids = [tgt_sp.piece_to_id(x) for x in target] + [EOS_ID]
    inputs = run.task.collate_sources([sources[index]], 1)
    c = init(params, inputs['inputs'])
    last, lps = BOS_ID, []
    for t in ids:
      logits, c = step(params, np.array([last], np.int32), c)
      lps.append(float(jax.nn.log_softmax(logits[0].astype(np.float32))[t]))
      last = t
    out.append(lps)
  return {'log_probs': out}


def ctranslate2_side(request: dict) -> dict:
  sys.path.insert(0, os.path.join(ROOT, 'tools'))
  import ctranslate2_translate  # pylint: disable=g-import-not-at-top
  return ctranslate2_translate.run(request)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='the training run')
  p.add_argument('--export_dir', required=True, help='its CTranslate2 export (made if absent)')
  p.add_argument('--checkpoint', default=None, help="'best' (default), 'latest' or a step")
  p.add_argument('--split', default='test')
  p.add_argument('--beam_size', type=int, default=4)
  p.add_argument('--length_penalty', type=float, default=1.0)
  p.add_argument('--limit', type=int, default=0, help='the first N sources only (0: all)')
  p.add_argument('--ours_python', default=os.path.join(ROOT, '.venv', 'bin', 'python'))
  p.add_argument('--json', default='', help='also write the figures here')
  p.add_argument('--differences', default='',
                 help='write every differing sentence here, with both sides\' scores of both '
                 'hypotheses')
  p.add_argument('--side', default='compare', choices=('compare', 'ours', 'score'))
  p.add_argument('--out', default='', help='--side=ours/score: where its JSON goes')
  p.add_argument('--pairs', default='', help='--side=score: [[source index, pieces], ...]')
  args = p.parse_args()
  if args.side in ('ours', 'score'):
    with open(args.out, 'w') as f:
      json.dump(ours(args) if args.side == 'ours' else forced_scores(args), f)
    return

  env = dict(os.environ, PYTHONPATH=ROOT)
  if not os.path.exists(args.export_dir):
    cmd = [args.ours_python, os.path.join(ROOT, 'launch.py'), '--mode=export',
           f'--workdir={args.workdir}', f'--export_dir={args.export_dir}']
    if args.checkpoint:
      cmd.append(f'--checkpoint={args.checkpoint}')
    subprocess.run(cmd, check=True, env=env)
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'ours.json')
    cmd = [args.ours_python, os.path.abspath(__file__), '--side=ours', f'--out={out}',
           *[f'--{k}={v}' for k, v in vars(args).items()
             if k in ('workdir', 'export_dir', 'checkpoint', 'split', 'beam_size',
                      'length_penalty', 'limit') and v is not None]]
    subprocess.run(cmd, check=True, env=env)
    with open(out) as f:
      our = json.load(f)
  options = {'beam_size': args.beam_size, 'length_penalty': args.length_penalty,
             'patience': 1.0, 'max_decoding_length': our['max_len'], 'max_input_length': 0,
             'max_batch_size': our['batch_size'], 'batch_type': 'examples'}
  sources = our['sources']
  theirs = ctranslate2_side({'model_dir': args.export_dir, 'sources': sources,
                             'translate': options, 'warmup': True})
  same = [a == b for a, b in zip(our['hypotheses'], theirs['hypotheses'])]
  n = len(sources)
  result = {'workdir': os.path.abspath(args.workdir), 'checkpoint': our['checkpoint'],
            'split': args.split, 'sentences': n, 'identical': sum(same),
            'identical_fraction': sum(same) / max(n, 1), 'beam_size': args.beam_size,
            'length_penalty': args.length_penalty, 'max_len': our['max_len'],
            'batch_size': our['batch_size'],
            'ours_sentences_per_s': n / our['seconds'], 'ours_seconds': our['seconds'],
            'ours_warmup_seconds': our['warmup_seconds'],
            'ctranslate2_sentences_per_s': n / theirs['seconds'],
            'ctranslate2_seconds': theirs['seconds'], 'ctranslate2': theirs['version'],
            'ctranslate2_intra_threads': theirs['intra_threads'], 'cpus': os.cpu_count(),
            'host_matmul_flops_per_s': float(f'{our["host_matmul_flops_per_s"]:.3g}')}
  print(json.dumps(result, indent=2))
  shown = 0
  for i, ok in enumerate(same):
    if not ok and shown < 5:
      shown += 1
      print(f'differs #{i}: source {" ".join(sources[i])}\n  ours        '
            f'{" ".join(our["hypotheses"][i])}\n  ctranslate2 {" ".join(theirs["hypotheses"][i])}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=2)
  if args.differences:
    differences(args, env, sources, our['hypotheses'], theirs['hypotheses'], same)


def _score(log_probs: list[float], penalty: float) -> float:
  """The Translator's ranking of a finished hypothesis: summed log-probs over its token
  count, EOS included, ** length_penalty."""
  return sum(log_probs) / len(log_probs) ** penalty


def differences(args, env, sources, ours_h, theirs_h, same) -> None:
  """Scores both hypotheses of every differing sentence with both implementations (ours:
  the search's incremental decoder; CTranslate2: score_batch) and writes them with a summary:
  a sentence where the two implementations prefer different hypotheses is a near-tie that
  float differences decide; one where both prefer the same hypothesis is a search that
  missed it."""
  rows = [i for i, ok in enumerate(same) if not ok]
  pairs = [[i, h] for i in rows for h in (ours_h[i], theirs_h[i])]
  their_lp = ctranslate2_side({'model_dir': args.export_dir,
                               'sources': [sources[i] for i, _ in pairs],
                               'targets': [h for _, h in pairs]})['log_probs']
  with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, 'pairs.json'), 'w') as f:
      json.dump(pairs, f)
    out = os.path.join(tmp, 'scores.json')
    cmd = [args.ours_python, os.path.abspath(__file__), '--side=score', f'--out={out}',
           f'--pairs={os.path.join(tmp, "pairs.json")}',
           *[f'--{k}={v}' for k, v in vars(args).items()
             if k in ('workdir', 'export_dir', 'checkpoint', 'split') and v is not None]]
    subprocess.run(cmd, check=True, env=env)
    with open(out) as f:
      our_lp = json.load(f)['log_probs']
  lp = args.length_penalty
  table, kinds, gap = [], {}, []
  for n, i in enumerate(rows):
    o, t = 2 * n, 2 * n + 1
    ours_pref = _score(our_lp[o], lp) >= _score(our_lp[t], lp)
    theirs_pref = _score(their_lp[o], lp) >= _score(their_lp[t], lp)
    kind = ('implementations disagree' if ours_pref != theirs_pref else
            'both prefer ours' if ours_pref else 'both prefer ctranslate2\'s')
    kinds[kind] = kinds.get(kind, 0) + 1
    gap += [abs(a - b) for k in (o, t) for a, b in zip(our_lp[k], their_lp[k])]
    table.append({'index': i, 'source': sources[i], 'ours': ours_h[i], 'ctranslate2': theirs_h[i],
                  'kind': kind,
                  'score_by_ours': [_score(our_lp[o], lp), _score(our_lp[t], lp)],
                  'score_by_ctranslate2': [_score(their_lp[o], lp), _score(their_lp[t], lp)],
                  'log_probs_by_ours': [our_lp[o], our_lp[t]],
                  'log_probs_by_ctranslate2': [their_lp[o], their_lp[t]]})
  gap = sorted(gap)
  summary = {'differing': len(rows), 'kinds': kinds,
             'token_log_prob_gap': {'median': gap[len(gap) // 2] if gap else 0.0,
                                    'max': gap[-1] if gap else 0.0},
             'rows': table}
  with open(args.differences, 'w') as f:
    json.dump(summary, f, indent=1, ensure_ascii=False)
  print(json.dumps({k: v for k, v in summary.items() if k != 'rows'}, indent=2))


if __name__ == '__main__':
  main()
