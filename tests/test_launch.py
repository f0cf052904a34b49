"""launch.py end to end on a tiny G2P config: train, eval, predict, info, and error paths.

launch.py's main runs in this process (tests/runs.py: cli; its one-line errors are a
SystemExit with code 2), on the session's tiny run (conftest.py: g2p_run) and the real
dictionary. Two things need processes of their own: the CLI itself (one run killed with
SIGKILL, resumed as a user would, and one user error with no traceback).
"""
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

import runs  # tests/runs.py

ROOT = runs.ROOT
CONFIG = os.path.join(ROOT, 'experiments', 'g2p_cmudict_transformer.py') + ':smoke'
# One bucket and one device: one compiled train program, the fastest possible runs.
TINY = ['--config.data.buckets=(24,)', '--config.mesh.data=1']
STEPS = 16


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def snapshot(path: str) -> dict[str, tuple[int, float]]:
  out = {}
  for d, _, files in os.walk(path):
    for name in files:
      p = os.path.join(d, name)
      st = os.stat(p)
      out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime)
  return out


def one_line_error(code: int, err: str, message: str) -> None:
  assert code == 2, err
  assert message in err, err
  assert len([l for l in err.splitlines() if l.strip()]) == 1, err


def assert_same_losses(got: dict[int, float], ref: dict[int, float], steps) -> None:
  for s in steps:
    assert got[s] == pytest.approx(ref[s], rel=1e-6, abs=1e-7), s


def test_train_writes_metrics_checkpoints_and_summary(g2p_run):
  rows = read_metrics(g2p_run.workdir)
  train_rows = [r for r in rows if 'train/loss' in r]
  eval_rows = [r for r in rows if 'eval/wer' in r]
  assert [r['step'] for r in train_rows] == list(range(1, STEPS + 1))
  assert all(r['train/loss'] > 0 for r in train_rows)
  assert train_rows[-1]['train/loss'] < train_rows[0]['train/loss']
  assert [r['step'] for r in eval_rows] == [8, 16]
  # (PER counts insertions too: above 100 while the model has not learnt where words end.)
  assert all(0 <= r['eval/per'] and 0 <= r['eval/wer'] <= 100 for r in eval_rows)
  # TensorBoard: the scalars, the run's settings for the HParams dashboard, and decoded
  # validation samples (input, output, reference) at each evaluation.
  events = [e for file in runs.tb_events(g2p_run.workdir) for e in file]
  tags = {(v.tag, e.step) for e in events for v in e.summary.value}
  assert ('train/loss', 1) in tags and ('eval/wer', 16) in tags
  hparams = [v for e in events for v in e.summary.value
             if v.metadata.plugin_data.plugin_name == 'hparams']
  assert len(hparams) == 3   # the experiment, the session start and end
  assert any(b'model.num_heads' in v.metadata.plugin_data.content for v in hparams)
  samples = [(e.step, v.tensor.string_val[0].decode()) for e in events
             for v in e.summary.value if v.tag.startswith('eval/samples')]
  assert [s for s, _ in samples] == [8, 16]
  assert all(t.startswith('| input | output | reference |') and t.count('\n') == 5
             for _, t in samples)
  with open(os.path.join(g2p_run.workdir, 'config.json')) as f:
    assert json.load(f)['model']['name'] == 'transformer'
  assert sorted(os.listdir(os.path.join(g2p_run.workdir, 'checkpoints')),
                key=int) == ['8', '12', '16']
  summary = [l for l in g2p_run.stdout.splitlines() if l.startswith('SUMMARY ')]
  assert len(summary) == 1
  # Start-up says what it does; the first step's compile stays out of steps/s and the ETA.
  lines = g2p_run.stdout.splitlines()
  assert any(l.startswith('step 1: compiling the train step') for l in lines)
  first = lines.index(next(l for l in lines if '(compiling included)' in l))
  assert lines[first + 1].startswith('step 1/16 | loss ') and 'steps/s' not in lines[first + 1]
  assert 'steps/s' in lines[first + 2] and 'step 2/16' in lines[first + 2]
  s = json.loads(summary[0][len('SUMMARY '):])
  assert 0 <= s['test/wer'] <= 100 and 0 <= s['test/per']
  # Time is booked where it is spent: evaluation holds at least what the evaluations
  # themselves measured, and none of it is in train_seconds.
  evals = sum(r['eval/seconds'] for r in rows if 'eval/seconds' in r) + s['test/seconds']
  assert s['eval_seconds'] >= evals - 0.05
  assert 0 < s['train_seconds'] and s['checkpoint_seconds'] >= 0
  out = g2p_run.stdout
  assert 'steps/s' in out and 'tok/s' in out and 'ETA' in out
  assert 'MFU' in out and 'train/mfu' not in train_rows[0]   # step 1: no interval to rate
  assert all(0 < r['train/mfu'] < 1 for r in train_rows[1:])


def test_eval_mode_reads_the_runs_config_picks_a_checkpoint_and_writes_its_figures(
    g2p_run, tmp_path):
  """--mode=eval without --config reads DIR/config.json; it scores the best checkpoint by
  default (or --checkpoint=latest / STEP), shows progress on stderr, prints one JSON line per
  split and writes DIR/eval_<split>_<step>.json."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(g2p_run.workdir, workdir)
  summary = json.load(open(os.path.join(workdir, 'summary.json')))
  best = int(re.search(r'step (\d+)', summary['checkpoint']).group(1))
  code, out, err = runs.cli(f'--workdir={workdir}', '--mode=eval')
  assert code == 0, err[-3000:]
  rows = [json.loads(l) for l in out.splitlines()]
  tags = {(v.tag, e.step): v.simple_value for e in runs.tb_events(workdir)[-1]
          for v in e.summary.value}
  assert tags[('eval_mode/test/wer', best)] == pytest.approx(rows[1]['wer'], rel=1e-6)
  assert [r['split'] for r in rows] == ['validation', 'test']
  assert all(r['step'] == best and 'per' in r and 'wer' in r for r in rows)
  assert rows[0]['checkpoint'] == f'best (step {best})'
  assert 'eval test: finished in' in err and 'decoded' in err
  for row in rows:
    with open(os.path.join(workdir, f'eval_{row["split"]}_{best}.json')) as f:
      assert json.load(f) == row
  # The best checkpoint's test figures are the ones the run's own summary reported.
  assert abs(rows[1]['wer'] - summary['test/wer']) < 1e-6
  # An evaluation whose figures differ (another decode setting) keeps the earlier file's as
  # eval_<split>_<step>.1.json; one with the same figures replaces nothing.
  path = os.path.join(workdir, f'eval_test_{best}.json')
  earlier = {**rows[1], 'wer': 99.0}
  with open(path, 'w') as f:
    json.dump(earlier, f)
  code, out, err = runs.cli(f'--workdir={workdir}', '--mode=eval')
  assert code == 0, err[-3000:]
  with open(path) as f:
    assert json.load(f) == json.loads(out.splitlines()[1])
  with open(os.path.join(workdir, f'eval_test_{best}.1.json')) as f:
    assert json.load(f) == earlier
  assert not os.path.exists(os.path.join(workdir, f'eval_validation_{best}.1.json'))
  assert f'kept as eval_test_{best}.1.json' in err
  code, out, err = runs.cli(f'--workdir={workdir}', '--mode=eval', '--checkpoint=latest')
  assert code == 0 and all(json.loads(l)['step'] == STEPS for l in out.splitlines()), err
  code, out, err = runs.cli(f'--workdir={workdir}', '--mode=eval', '--checkpoint=12')
  assert code == 0 and all(json.loads(l)['step'] == 12 for l in out.splitlines()), err
  for bad, message in (('5', 'no such checkpoint .* \\(kept: 8, 12, 16\\)'),
                       ('newest', "must be 'best', 'latest' or a step number")):
    code, out, err = runs.cli(f'--workdir={workdir}', '--mode=eval', f'--checkpoint={bad}')
    assert code == 2 and re.search(message, err) and out == '', err


def test_a_loaded_model_predicts_many_times_without_recompiling(g2p_run):
  """seq2seq_jax.load: restored once; a second call with new inputs compiles nothing."""
  import seq2seq_jax  # pylint: disable=g-import-not-at-top
  model = seq2seq_jax.load(g2p_run.workdir, checkpoint='latest')
  assert model.step == STEPS
  first = model.predict(['hello', 'world'])
  compiled = model.run.predict_step._cache_size()  # pylint: disable=protected-access
  second = model.predict(['table', '', 'hello'])
  assert model.run.predict_step._cache_size() == compiled  # pylint: disable=protected-access
  assert len(first) == 2 and len(second) == 3 and second[1] == '' and second[2] == first[0]
  assert all(tok.isupper() or tok[:-1].isupper() for tok in first[0].split())
  # The same as --mode=predict gives (which also reads the run's config.json by itself).
  code, out, err = runs.cli(f'--workdir={g2p_run.workdir}', '--mode=predict',
                            '--checkpoint=latest', stdin='hello\nworld\n')
  assert code == 0 and out.splitlines() == first, err


def test_predict_mode_keeps_order_and_survives_odd_input(g2p_run):
  lines = ['hello', '', 'WORLD', 'ab\u00e9c', 'x' * 60]
  code, out, err = runs.cli(*g2p_run.args, f'--workdir={g2p_run.workdir}', '--mode=predict',
                            stdin='\n'.join(lines) + '\n')
  assert code == 0, err[-3000:]
  out = out.split('\n')
  assert out[-1] == '' and len(out) - 1 == len(lines)
  assert out[1] == ''
  for i in (0, 2, 3, 4):
    assert all(tok.isupper() or tok[:-1].isupper() for tok in out[i].split())
  assert err.count('outside the vocabulary') == 1


def test_decode_method_is_reachable_from_config(g2p_run, tmp_path):
  words = '\n'.join(['phoneme', 'table', 'wonderful', 'xylophone']) + '\n'
  base = [*g2p_run.args, f'--workdir={g2p_run.workdir}']
  sample = ['--mode=predict', '--config.decode.method=sample', '--config.decode.temperature=2.0']
  first, again = runs.cli(*base, *sample, stdin=words), runs.cli(*base, *sample, stdin=words)
  greedy = runs.cli(*base, '--mode=predict', '--config.decode.method=greedy', stdin=words)
  for code, out, err in (first, again, greedy):
    assert code == 0, err[-3000:]
    assert len(out.splitlines()) == 4
  assert first[1] == again[1]            # samples are drawn from the seed
  assert first[1] != greedy[1]           # ... and really are samples at T = 2
  copy = str(tmp_path / 'run')   # eval writes its figures into the workdir
  shutil.copytree(g2p_run.workdir, copy)
  code, out, err = runs.cli(*g2p_run.args, f'--workdir={copy}', '--mode=eval',
                            '--config.decode.method=greedy', '--config.data.eval_max_examples=8')
  assert code == 0, err[-3000:]
  rows = [json.loads(l) for l in out.splitlines() if l.startswith('{')]
  assert [r['split'] for r in rows] == ['validation', 'test']


def test_info_mode_counts_params_abstractly():
  code, out, err = runs.cli(f'--config={CONFIG}', '--mode=info', '--config.model.emb_dim=48')
  assert code == 0, err[-3000:]
  info = json.loads(out)
  assert info['config']['model']['emb_dim'] == 48
  assert isinstance(info['num_params'], int) and info['num_params'] > 10_000


@pytest.mark.parametrize('args,message', [
    (['--config=missing/nothing.py', '--mode=info'], 'config file not found'),
    ([f'--config={CONFIG}', '--mode=info', '--config.batch_size=big'], 'expected an int'),
    ([f'--config={CONFIG}', '--mode=info', '--config.model.name=bogus'], "unknown model.name"),
    ([f'--config={CONFIG}', '--mode=train'], 'needs --workdir'),
    ([f'--config={CONFIG}', '--mode=dance', '--workdir=/tmp/x'], 'mode'),
    ([f'--config={CONFIG}', '--mode=info', '--config.decode.top_k=5'],
     "read only by decode.method='sample'"),
    ([f'--config={CONFIG}', '--mode=info', '--config.decode.method=nucleus'],
     'decode.method must be one of'),
    ([f'--config={CONFIG}', '--mode=info', '--config.decode.ctc_weight=0.3'],
     "decode.ctc_weight=0.3 reads the model's CTC head, but model.ctc_weight is 0"),
    ([f'--config={CONFIG}', '--mode=info', '--config.batch_size'], 'needs a value'),
    ([f'--config={CONFIG}', '--mode=info', 'extra'], 'unexpected arguments: extra'),
])
def test_user_mistakes_get_one_line_and_nonzero_exit(args, message):
  code, _, err = runs.cli(*args)
  assert code != 0
  assert message in err
  assert len([l for l in err.splitlines() if l.strip()]) <= 2, err


def test_cli_user_error_is_one_line_without_traceback():
  """The CLI as a user meets it (its own process): a mistake is one line and exit code 2."""
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=runs.xla_flags(1))
  proc = subprocess.run([sys.executable, runs.LAUNCH, f'--config={CONFIG}', '--mode=info',
                         '--config.model.nope=1'], capture_output=True, text=True, env=env,
                        cwd=ROOT, timeout=300)
  assert proc.returncode == 2
  assert 'unknown config key' in proc.stderr and 'Traceback' not in proc.stderr
  assert len([l for l in proc.stderr.splitlines() if l.strip()]) == 1, proc.stderr


def test_mismatched_checkpoint_is_refused_and_nothing_changes(g2p_run):
  before = snapshot(g2p_run.workdir)
  code, _, err = runs.cli(*g2p_run.args, f'--workdir={g2p_run.workdir}',
                          '--config.model.emb_dim=48')
  assert code == 2
  assert 'different model' in err and 'emb_dim' in err
  assert snapshot(g2p_run.workdir) == before


def test_a_run_from_before_a_model_setting_existed_is_accepted(g2p_run, tmp_path):
  """A run's config.json that leaves out a model setting (trained before the setting was
  added) matches a config that gives the setting its default, and no other value."""
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.models import model_defaults  # pylint: disable=g-import-not-at-top
  old = str(tmp_path / 'old_run')
  shutil.copytree(g2p_run.workdir, old)
  with open(os.path.join(old, 'config.json')) as f:
    saved = json.load(f)
  defaults = model_defaults(saved['model']['name'])
  key = next(k for k, v in saved['model'].items() if k != 'name' and defaults.get(k) == v)
  del saved['model'][key]
  with open(os.path.join(old, 'config.json'), 'w') as f:
    json.dump(saved, f)
  ckpt = Checkpointer(old, read_only=True)
  assert ckpt.latest_step() is not None
  workdir_lib.check(config_lib.load_config(CONFIG), old, ckpt)  # accepted
  other = json.dumps(defaults[key] + 1 if isinstance(defaults[key], (int, float))
                     and not isinstance(defaults[key], bool) else not defaults[key])
  with pytest.raises(UserError, match=f'different model .model.{key}: '):
    workdir_lib.check(config_lib.load_config(CONFIG, [(f'model.{key}', other)]), old, ckpt)


def test_sigkill_and_restart_gives_identical_losses(tmp_path, g2p_run):
  """Token batches (pipeline.TokenBatcher), and the CLI as a user runs it: a process killed
  hard after its first checkpoint, then restarted, repeats the session run's losses."""
  kill_dir = str(tmp_path / 'killed')
  # Kill hard as soon as the first checkpoint (step 4) is committed (orbax renames it into
  # place). Orbax starts a save only once the previous one is committed, so the run is then
  # at most at step 12, waiting for the step-8 save: well short of its last step, 16.
  killed_output = runs.kill_at_checkpoint(
      runs.launch([*g2p_run.args, f'--workdir={kill_dir}']), kill_dir, 4)
  # It died of the SIGKILL, mid-run: not at its last step, and with no final report.
  assert 'step 4/16' in killed_output  # its progress lines were captured, so:
  assert 'step 16/16' not in killed_output and 'SUMMARY' not in killed_output
  assert max(r['step'] for r in read_metrics(kill_dir)) < STEPS

  # The dead run's lock file is still there; it must not block the restart.
  assert os.path.exists(os.path.join(kill_dir, '.lock'))
  resumed = runs.launch([*g2p_run.args, f'--workdir={kill_dir}'])
  out = resumed.communicate(timeout=300)[0]
  assert resumed.returncode == 0, out[-3000:]
  resumed_from = re.findall(r'resumed from step (\d+)', out)
  assert len(resumed_from) == 1 and 0 < int(resumed_from[0]) < STEPS, out[-3000:]
  assert len([l for l in out.splitlines() if l.startswith('SUMMARY ')]) == 1, out[-3000:]
  assert os.path.exists(os.path.join(kill_dir, 'summary.json'))

  got = runs.losses(kill_dir)
  assert sorted(got) == sorted(g2p_run.losses) == list(range(1, STEPS + 1))
  assert_same_losses(got, g2p_run.losses, got)


def test_sigterm_stops_with_a_checkpoint_and_a_second_run_is_refused(tmp_path, g2p_run,
                                                                     monkeypatch):
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'preempted')
  os.makedirs(workdir)
  # Another live run holds the workdir (an flock conflicts between open files, also within
  # one process): this one is refused, in one line, and writes nothing.
  with open(os.path.join(workdir, '.lock'), 'a+') as held:
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    code, _, err = runs.cli(*g2p_run.args, f'--workdir={workdir}')
  one_line_error(code, err, 'in use by another training run')
  assert os.listdir(workdir) == ['.lock']

  # A real SIGTERM to this process in the middle of the 5th step.
  traced, seen = train.traced, []
  def traced_then_signal(run, fn, *args):
    out = traced(run, fn, *args)
    if fn is run.train_step:
      seen.append(1)
      if len(seen) == 5:
        os.kill(os.getpid(), signal.SIGTERM)
    return out
  monkeypatch.setattr(train, 'traced', traced_then_signal)
  previous = signal.getsignal(signal.SIGTERM)
  code, out, err = runs.cli(*g2p_run.args, f'--workdir={workdir}')
  monkeypatch.undo()
  assert signal.getsignal(signal.SIGTERM) == previous  # the handler is put back
  assert code == 0, (out + err)[-3000:]
  assert 'SIGTERM received: stopping after this step' in out
  stopped = re.findall(r'stopped by SIGTERM after step (\d+) of 16: checkpoint \1 is saved', out)
  assert len(stopped) == 1, out[-3000:]
  step = int(stopped[0])
  assert 0 < step < STEPS and 'SUMMARY' not in out
  assert os.path.exists(os.path.join(workdir, 'checkpoints', str(step), 'MANIFEST.json'))

  code, out, err = runs.cli(*g2p_run.args, f'--workdir={workdir}')
  assert code == 0, err[-3000:]
  assert f'resumed from step {step} ' in out
  got = runs.losses(workdir)
  assert sorted(got) == list(range(1, STEPS + 1))
  assert_same_losses(got, g2p_run.losses, got)
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['train_seconds'] > 0 and summary['eval_seconds'] > 0


def _flip_bytes(step_dir: str) -> str:
  """Flips 64 bytes in the middle of the checkpoint's largest data file; returns its path."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs
           if f != 'MANIFEST.json']
  path = max(files, key=os.path.getsize)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    chunk = f.read(64)
    f.seek(os.path.getsize(path) // 2)
    f.write(bytes(b ^ 0xFF for b in chunk))
  return path


def _remove_a_file(step_dir: str) -> str:
  """Deletes the checkpoint's largest data file (of the parameters and optimizer state)."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, 'state'))
           for f in fs]
  path = max(files, key=os.path.getsize)
  os.remove(path)
  return path


@pytest.mark.parametrize('harm', [_flip_bytes, _remove_a_file])
def test_damaged_checkpoint_falls_back_to_the_previous_one(harm, tmp_path, g2p_run):
  workdir = str(tmp_path / 'damaged')
  shutil.copytree(g2p_run.workdir, workdir)
  os.remove(os.path.join(workdir, 'summary.json'))
  harm(os.path.join(workdir, 'checkpoints', '16'))
  args = [*g2p_run.args, f'--workdir={workdir}']

  if harm is _flip_bytes:  # (once) evaluation skips it too, and needs no training lock
    with open(os.path.join(workdir, '.lock'), 'a+') as held:
      fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
      code, out, err = runs.cli(*args, '--mode=eval', '--checkpoint=latest')
    assert code == 0, err[-3000:]
    assert 'checkpoints/16 is damaged' in err and 'damaged' not in out  # messages: stderr
    rows = [json.loads(l) for l in out.splitlines() if l.startswith('{')]
    assert [r['step'] for r in rows] == [12, 12]

  code, out, err = runs.cli(*args)
  assert code == 0, err[-3000:]
  warnings = [l for l in err.splitlines() if 'is damaged' in l]
  assert len(warnings) == 1 and 'checkpoints/16' in warnings[0]
  assert 'resumed from step 12 ' in out
  # retrained from the intact step-12 checkpoint
  assert_same_losses(runs.losses(workdir), g2p_run.losses, range(13, 17))
  # The damaged bytes are kept aside, not deleted; step 16 was saved anew.
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '16.damaged'))
  assert os.path.exists(os.path.join(workdir, 'checkpoints', '16', 'MANIFEST.json'))


def test_no_intact_checkpoint_is_one_line_and_nothing_is_deleted(tmp_path, g2p_run):
  workdir = str(tmp_path / 'ruined')
  shutil.copytree(g2p_run.workdir, workdir)
  for step in ('8', '12', '16'):
    _flip_bytes(os.path.join(workdir, 'checkpoints', step))
  before = snapshot(os.path.join(workdir, 'checkpoints'))
  # (the default, --checkpoint=best, reads best/, which is intact)
  code, _, err = runs.cli(*g2p_run.args, f'--workdir={workdir}', '--mode=eval',
                          '--checkpoint=latest')
  assert code == 2 and 'no intact checkpoint' in err
  assert snapshot(os.path.join(workdir, 'checkpoints')) == before


def test_workdir_that_cannot_be_created_is_one_line(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  code, _, err = runs.cli(f'--config={CONFIG}', f'--workdir={blocker}/run', *TINY)
  one_line_error(code, err, 'cannot create --workdir')
