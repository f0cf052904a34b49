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
length ** `--length_penalty` and an item stops once beam_size hypotheses have finished
(ours: decode.length_norm='length', decode.patience=1; CTranslate2: length_penalty,
patience=1, its defaults). Our GNMT penalty (the configs' default) has no CTranslate2
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
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  config = inference.workdir_config(args.workdir)
  with config.unlocked():   # length_norm and patience are optional keys of decode
    config.decode.update(method='beam', beam_size=args.beam_size, alpha=args.length_penalty,
                         length_norm='length', patience=1.0, ctc_weight=0.0)
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
          'max_len': int(config.decode.max_len),
          'batch_size': int(config.data.eval_batch_size)}


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
  p.add_argument('--side', default='compare', choices=('compare', 'ours'))
  p.add_argument('--out', default='', help='--side=ours: where its JSON goes')
  args = p.parse_args()
  if args.side == 'ours':
    with open(args.out, 'w') as f:
      json.dump(ours(args), f)
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
            'ctranslate2_intra_threads': theirs['intra_threads'], 'cpus': os.cpu_count()}
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


if __name__ == '__main__':
  main()
