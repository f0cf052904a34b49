r"""A fine-tuned run's weights interpolated with its pretrained checkpoint's (WiSE-FT), evaluated.

  python tools/interpolate_pretrained.py --workdir=runs/whisper_cs --alphas=0.5,0.7,1 \
      --set=decode.method=beam
  python tools/interpolate_pretrained.py --workdir=runs/whisper_cs --alphas=1 \
      --average=750,900 --set=decode.method=beam     # the mean of two checkpoints

Weight-space ensembling (Wortsman et al. 2022, "Robust fine-tuning of zero-shot models"):
the parameters alpha * fine-tuned + (1 - alpha) * pretrained, every leaf (alpha 1: the run's
own checkpoint, 0: the pretrained weights read through the run's config, e.g. its shorter
window). With --average=STEPS the fine-tuned weights are the mean of those checkpoints
(checkpoint averaging) instead of --checkpoint's. For each alpha, the splits are evaluated as `--mode=eval` does (loss, the task's
metrics) and one JSON line is printed per split. Nothing is written into the workdir.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.pretrained import checkpoints as pretrained
from seq2seq_jax.trainer import inference


def mix(tuned, base, alpha: float):
  """alpha * tuned + (1 - alpha) * base, leaf by leaf, in float32, cast to tuned's dtypes."""
  return jax.tree_util.tree_map(
      lambda t, b: (alpha * t.astype(jnp.float32)
                    + (1 - alpha) * jnp.asarray(b, jnp.float32)).astype(t.dtype), tuned, base)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='a fine-tuning run of a model.pretrained')
  p.add_argument('--alphas', default='0.5,0.7,1', help='comma-separated weights of the run')
  p.add_argument('--splits', default='validation,test')
  p.add_argument('--checkpoint', default='best', help="'best', 'latest' or a step")
  p.add_argument('--average', default='', help='comma-separated steps whose mean is the '
                 'fine-tuned weights (instead of --checkpoint)')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='a config override, e.g. decode.method=beam (repeatable)')
  a = p.parse_args(argv)
  try:
    alphas = [float(x) for x in a.alphas.split(',')]
    overrides = [tuple(kv.split('=', 1)) for kv in a.set]
    if any(len(kv) != 2 for kv in overrides):
      raise UserError(f'--set takes KEY=VALUE, got {a.set}')
    first = a.average.split(',')[0] if a.average else a.checkpoint
    model = inference.load(a.workdir, checkpoint=first, overrides=overrides)
    spec = pretrained.spec_of(model.config.model)
    if not spec:
      raise UserError(f'{a.workdir} was not trained from a model.pretrained')
    tuned = model.params
    if a.average:
      steps = [int(x) for x in a.average.split(',')]
      for step in steps[1:]:
        tuned = jax.tree_util.tree_map(
            jnp.add, tuned, inference.load(a.workdir, checkpoint=step, overrides=overrides).params)
      tuned = jax.tree_util.tree_map(lambda x: x / len(steps), tuned)
      model.checkpoint = f'mean of steps {", ".join(map(str, steps))}'
    base = None
    if any(alpha != 1 for alpha in alphas):   # alpha 1 alone needs no pretrained weights
      base = pretrained.load_into(model.run.abstract_state.params, spec, model.run.task)
    for alpha in alphas:
      model.params = tuned if alpha == 1 else mix(tuned, base, alpha)
      for split in a.splits.split(','):
        start = time.perf_counter()
        row = model.evaluate(split)
        print(json.dumps({'alpha': alpha, 'split': split, 'checkpoint': model.checkpoint,
                          **{k: round(v, 4) for k, v in row.items()},
                          'seconds': round(time.perf_counter() - start, 1)}), flush=True)
  except (UserError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
