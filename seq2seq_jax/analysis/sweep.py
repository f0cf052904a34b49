"""Ablation sweeps: an experiment file's get_sweep() -> list of {dotted key: value} points.

`launch.py --mode=sweep --workdir=DIR` runs every point in DIR/<NN>_<slug>/ (one launch.py
process each, sequentially; finished points are skipped, interrupted ones resume from their
checkpoints), then writes DIR/results.csv, DIR/results.md and DIR/results.png for the
finished points, and fails naming any point that did not finish.
With --sweep_print_commands it only prints one launch.py command per point, for a scheduler.
`--mode=compare --runs=DIR1 --runs=DIR2 ...` writes the same table and plot for finished runs.
"""
import csv
import io
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Any, Sequence

from seq2seq_jax import config as config_lib
from seq2seq_jax import paths
from seq2seq_jax.errors import UserError
from seq2seq_jax.trainer import metric_writer
from seq2seq_jax.trainer import run_files

_LAUNCH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'launch.py')


def load_points(spec: str) -> list[dict[str, Any]]:
  """The sweep points of an experiment file, validated against its config."""
  path = spec.partition(':')[0]
  module = config_lib.load_module(path)
  if not hasattr(module, 'get_sweep'):
    raise UserError(f'{path} defines no get_sweep()')
  points = module.get_sweep()
  if not isinstance(points, (list, tuple)) or not points or not all(
      isinstance(p, dict) for p in points):
    raise UserError(f'{path}: get_sweep() must return a non-empty list of dicts')
  return [dict(p) for p in points]


def _value_text(value: Any) -> str:
  return value if isinstance(value, str) else repr(value)


def point_name(index: int, point: dict[str, Any]) -> str:
  """A readable, filesystem-safe sub-directory name, unique by its index prefix."""
  parts = [f'{k.split(".")[-1]}={_value_text(v)}' for k, v in point.items()]
  slug = re.sub(r'[^A-Za-z0-9=.,_-]+', '', ','.join(parts))[:80]
  return f'{index:02d}_{slug}' if slug else f'{index:02d}'


def point_command(spec: str, base: Sequence[tuple[str, str]], point: dict[str, Any],
                  workdir: str) -> list[str]:
  """The launch.py command line that trains one point."""
  path, sep, arg = spec.partition(':')
  spec = os.path.abspath(path) + sep + arg  # runnable from any directory
  cmd = [sys.executable, _LAUNCH, f'--config={spec}', f'--workdir={workdir}']
  cmd += [f'--config.{k}={v}' for k, v in base]
  cmd += [f'--config.{k}={_value_text(v)}' for k, v in point.items()]
  return cmd


def run(spec: str, base_overrides: Sequence[tuple[str, str]], workdir: str,
        print_only: bool = False) -> list[dict[str, Any]]:
  """Runs (or prints) every point, then tabulates and plots the finished ones.

  Returns:
    The table rows, one per finished point ([] with print_only).

  Raises:
    UserError: a point's overrides are invalid (before anything runs), or a point failed
      (after every other point ran and the finished ones were tabulated).
  """
  points = load_points(spec)
  # Validate every point's overrides before spending any compute.
  for p in points:
    config_lib.load_config(spec, list(base_overrides) + [(k, _value_text(v)) for k, v in p.items()])
  workdir = paths.check(workdir, '--workdir', workdir=True)
  dirs = [os.path.join(workdir, point_name(i, p)) for i, p in enumerate(points)]
  if print_only:
    for p, d in zip(points, dirs):
      print(shlex.join(point_command(spec, base_overrides, p, d)))
    return []
  paths.makedirs(workdir)
  failed = []
  for i, (p, d) in enumerate(zip(points, dirs)):
    summary = os.path.join(d, 'summary.json')
    if paths.exists(summary):
      print(f'[sweep] point {i + 1}/{len(points)} {os.path.basename(d)}: done, skipped',
            flush=True)
      continue
    print(f'[sweep] point {i + 1}/{len(points)} {os.path.basename(d)}', flush=True)
    t0 = time.time()
    proc = subprocess.run(point_command(spec, base_overrides, p, d), check=False)
    if proc.returncode or not paths.exists(summary):  # only a summary means it finished
      failed.append(f'{os.path.basename(d)} (exit {proc.returncode})')
      print(f'[sweep] point {os.path.basename(d)} failed (exit {proc.returncode}) after '
            f'{time.time() - t0:.0f}s; continuing', flush=True)
  rows = collect(points, dirs)
  write_results(workdir, rows)
  if rows:
    print('[sweep] results: ' + ', '.join(
        os.path.join(workdir, f)
        for f in ('results.csv', 'results.md', 'results.png')), flush=True)
  if failed:  # a sweep with holes in its table must not look like a finished one
    done = f'; the {len(rows)} finished are in {workdir}/results.md' if rows else ''
    raise UserError(f'{len(failed)} of {len(points)} sweep points failed: {", ".join(failed)}'
                    f'{done}; rerun the same command to retry them')
  return rows


def collect(points: list[dict[str, Any]], dirs: list[str]) -> list[dict[str, Any]]:
  """One row per finished point: overrides, final test metrics, params, train time."""
  rows = []
  for p, d in zip(points, dirs):
    path = os.path.join(d, 'summary.json')
    if not paths.exists(path):
      continue
    summary = run_files.read_json(path)
    if summary is None:   # cut off (a crash while writing it): not a finished run
      continue
    curve = metric_writer.read(d)
    row = {'point': os.path.basename(d), **{k: _value_text(v) for k, v in p.items()}}
    row['num_params'] = summary.get('num_params')
    row['train_seconds'] = summary.get('train_seconds')
    # Test metrics, the one the best checkpoint is chosen by first, then the rest by name.
    best = f"test/{summary.get('best_metric', '')}"
    tests = sorted((k for k in summary if k.startswith('test/')
                    and k not in ('test/seconds', 'test/examples')), key=lambda k: (k != best, k))
    for k in tests:
      row[k] = summary[k]
    row['_curve'] = curve
    row['_best_metric'] = summary.get('best_metric', '')
    rows.append(row)
  return rows


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f'{v:.2f}'
  return '' if v is None else str(v)


def write_results(workdir: str, rows: list[dict[str, Any]], metric: str = '') -> None:
  """DIR/results.csv, DIR/results.md and DIR/results.png (validation `metric` vs step)."""
  if not rows:
    return
  cols = []
  for r in rows:
    cols += [k for k in r if not k.startswith('_') and k not in cols]
  table = io.StringIO(newline='')
  w = csv.DictWriter(table, fieldnames=cols)
  w.writeheader()
  for r in rows:
    w.writerow({k: r.get(k, '') for k in cols})
  paths.write_atomic(os.path.join(workdir, 'results.csv'), table.getvalue())
  md = ['| ' + ' | '.join(cols) + ' |\n', '|' + '---|' * len(cols) + '\n']
  md += ['| ' + ' | '.join(_fmt(r.get(k)) for k in cols) + ' |\n' for r in rows]
  paths.write_atomic(os.path.join(workdir, 'results.md'), ''.join(md))
  _plot(workdir, rows, metric)


def compare(run_dirs: Sequence[str], workdir: str, metric: str = '') -> list[dict[str, Any]]:
  """Tabulates and plots finished runs side by side, like a sweep's points.

  Args:
    run_dirs: workdirs of finished runs (each has summary.json and metrics.jsonl), or glob
      patterns of them.
    workdir: where results.csv, results.md and results.png go (created if needed).
    metric: the validation metric to plot (e.g. 'wer_nostress'); default: the runs' own
      best-checkpoint metric.

  Returns:
    The table rows.

  Raises:
    UserError: a directory that is not a finished run, or a metric no run logged.
  """
  dirs = []
  for pattern in run_dirs:
    if glob.has_magic(pattern):
      found = sorted(d for d in paths.glob(pattern) if paths.isdir(d))
      if not found:
        raise UserError(f'--runs={pattern} matches no directory')
      dirs += found
    else:
      dirs.append(pattern)
  run_dirs = [paths.check(d, '--runs') if paths.is_remote(d) else os.path.normpath(d)
              for d in dirs]
  if not run_dirs:
    raise UserError('--mode=compare needs --runs=DIR (repeat the flag for more runs)')
  for d in run_dirs:
    if not paths.isdir(d):
      raise UserError(f'{d} is not a finished run (no such directory)')
  unfinished = [d for d in run_dirs if not paths.exists(os.path.join(d, 'summary.json'))]
  if unfinished:   # a run still training (or stopped) is left out, by name
    print(f'[compare] skipped {len(unfinished)} unfinished run(s) (no summary.json): '
          + ', '.join(unfinished), file=sys.stderr, flush=True)
  run_dirs = [d for d in run_dirs if d not in unfinished]
  if not run_dirs:
    raise UserError('no finished run to compare (none has a summary.json)')
  # The settings that differ between the runs are the table's first columns.
  rows = collect(differing_settings(run_dirs), run_dirs)  # rows named by directory basename
  if len({r['point'] for r in rows}) < len(rows):     # clashing basenames: use whole paths
    for row, d in zip(rows, run_dirs):
      row['point'] = d
  if metric and not any(f'eval/{metric}' in m for r in rows for m in r['_curve']):
    raise UserError(f'no run logged eval/{metric}')
  workdir = paths.check(workdir, '--workdir')
  paths.makedirs(workdir)
  write_results(workdir, rows, metric)
  return rows


def _flat(d: Any, prefix: str = '') -> dict[str, Any]:
  if not isinstance(d, dict):
    return {prefix: d}
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f'{prefix}.{k}' if prefix else str(k)))
  return out


def differing_settings(run_dirs: Sequence[str]) -> list[dict[str, Any]]:
  """Per run, the config settings (dotted keys) whose values are not the same in every run:
  what a comparison is about. A run without a readable config.json gives none."""
  configs = []
  for d in run_dirs:
    try:
      configs.append(_flat(json.loads(paths.read_text(os.path.join(d, 'config.json')))))
    except (OSError, ValueError):
      configs.append({})
  keys = sorted({k for c in configs for k in c})
  differ = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
  return [{k: c.get(k) for k in differ} for c in configs]


def _plot(workdir: str, rows: list[dict[str, Any]], metric: str = '') -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  metric = f'eval/{metric}' if metric else next(
      (f'eval/{r["_best_metric"]}' for r in rows if r['_best_metric']), 'eval/loss')
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for r in rows:
    pts = [(m['step'], m[metric]) for m in r['_curve'] if metric in m]
    if pts:
      ax.plot(*zip(*pts), marker='o', label=r['point'])
  ax.set_xlabel('step')
  ax.set_ylabel(f'validation {metric.split("/", 1)[1]}')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format='png', dpi=120)
  paths.write_atomic(os.path.join(workdir, 'results.png'), png.getvalue())
  plt.close(fig)
