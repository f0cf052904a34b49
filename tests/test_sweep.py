"""A tiny 2-point sweep end to end: runs, resumes without redoing, tables and plot.

launch.py's --mode=sweep and --mode=compare run in this process (tests/runs.py: cli); the
sweep runs its points as launch.py subprocesses, as it does for a user, on one simulated
device (XLA_FLAGS, which they inherit).
"""
import csv
import json
import os
import shlex
import types

import runs  # tests/runs.py

ROOT = runs.ROOT
ONE_DEVICE = runs.xla_flags(1)

SWEEP_FILE = '''
import importlib.util, os
spec = importlib.util.spec_from_file_location(
    'base', os.path.join({root!r}, 'experiments', 'g2p_cmudict_transformer.py'))
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)


def get_config(arg=''):
  c = base.get_config('smoke')
  c.train_steps = 6
  c.log_every_steps = 3
  c.eval_every_steps = 6
  c.checkpoint_every_steps = 6
  c.data.buckets = (24,)
  c.data.data_dir = {data_dir!r}
  c.data.eval_max_examples = 16
  c.mesh.data = 1
  return c


def get_sweep():
  return {points}
'''
POINTS = ("[{'model.num_decoder_layers': n, 'label_smoothing': s} "
          "for n, s in ((1, 0.0), (2, 0.1))]")


def _run(args):
  """launch.py ARGS in this process: an object with returncode, stdout and stderr."""
  code, out, err = runs.cli(*args)
  return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)


def test_sweep_runs_resumes_and_tabulates(tmp_path, tfds_data_dir, monkeypatch):
  exp = tmp_path / 'tiny_sweep.py'
  exp.write_text(SWEEP_FILE.format(root=ROOT, data_dir=tfds_data_dir, points=POINTS))
  out = tmp_path / 'sweep'
  monkeypatch.setenv('XLA_FLAGS', ONE_DEVICE)  # for the points' processes
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')

  printed = _run([f'--config={exp}', '--mode=sweep', f'--workdir={out}',
                  '--sweep_print_commands'])
  assert printed.returncode == 0, printed.stderr[-2000:]
  commands = [l for l in printed.stdout.splitlines() if l.strip()]
  assert len(commands) == 2 and not out.exists()  # printing runs nothing

  # A printed command is runnable as it is: run point 0 through it (python launch.py, its
  # flags given to launch.py's main here).
  python, launch, *args = shlex.split(commands[0])
  assert os.path.samefile(launch, runs.LAUNCH) and os.path.basename(python).startswith('python')
  first = _run(args)
  assert first.returncode == 0, first.stderr[-2000:]
  point_dirs = sorted(os.listdir(out))
  assert len(point_dirs) == 1 and os.path.exists(out / point_dirs[0] / 'summary.json')

  swept = _run([f'--config={exp}', '--mode=sweep', f'--workdir={out}'])
  assert swept.returncode == 0, swept.stderr[-2000:]
  assert swept.stdout.count('done, skipped') == 1  # point 0 was not redone
  assert f'[sweep] results: {out}/results.csv, {out}/results.md, {out}/results.png' in swept.stdout
  with open(out / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2
  assert [r['model.num_decoder_layers'] for r in rows] == ['1', '2']
  assert [r['label_smoothing'] for r in rows] == ['0.0', '0.1']
  assert int(rows[1]['num_params']) > int(rows[0]['num_params'])
  assert all(0 <= float(r['test/wer']) <= 100 for r in rows)
  md = (out / 'results.md').read_text().splitlines()
  assert md[0].startswith('| point |') and len(md) == 4
  assert (out / 'results.png').stat().st_size > 5000

  again = _run([f'--config={exp}', '--mode=sweep', f'--workdir={out}'])
  assert again.returncode == 0 and again.stdout.count('done, skipped') == 2

  # --mode=compare tabulates and plots finished runs side by side (here the sweep's points).
  # The settings that differ are columns; an unfinished run is skipped and named.
  unfinished = out / '09_unfinished'
  unfinished.mkdir()
  (unfinished / 'config.json').write_text((out / point_dirs[0] / 'config.json').read_text())
  cmp_dir = tmp_path / 'compare'
  compared = _run(['--mode=compare', f'--runs={out}/0*', f'--workdir={cmp_dir}',
                   '--compare_metric=loss'])
  assert compared.returncode == 0, compared.stderr[-2000:]
  assert f'skipped 1 unfinished run(s) (no summary.json): {unfinished}' in compared.stderr
  with open(cmp_dir / 'results.csv') as f:
    cmp_rows = list(csv.DictReader(f))
  assert [r['point'] for r in cmp_rows] == [r['point'] for r in rows]
  assert [r['model.num_decoder_layers'] for r in cmp_rows] == ['1', '2']
  assert [r['label_smoothing'] for r in cmp_rows] == ['0.0', '0.1']
  assert [r['test/wer'] for r in cmp_rows] == [r['test/wer'] for r in rows]
  assert (cmp_dir / 'results.png').stat().st_size > 5000
  bad = _run(['--mode=compare', f'--runs={out / point_dirs[0]}', f'--runs={tmp_path / "nope"}',
              f'--workdir={tmp_path / "compare2"}'])
  assert bad.returncode == 2 and 'not a finished run' in bad.stderr
  assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / 'compare2').exists()


def test_failed_points_make_the_sweep_fail_after_the_rest(tmp_path, monkeypatch, capfd):
  # Cheap: point 0 is made finished here (so it is skipped, not trained), and points 1 and 2
  # ask for a 3- and a 5-device mesh on a 1-device machine, so they fail before reading any
  # data or compiling.
  exp = tmp_path / 'failing_sweep.py'
  exp.write_text(SWEEP_FILE.format(root=ROOT, data_dir=str(tmp_path / 'no_data'),
                                   points="[{'mesh.data': n} for n in (1, 3, 5)]"))
  out = tmp_path / 'sweep'
  done = out / '00_data=1'
  done.mkdir(parents=True)
  (done / 'summary.json').write_text(json.dumps(
      {'num_params': 123, 'train_seconds': 1.0, 'best_metric': 'wer', 'test/wer': 50.0}))
  (done / 'metrics.jsonl').write_text(json.dumps({'step': 6, 'eval/wer': 55.0}) + '\n')
  monkeypatch.setenv('XLA_FLAGS', ONE_DEVICE)  # for the points' processes
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')

  swept = _run([f'--config={exp}', '--mode=sweep', f'--workdir={out}'])
  assert swept.returncode == 2, swept.stderr[-2000:]
  assert swept.stdout.count('done, skipped') == 1
  points = capfd.readouterr().err  # the points' processes write to this process's stderr
  assert points.count('needs 3 devices') == 1  # each point did run, and failed
  assert points.count('needs 5 devices') == 1
  # The sweep's own error is its last line on stderr: one line naming both failed points.
  assert swept.stderr.strip().splitlines()[-1] == (
      f'error: 2 of 3 sweep points failed: 01_data=3 (exit 2), 02_data=5 (exit 2); '
      f'the 1 finished are in {out}/results.md; rerun the same command to retry them')
  with open(out / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['point'], r['test/wer']) for r in rows] == [('00_data=1', '50.0')]
