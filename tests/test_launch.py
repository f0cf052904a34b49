"""launch.py end to end on a tiny G2P config: train, eval, predict, info, and error paths.

Every run is a real subprocess (as a user runs it) on the real dictionary.
"""
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, 'launch.py')
CONFIG = os.path.join(ROOT, 'experiments', 'g2p_cmudict_transformer.py') + ':smoke'
# One bucket and one device: one compiled train program, the fastest possible runs.
TINY = ['--config.data.buckets=(24,)', '--config.mesh.data=1']


def launch(*args: str, stdin: str | None = None, timeout: float = 300,
           env_extra: dict | None = None) -> subprocess.CompletedProcess:
  env = dict(os.environ)
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'
  env['JAX_PLATFORMS'] = 'cpu'
  env.update(env_extra or {})
  return subprocess.run([sys.executable, LAUNCH, *args], input=stdin, capture_output=True,
                        text=True, timeout=timeout, env=env, cwd=ROOT)


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


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tfds_data_dir):
  workdir = str(tmp_path_factory.mktemp('run'))
  proc = launch(f'--config={CONFIG}', f'--workdir={workdir}', *TINY,
                f'--config.data.data_dir={tfds_data_dir}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc, tfds_data_dir


def test_train_writes_metrics_checkpoints_and_summary(trained):
  workdir, proc, _ = trained
  rows = read_metrics(workdir)
  train_rows = [r for r in rows if 'train/loss' in r]
  eval_rows = [r for r in rows if 'eval/wer' in r]
  assert [r['step'] for r in train_rows] == [5, 10, 15, 20]
  assert all(r['train/loss'] > 0 for r in train_rows)
  assert train_rows[-1]['train/loss'] < train_rows[0]['train/loss']
  assert [r['step'] for r in eval_rows] == [10, 20]
  assert all(0 <= r['eval/per'] <= 100 and 0 <= r['eval/wer'] <= 100 for r in eval_rows)
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['name'] == 'transformer'
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['10', '20']
  summary = [l for l in proc.stdout.splitlines() if l.startswith('SUMMARY ')]
  assert len(summary) == 1
  s = json.loads(summary[0][len('SUMMARY '):])
  assert 0 <= s['test/wer'] <= 100 and 0 <= s['test/per'] <= 100
  # Time is booked where it is spent: evaluation holds at least what the evaluations
  # themselves measured, and none of it is in train_seconds.
  evals = sum(r['eval/seconds'] for r in rows if 'eval/seconds' in r) + s['test/seconds']
  assert s['eval_seconds'] >= evals - 0.05
  assert 0 < s['train_seconds'] and s['checkpoint_seconds'] >= 0
  assert 'steps/s' in proc.stdout and 'tok/s' in proc.stdout and 'ETA' in proc.stdout
  assert 'MFU' in proc.stdout and all(0 < r['train/mfu'] < 1 for r in train_rows)


def test_eval_mode_prints_one_json_line_per_split(trained):
  workdir, _, data_dir = trained
  proc = launch(f'--config={CONFIG}', f'--workdir={workdir}', '--mode=eval', *TINY,
                f'--config.data.data_dir={data_dir}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith('{')]
  assert [r['split'] for r in rows] == ['validation', 'test']
  assert all(r['step'] == 20 and 'per' in r and 'wer' in r for r in rows)


def test_predict_mode_keeps_order_and_survives_odd_input(trained):
  workdir, _, data_dir = trained
  lines = ['hello', '', 'WORLD', 'ab\u00e9c', 'x' * 60]
  proc = launch(f'--config={CONFIG}', f'--workdir={workdir}', '--mode=predict', *TINY,
                f'--config.data.data_dir={data_dir}', stdin='\n'.join(lines) + '\n')
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout.split('\n')
  assert out[-1] == '' and len(out) - 1 == len(lines)
  assert out[1] == ''
  for i in (0, 2, 3, 4):
    assert all(tok.isupper() or tok[:-1].isupper() for tok in out[i].split())
  assert proc.stderr.count('outside the vocabulary') == 1


def test_decode_method_is_reachable_from_config(trained):
  workdir, _, data_dir = trained
  words = '\n'.join(['phoneme', 'table', 'wonderful', 'xylophone']) + '\n'
  base = [f'--config={CONFIG}', f'--workdir={workdir}', *TINY,
          f'--config.data.data_dir={data_dir}']
  sample = ['--mode=predict', '--config.decode.method=sample', '--config.decode.temperature=2.0']
  first, again = launch(*base, *sample, stdin=words), launch(*base, *sample, stdin=words)
  greedy = launch(*base, '--mode=predict', '--config.decode.method=greedy', stdin=words)
  for proc in (first, again, greedy):
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.splitlines()) == 4
  assert first.stdout == again.stdout            # samples are drawn from the seed
  assert first.stdout != greedy.stdout           # ... and really are samples at T = 2
  ev = launch(*base, '--mode=eval', '--config.decode.method=greedy')
  assert ev.returncode == 0, ev.stderr[-3000:]
  rows = [json.loads(l) for l in ev.stdout.splitlines() if l.startswith('{')]
  assert [r['split'] for r in rows] == ['validation', 'test']


def test_info_mode_counts_params_abstractly():
  proc = launch(f'--config={CONFIG}', '--mode=info', '--config.model.emb_dim=48')
  assert proc.returncode == 0, proc.stderr[-3000:]
  info = json.loads(proc.stdout)
  assert info['config']['model']['emb_dim'] == 48
  assert isinstance(info['num_params'], int) and info['num_params'] > 10_000


@pytest.mark.parametrize('args,message', [
    (['--config=missing/nothing.py', '--mode=info'], 'config file not found'),
    ([f'--config={CONFIG}', '--mode=info', '--config.model.nope=1'], 'unknown config key'),
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
])
def test_user_mistakes_get_one_line_and_nonzero_exit(args, message):
  proc = launch(*args)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert len([l for l in proc.stderr.splitlines() if l.strip()]) <= 2, proc.stderr


def test_mismatched_checkpoint_is_refused_and_nothing_changes(trained):
  workdir, _, data_dir = trained
  before = snapshot(workdir)
  proc = launch(f'--config={CONFIG}', f'--workdir={workdir}', *TINY,
                f'--config.data.data_dir={data_dir}', '--config.model.emb_dim=48')
  assert proc.returncode != 0
  assert 'different model' in proc.stderr and 'emb_dim' in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert snapshot(workdir) == before


def test_a_run_from_before_a_model_setting_existed_is_accepted(trained, tmp_path):
  """A run's config.json that leaves out a model setting (trained before the setting was
  added) matches a config that gives the setting its default, and no other value."""
  from seq2seq_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.models import model_defaults  # pylint: disable=g-import-not-at-top
  workdir, _, _ = trained
  old = str(tmp_path / 'old_run')
  shutil.copytree(workdir, old)
  with open(os.path.join(old, 'config.json')) as f:
    saved = json.load(f)
  defaults = model_defaults(saved['model']['name'])
  key = next(k for k, v in saved['model'].items() if k != 'name' and defaults.get(k) == v)
  del saved['model'][key]
  with open(os.path.join(old, 'config.json'), 'w') as f:
    json.dump(saved, f)
  ckpt = Checkpointer(old, read_only=True)
  assert ckpt.latest_step() is not None
  train._check_workdir(config_lib.load_config(CONFIG), old, ckpt)  # accepted
  other = json.dumps(defaults[key] + 1 if isinstance(defaults[key], (int, float))
                     and not isinstance(defaults[key], bool) else not defaults[key])
  with pytest.raises(UserError, match=f'different model .model.{key}: '):
    train._check_workdir(config_lib.load_config(CONFIG, [(f'model.{key}', other)]), old, ckpt)


def test_nan_loss_stops_run_and_keeps_last_good_checkpoint(tmp_path, tfds_data_dir):
  workdir = str(tmp_path)
  proc = launch(f'--config={CONFIG}', f'--workdir={workdir}', *TINY,
                f'--config.data.data_dir={tfds_data_dir}', '--config.log_every_steps=1',
                '--config.checkpoint_every_steps=1', '--config.optimizer.learning_rate=1e30',
                '--config.optimizer.grad_clip_norm=0.0', '--config.optimizer.warmup_steps=0',
                '--config.optimizer.schedule=constant')
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr
  msg = [l for l in proc.stderr.splitlines() if 'loss became' in l]
  assert len(msg) == 1, proc.stderr[-2000:]
  bad_step = int(msg[0].split(' at step ')[1].split(';')[0])
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')))
  assert steps and max(steps) == bad_step - 1
  # The checkpoint it names was verified against its manifest.
  named = int(re.findall(r'last verified checkpoint \(step (\d+)\)', msg[0])[0])
  assert named == bad_step - 1
  assert os.path.exists(os.path.join(workdir, 'checkpoints', str(named), 'MANIFEST.json'))


# The uninterrupted 16-step run that the interrupted, damaged and preempted runs must match.
RESUME = ['--config.log_every_steps=1', '--config.checkpoint_every_steps=4',
          '--config.eval_every_steps=1000', '--config.train_steps=16']


@pytest.fixture(scope='module')
def reference(tmp_path_factory, tfds_data_dir):
  """(args, workdir, {step: loss}) of the uninterrupted run (checkpoints 8, 12, 16)."""
  args = [f'--config={CONFIG}', *TINY, f'--config.data.data_dir={tfds_data_dir}', *RESUME]
  workdir = str(tmp_path_factory.mktemp('reference'))
  proc = launch(*args, f'--workdir={workdir}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  return args, workdir, losses(workdir)


def losses(workdir: str) -> dict[int, float]:
  return {r['step']: r['train/loss'] for r in read_metrics(workdir) if 'train/loss' in r}


def start(*args: str) -> subprocess.Popen:
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1',
             JAX_PLATFORMS='cpu')
  return subprocess.Popen([sys.executable, LAUNCH, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 240) -> list[str]:
  """Reads proc's output until a line containing `text`; returns the lines read."""
  lines, deadline = [], time.time() + timeout
  while time.time() < deadline:
    line = proc.stdout.readline()
    if not line:
      break
    lines.append(line)
    if text in line:
      return lines
  raise AssertionError(f'no {text!r} in output: {"".join(lines)[-2000:]}')


def test_sigkill_and_restart_gives_identical_losses(tmp_path, reference):
  common, ref_dir, _ = reference
  kill_dir = str(tmp_path / 'killed')

  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1',
             JAX_PLATFORMS='cpu')
  proc = subprocess.Popen([sys.executable, LAUNCH, *common, f'--workdir={kill_dir}'],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          cwd=ROOT)
  # Kill hard as soon as the first checkpoint (step 4) is committed (orbax renames it into
  # place). Orbax starts a save only once the previous one is committed, so the run is then
  # at most at step 12, waiting for the step-8 save: well short of its last step, 16.
  deadline = time.time() + 240
  ckpt4 = os.path.join(kill_dir, 'checkpoints', '4')
  while not os.path.isdir(ckpt4) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  killed_output = proc.communicate()[0]
  # It died of the SIGKILL, mid-run: not at its last step, and with no final report.
  assert proc.returncode == -signal.SIGKILL, killed_output[-3000:]
  assert os.path.isdir(ckpt4)
  assert 'step 4/16' in killed_output  # its progress lines were captured, so:
  assert 'step 16/16' not in killed_output and 'SUMMARY' not in killed_output
  assert max(r['step'] for r in read_metrics(kill_dir)) < 16
  assert not os.path.exists(os.path.join(kill_dir, 'summary.json'))

  # The dead run's lock file is still there; it must not block the restart.
  assert os.path.exists(os.path.join(kill_dir, '.lock'))
  resumed = launch(*common, f'--workdir={kill_dir}')
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  resumed_from = re.findall(r'resumed from step (\d+)', resumed.stdout)
  assert len(resumed_from) == 1 and 0 < int(resumed_from[0]) < 16, resumed.stdout[-3000:]

  a, b = losses(ref_dir), losses(kill_dir)
  assert sorted(a) == sorted(b) == list(range(1, 17))
  for step in a:
    assert a[step] == pytest.approx(b[step], rel=1e-6, abs=1e-7), step


def test_sigterm_stops_with_a_checkpoint_and_a_second_run_is_refused(tmp_path, reference):
  common, _, ref = reference
  workdir = str(tmp_path / 'preempted')
  proc = start(*common, f'--workdir={workdir}')
  wait_for_line(proc, 'parameters')  # set up, about to compile and train
  proc.send_signal(signal.SIGSTOP)   # frozen, but alive and holding the workdir
  try:
    second = launch(*common, f'--workdir={workdir}')
  finally:
    proc.send_signal(signal.SIGCONT)
  assert second.returncode != 0 and 'Traceback' not in second.stderr
  assert 'in use by another training run' in second.stderr
  assert len([l for l in second.stderr.splitlines() if l.strip()]) == 1, second.stderr

  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=240)[0]
  assert proc.returncode == 0, out[-3000:]
  stopped = re.findall(r'stopped by SIGTERM after step (\d+) of 16: checkpoint \1 is saved', out)
  assert len(stopped) == 1, out[-3000:]
  step = int(stopped[0])
  assert 0 < step < 16 and 'SUMMARY' not in out
  assert os.path.exists(os.path.join(workdir, 'checkpoints', str(step), 'MANIFEST.json'))

  resumed = launch(*common, f'--workdir={workdir}')
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'resumed from step {step} ' in resumed.stdout
  got = losses(workdir)
  assert sorted(got) == list(range(1, 17))
  for s in got:
    assert got[s] == pytest.approx(ref[s], rel=1e-6, abs=1e-7), s
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
def test_damaged_checkpoint_falls_back_to_the_previous_one(harm, tmp_path, reference):
  common, ref_dir, ref = reference
  workdir = str(tmp_path / 'damaged')
  shutil.copytree(ref_dir, workdir)
  os.remove(os.path.join(workdir, 'summary.json'))
  harm(os.path.join(workdir, 'checkpoints', '16'))

  if harm is _flip_bytes:  # (once) evaluation skips it too, and needs no training lock
    with open(os.path.join(workdir, '.lock'), 'a+') as held:
      fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
      ev = launch(*common, f'--workdir={workdir}', '--mode=eval')
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert 'checkpoints/16 is damaged' in ev.stdout
    rows = [json.loads(l) for l in ev.stdout.splitlines() if l.startswith('{')]
    assert [r['step'] for r in rows] == [12, 12]

  resumed = launch(*common, f'--workdir={workdir}')
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  warnings = [l for l in resumed.stdout.splitlines() if 'is damaged' in l]
  assert len(warnings) == 1 and 'checkpoints/16' in warnings[0]
  assert 'resumed from step 12 ' in resumed.stdout
  got = losses(workdir)
  for s in range(13, 17):  # retrained from the intact step-12 checkpoint
    assert got[s] == pytest.approx(ref[s], rel=1e-6, abs=1e-7), s
  # The damaged bytes are kept aside, not deleted; step 16 was saved anew.
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '16.damaged'))
  assert os.path.exists(os.path.join(workdir, 'checkpoints', '16', 'MANIFEST.json'))


def test_no_intact_checkpoint_is_one_line_and_nothing_is_deleted(tmp_path, reference):
  common, ref_dir, _ = reference
  workdir = str(tmp_path / 'ruined')
  shutil.copytree(ref_dir, workdir)
  for step in ('8', '12', '16'):
    _flip_bytes(os.path.join(workdir, 'checkpoints', step))
  before = snapshot(os.path.join(workdir, 'checkpoints'))
  proc = launch(*common, f'--workdir={workdir}', '--mode=eval')
  assert proc.returncode != 0 and 'Traceback' not in proc.stderr
  assert 'no intact checkpoint' in proc.stderr
  assert snapshot(os.path.join(workdir, 'checkpoints')) == before


def test_workdir_that_cannot_be_created_is_one_line(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  proc = launch(f'--config={CONFIG}', f'--workdir={blocker}/run', *TINY)
  assert proc.returncode != 0 and 'Traceback' not in proc.stderr
  assert 'cannot create --workdir' in proc.stderr
