r"""Which voices does a spoken-digits model miss? Scores a trained run per eSpeak voice.

Transcribes a split of experiments/spoken_digits.py's dataset with the run's best checkpoint
(beam search as configured, the same as --mode=predict) and prints, per voice (language +
variant) and per variant, the utterances, string accuracy and WER, worst first, then the
errors themselves with --errors.

  python tools/spoken_digits_by_voice.py --config=experiments/spoken_digits.py \
      --workdir=runs/digits_las [--split=test] [--errors]
"""
import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
from seq2seq_jax.metrics import error_rates as text_metrics
from seq2seq_jax.trainer import train
from seq2seq_jax.datasets import cmudict as cmudict_builder
from seq2seq_jax.datasets import spoken_digits
from seq2seq_jax.errors import UserError


def _table(title, rows):
  print(f'| {title} | utterances | string accuracy | WER |\n|---|---|---|---|')
  for name, (n, right, errs, words) in sorted(rows.items(), key=lambda r: r[1][1] / r[1][0]):
    print(f'| {name} | {n} | {100 * right / n:.2f}% | {100 * errs / words:.2f}% |')
  print()


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--config', required=True, help='experiments/spoken_digits.py[:variant]')
  p.add_argument('--workdir', required=True, help='a trained run of that config')
  p.add_argument('--split', default='test', choices=spoken_digits.SPLITS)
  p.add_argument('--errors', action='store_true', help='also list every misread utterance')
  p.add_argument('--override', action='append', default=[], metavar='KEY=VALUE',
                 help='config overrides the run was trained with, e.g. model.frontend.vtlp=(0.9,1.1)')
  args = p.parse_args(argv)
  try:
    config = config_lib.load_config(args.config, [tuple(o.split('=', 1)) for o in args.override])
    if config.get('task') != 'speech' or config.data.get('spoken_digits') is None:
      raise UserError(f'{args.config} is not a spoken_digits experiment')
    spec = spoken_digits.SpokenDigitSpec(**{
        k: tuple(v) if isinstance(v, (list, tuple)) else v
        for k, v in dict(config.data.spoken_digits).items()})
    folder = spoken_digits.build(
        cmudict_builder.default_data_dir(str(config.data.get('data_dir', ''))), spec)
    plan = spoken_digits.utterances(spec, args.split)
    paths = [os.path.join(folder, u.name) for u in plan]
    hyps = list(train.predict(config, args.workdir, paths))
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  by_voice = collections.defaultdict(lambda: [0, 0, 0, 0])
  by_variant = collections.defaultdict(lambda: [0, 0, 0, 0])
  wrong = []
  for u, hyp in zip(plan, hyps):
    ref = u.transcript.split()
    errs = text_metrics.edit_distance(ref, hyp.split())
    for table, key in ((by_voice, u.voice), (by_variant, u.voice.split('+')[1])):
      row = table[key]
      row[0] += 1
      row[1] += hyp == u.transcript
      row[2] += errs
      row[3] += len(ref)
    if hyp != u.transcript:
      wrong.append((u, hyp))
  total = [sum(r[i] for r in by_voice.values()) for i in range(4)]
  print(f'{args.workdir}, {args.split}: {total[0]} utterances, string accuracy '
        f'{100 * total[1] / total[0]:.2f}%, WER {100 * total[2] / total[3]:.2f}%\n')
  _table('variant', by_variant)
  _table('voice', by_voice)
  if args.errors:
    for u, hyp in wrong:
      print(f'{u.name}\t{u.voice}\trate {u.rate}\tsnr {u.snr_db:.0f} dB {u.colour}\t'
            f'{u.transcript!r} -> {hyp!r}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
