"""Faults that must not lose progress (issue 40): torn run files, damaged or unverified
checkpoints, a workdir that must not silently restart, full disks and read-only workdirs,
messages on stderr only.

Most tests copy the session's tiny G2P run (conftest.py: g2p_run, trained to step 16 with
checkpoints 8, 12, 16), damage the copy the way a crash or a full disk would, and run
launch.py's main in this process (tests/runs.py: cli). Checkpointer-level cases use a tiny
pytree instead of a model.
"""
import errno
import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import runs  # tests/runs.py


def _copy(g2p_run, tmp_path, name='run') -> str:
  workdir = str(tmp_path / name)
  shutil.copytree(g2p_run.workdir, workdir)
  return workdir


def _flip_bytes(step_dir: str) -> None:
  """Flips 64 bytes in the middle of the checkpoint's largest data file."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs
           if f != 'MANIFEST.json']
  path = max(files, key=os.path.getsize)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    chunk = f.read(64)
    f.seek(os.path.getsize(path) // 2)
    f.write(bytes(b ^ 0xFF for b in chunk))


def _tree(workdir: str) -> dict[str, bytes]:
  """Every file under workdir with its bytes."""
  out = {}
  for d, _, fs in os.walk(workdir):
    for f in fs:
      with open(os.path.join(d, f), 'rb') as fh:
        out[os.path.relpath(os.path.join(d, f), workdir)] = fh.read()
  return out


# Evaluations on 8 words instead of the smoke config's 64 (training is unchanged): these tests
# check what a run keeps and says, not its metrics.
QUICK_EVAL = '--config.data.eval_max_examples=8'


def _lines(text: str) -> list[str]:
  return [l for l in text.splitlines() if l.strip()]


# --- 1. torn run files --------------------------------------------------------------------------
def test_a_resume_survives_torn_run_files_and_saves_a_damaged_best_again(g2p_run, tmp_path):
  """A crash mid-write leaves cut-off metrics.jsonl, config.json and summary.json, and a
  damaged copy of the best checkpoint: the rerun warns about each on stderr, resumes, keeps
  every old byte, appends, and saves a new best at its next evaluation (one run for both
  cases: a resume costs seconds)."""
  workdir = _copy(g2p_run, tmp_path)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '16'))      # resume at 12, evaluate at 16
  best = os.listdir(os.path.join(workdir, 'best'))[0]
  _flip_bytes(os.path.join(workdir, 'best', best))
  metrics = os.path.join(workdir, 'metrics.jsonl')
  with open(metrics, 'a') as f:
    f.write('{"step": 17, "train/lo')                            # the torn last line
  for name in ('config.json', 'summary.json'):
    path = os.path.join(workdir, name)
    with open(path, 'rb') as f:
      data = f.read()
    with open(path, 'wb') as f:
      f.write(data[:len(data) // 2])
  with open(metrics, 'rb') as f:
    before = f.read()

  code, out, err = runs.cli(*g2p_run.args, f'--workdir={workdir}', QUICK_EVAL)
  assert code == 0, (out + err)[-3000:]
  assert 'resumed from step 12 ' in out
  assert 'metrics.jsonl' in err and 'cut-off line' in err
  assert 'config.json is cut off' in err and 'warning' not in out
  with open(metrics, 'rb') as f:
    after = f.read()
  assert after.startswith(before)                   # only appended to, torn line kept
  rows = [json.loads(l) for l in after[len(before):].decode().splitlines() if l.strip()]
  later = [l for l in before.decode().splitlines()[:-1] if json.loads(l)['step'] > 12]
  assert later and rows[0] == {'step': 12, 'restart/from_step': 12,
                               'restart/rows_after': len(later)}
  assert_losses = runs.losses(workdir)              # as the run now stands: 13..16 again
  assert sorted(assert_losses) == list(range(1, 17))
  for s in range(13, 17):
    assert assert_losses[s] == pytest.approx(g2p_run.losses[s], rel=1e-6, abs=1e-7)
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['name'] == 'transformer'
  # The damaged best copy: set aside (kept), and step 16's evaluation saved a verified best.
  from seq2seq_jax.trainer import checkpoint  # pylint: disable=g-import-not-at-top
  assert f'best checkpoint {workdir}/best/{best} is damaged' in err
  assert os.path.isdir(os.path.join(workdir, 'best', f'{best}.damaged'))
  assert checkpoint.verified(os.path.join(workdir, 'best', '16'))
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['steps'] == 16 and summary['checkpoint'].startswith('best (step 16')


# --- 2. predict: predictions alone on stdout ------------------------------------------------------
def test_predict_prints_predictions_only_and_each_warning_once_on_stderr(g2p_run, tmp_path):
  workdir = _copy(g2p_run, tmp_path)
  _flip_bytes(os.path.join(workdir, 'checkpoints', '16'))
  code, out, err = runs.cli(*g2p_run.args, f'--workdir={workdir}', '--mode=predict',
                            '--checkpoint=latest', stdin='hello\nworld\n')
  assert code == 0, err[-3000:]
  assert len(out.splitlines()) == 2 and 'damaged' not in out
  assert all(w.isupper() for line in out.splitlines() for w in line.split())
  assert len([l for l in err.splitlines() if 'is damaged' in l]) == 1, err
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '16'))   # predict moves nothing
  assert 'read only' not in err, err   # orbax's notice for a read-only manager is dropped


def test_a_read_only_checkpoint_manager_says_nothing_of_it(tmp_path, caplog):
  """orbax warns 'Given directory is read only' for every read-only manager (the first
  manager below shows the warning reaches caplog); ours, which eval and predict use, drops it."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import checkpoint  # pylint: disable=g-import-not-at-top
  os.makedirs(tmp_path / 'c')
  caplog.set_level('WARNING')
  ocp.CheckpointManager(tmp_path / 'c', options=ocp.CheckpointManagerOptions(
      read_only=True, save_interval_steps=0, create=False)).close()
  assert 'Given directory is read only' in caplog.text
  caplog.clear()
  checkpoint._manager(str(tmp_path / 'c'), 1, True).close()
  assert 'read only' not in caplog.text
  assert not __import__('logging').getLogger('absl').filters   # the filter is not left behind


# --- 3. no silent restart -------------------------------------------------------------------------
def test_all_damaged_checkpoints_refuse_every_run_until_restart_from_scratch(g2p_run,
                                                                             tmp_path):
  workdir = _copy(g2p_run, tmp_path)
  os.remove(os.path.join(workdir, 'summary.json'))   # a run that has not finished
  for step in ('8', '12', '16'):
    _flip_bytes(os.path.join(workdir, 'checkpoints', step))
  metrics = os.path.join(workdir, 'metrics.jsonl')
  with open(metrics, 'rb') as f:
    history = f.read()
  args = [*g2p_run.args, f'--workdir={workdir}']
  for attempt in range(2):       # the run that finds them, then the same command again
    code, out, err = runs.cli(*args)
    assert code == 2, (out + err)[-3000:]
    error = [l for l in _lines(err) if l.startswith('error:')]
    assert len(error) == 1 and 'no intact checkpoint' in error[0], err
    assert '--restart_from_scratch' in error[0] and 'new --workdir' in error[0]
    assert 'resumed' not in out and 'step 1/' not in out, attempt
    with open(metrics, 'rb') as f:
      assert f.read() == history                     # nothing rewritten
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == [
      '12.damaged', '16.damaged', '8.damaged']

  code, out, err = runs.cli(*args, QUICK_EVAL, '--restart_from_scratch',
                            '--config.train_steps=2',
                            '--config.checkpoint_every_steps=2')
  assert code == 0, (out + err)[-3000:]
  assert '--restart_from_scratch: starting over at step 0' in out
  with open(metrics, 'rb') as f:
    now = f.read()
  assert now.startswith(history)                     # appended to, never rewritten
  restart = json.loads(now[len(history):].decode().splitlines()[0])
  assert restart['restart/from_step'] == 0 and restart['restart/rows_after'] > 0
  names = os.listdir(os.path.join(workdir, 'checkpoints'))
  assert {'8.damaged', '12.damaged', '16.damaged', '2'} <= set(names)
  assert any(n.endswith('.before_restart') for n in os.listdir(os.path.join(workdir, 'best')))
  assert sorted(runs.losses(workdir)) == [1, 2]


# --- 4. manifests: written at commit, required for trust -----------------------------------------
def _tiny(value: float):
  return {'w': jnp.full((64,), value, jnp.float32)}


def _abstract():
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return {'w': jax.ShapeDtypeStruct((64,), jnp.float32, sharding=one)}


def test_manifest_is_written_before_the_checkpoint_is_committed(tmp_path, monkeypatch):
  from seq2seq_jax.trainer import checkpoint  # pylint: disable=g-import-not-at-top
  seen = []
  write = checkpoint.write_manifest
  def spy(step_dir):
    seen.append((step_dir, os.path.isdir(os.path.join(tmp_path, 'checkpoints', '1'))))
    write(step_dir)
  monkeypatch.setattr(checkpoint, 'write_manifest', spy)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, _tiny(1.0), {'step': 1})
  ckpt.wait()
  ckpt.close()
  # Written into orbax's temporary directory, while step 1 did not exist yet; then renamed.
  assert len(seen) == 1 and seen[0][0].endswith('1.orbax-checkpoint-tmp') and not seen[0][1]
  step_dir = os.path.join(tmp_path, 'checkpoints', '1')
  assert checkpoint.verified(step_dir) and checkpoint.damage(step_dir) is None


def test_checkpoint_without_manifest_is_skipped_for_a_verified_one_and_never_blessed(
    tmp_path, capsys):
  from seq2seq_jax.trainer import checkpoint  # pylint: disable=g-import-not-at-top
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  for step in (1, 2):
    ckpt.save(step, _tiny(float(step)), {'step': step})
    ckpt.wait()
  ckpt.close()
  newest = os.path.join(tmp_path, 'checkpoints', '2')
  os.remove(os.path.join(newest, 'MANIFEST.json'))  # what a crash before it used to leave
  _flip_bytes(newest)                               # ... with bad bytes

  ckpt = checkpoint.Checkpointer(str(tmp_path))
  state, meta = ckpt.restore(_abstract())
  assert meta['step'] == 1 and float(state['w'][0]) == 1.0
  err = capsys.readouterr().err
  assert 'checkpoints/2 has no manifest' in err and 'verified step 1' in err
  ckpt.save(3, _tiny(3.0), {'step': 3})
  ckpt.wait()
  ckpt.close()
  aside = os.path.join(tmp_path, 'checkpoints', '2.unverified')
  assert os.path.isdir(aside) and not checkpoint.verified(aside)   # kept, never blessed

  # With no verified checkpoint at all, an unverified one is used only if it is finite ...
  only = str(tmp_path / 'only')
  ckpt = checkpoint.Checkpointer(only)
  ckpt.save(5, _tiny(5.0), {'step': 5})
  ckpt.wait()
  ckpt.close()
  os.remove(os.path.join(only, 'checkpoints', '5', 'MANIFEST.json'))
  ckpt = checkpoint.Checkpointer(only)
  assert ckpt.restore(_abstract())[1]['step'] == 5
  ckpt.wait()                                                   # ... and not blessed either
  ckpt.close()
  assert not checkpoint.verified(os.path.join(only, 'checkpoints', '5'))


def test_warm_start_skips_a_damaged_best_checkpoint(g2p_run, tmp_path, capsys):
  from seq2seq_jax.trainer import warm_start  # pylint: disable=g-import-not-at-top
  workdir = _copy(g2p_run, tmp_path)
  best = os.listdir(os.path.join(workdir, 'best'))[0]
  assert warm_start.source_checkpoint(workdir).endswith(f'best/{best}/state')
  _flip_bytes(os.path.join(workdir, 'best', best))
  assert warm_start.source_checkpoint(workdir).endswith('checkpoints/16/state')
  assert f'best/{best} is damaged' in capsys.readouterr().err


# --- 5. OS errors: one line, nothing saved touched -----------------------------------------------
def test_full_disk_is_one_line_naming_the_file_and_changes_nothing_saved(g2p_run, tmp_path,
                                                                         monkeypatch):
  from seq2seq_jax import paths  # pylint: disable=g-import-not-at-top
  workdir = _copy(g2p_run, tmp_path)
  os.remove(os.path.join(workdir, 'summary.json'))   # not finished: the rerun writes
  before = _tree(workdir)

  def full_for_config(path, *args, **kwargs):
    if os.path.basename(path) == 'config.json.tmp':
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    return open(path, *args, **kwargs)
  # (the run's JSON files are written by paths.write_atomic)
  monkeypatch.setattr(paths, 'open', full_for_config, raising=False)
  code, out, err = runs.cli(*g2p_run.args, f'--workdir={workdir}')
  assert code == 2, (out + err)[-3000:]
  assert len(_lines(err)) == 1, err
  assert 'config.json.tmp (writing config.json): No space left on device' in err
  after = _tree(workdir)
  assert {k: v for k, v in after.items() if k != '.lock'} == {
      k: v for k, v in before.items() if k != '.lock'}


def test_full_disk_while_logging_metrics_is_one_line(tmp_path, monkeypatch):
  from seq2seq_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import metric_writer  # pylint: disable=g-import-not-at-top
  writer = metric_writer.MetricWriter(str(tmp_path))
  writer.write(1, {'train/loss': 2.0})

  class Full:
    def write(self, text):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  real, writer._file = writer._file, Full()  # pylint: disable=protected-access
  with pytest.raises(UserError, match=r'metrics.jsonl \(logging step 2\): No space left'):
    writer.write(2, {'train/loss': 1.0})
  writer._file = real  # pylint: disable=protected-access
  writer.close()
  assert [r['step'] for r in metric_writer.read(str(tmp_path))] == [1]


def test_full_disk_while_checkpointing_is_one_line_and_the_step_is_not_committed(tmp_path,
                                                                                monkeypatch):
  from seq2seq_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import checkpoint  # pylint: disable=g-import-not-at-top
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, _tiny(1.0), {'step': 1})
  ckpt.wait()
  saved = _tree(os.path.join(tmp_path, 'checkpoints', '1'))

  def full(step_dir):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(step_dir, 'x'))
  monkeypatch.setattr(checkpoint, 'write_manifest', full)
  with pytest.raises(UserError, match=r'cannot write .*x \(saving a checkpoint\): No space'):
    ckpt.save(2, _tiny(2.0), {'step': 2})
    ckpt.wait()
  monkeypatch.undo()
  ckpt.close()
  assert _tree(os.path.join(tmp_path, 'checkpoints', '1')) == saved
  assert checkpoint.Checkpointer(str(tmp_path), read_only=True).latest_step() == 1


def test_read_only_workdir_is_one_line(g2p_run, tmp_path, monkeypatch):
  from seq2seq_jax.trainer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir = _copy(g2p_run, tmp_path)
  before = _tree(workdir)

  def read_only(path, *args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
  # (root ignores chmod, so the read-only filesystem is injected where the run first writes)
  monkeypatch.setattr(workdir_lib, 'open', read_only, raising=False)
  code, out, err = runs.cli(*g2p_run.args, f'--workdir={workdir}')
  assert code == 2, (out + err)[-3000:]
  assert len(_lines(err)) == 1 and 'Read-only file system' in err and '.lock' in err, err
  assert _tree(workdir) == before


def test_zero_attention_heads_is_one_line():
  config = os.path.join(runs.ROOT, 'experiments', 'g2p_cmudict_transformer.py') + ':smoke'
  code, _, err = runs.cli(f'--config={config}', '--mode=info', '--config.model.num_heads=0')
  assert code == 2 and len(_lines(err)) == 1
  assert 'model.num_heads must be a positive int, got 0' in err


# --- divergence keeps a way back --------------------------------------------------------------
def test_a_divergence_names_a_way_back_that_survives_it_and_training_resumes_from_it(
    g2p_run, tmp_path):
  """A NaN loss stops the run with one line naming the last verified checkpoint, and the
  way back. The issue's case: the loss spikes for several checkpoints (a learning rate of 1e4 from
  step 17: ~1e9 from step 18 on, finite) before it becomes NaN (1e38), so every regular
  checkpoint kept holds bad weights. The way back (healthy, at least way_back_steps=6 before)
  is still on disk, the NaN message names it, and --checkpoint=STEP resumes from it with the
  later checkpoints kept aside."""
  workdir = _copy(g2p_run, tmp_path)
  every = ('--config.checkpoint_every_steps=2', '--config.way_back_steps=6',
           '--config.eval_every_steps=1000', QUICK_EVAL)
  code, _, err = runs.cli(*g2p_run.args, f'--workdir={workdir}', '--config.train_steps=24',
                          '--config.optimizer.learning_rate=1e4', *every)
  assert code == 0, err[-3000:]
  spiked = runs.losses(workdir)
  assert all(spiked[s] > 1000 * spiked[16] for s in range(18, 25))
  code, _, err = runs.cli(*g2p_run.args, f'--workdir={workdir}', '--config.train_steps=40',
                          '--config.optimizer.learning_rate=1e38', *every)
  assert code == 2, err[-3000:]
  found = re.search(r'loss became nan at step (\d+).*last verified checkpoint \(step (\d+)\)'
                    r'.*The way back: checkpoint (\d+).*--checkpoint=(\d+)', err)
  assert found and len(_lines(err)) == 1, err[-3000:]
  nan_step, last, back, flag = map(int, found.groups())
  assert (back, flag) == (16, 16) and last >= 24 and nan_step > last
  kept = sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())
  assert kept[0] == 16 and len(kept) == 4  # the way back besides the last 3 (all spiked)
  # The newest checkpoint before the NaN is the one named, verified against its manifest.
  assert last == kept[-1] and os.path.exists(
      os.path.join(workdir, 'checkpoints', str(last), 'MANIFEST.json'))
  # Back to the way back, with the learning rate the run had.
  code, out, err = runs.cli(*g2p_run.args, f'--workdir={workdir}', '--checkpoint=16',
                            '--config.train_steps=20', QUICK_EVAL)
  assert code == 0, err[-3000:]
  assert 'resumed from step 16' in out and f'{last}.before_restart' in out
  names = os.listdir(os.path.join(workdir, 'checkpoints'))
  assert {f'{s}.before_restart' for s in kept[1:]} <= set(names)
  rows = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert any(r.get('restart/from_step') == 16 for r in rows)
  again = runs.losses(workdir)   # the log as the run now stands: the spike is superseded
  assert all(np.isfinite(again[s]) and again[s] < 2 * again[16] for s in range(17, 21))
  # TensorBoard: the new event file tells it to drop the old files' steps from 16 on.
  starts = [e.step for e in runs.tb_events(workdir)[-1] if e.session_log.status == 1]
  assert starts == [16]


# --- 6. smaller items ---------------------------------------------------------------------------
def test_summary_records_the_true_step_and_a_finished_rerun_adds_nothing(g2p_run, tmp_path):
  workdir = _copy(g2p_run, tmp_path)
  os.remove(os.path.join(workdir, 'summary.json'))
  args = [*g2p_run.args, f'--workdir={workdir}', '--config.train_steps=8',  # at step 16
          QUICK_EVAL]
  code, out, err = runs.cli(*args)
  assert code == 0, (out + err)[-3000:]
  with open(os.path.join(workdir, 'summary.json')) as f:
    assert json.load(f)['steps'] == 16
  metrics = os.path.join(workdir, 'metrics.jsonl')
  with open(metrics, 'rb') as f:
    rows = f.read()
  assert rows.count(b'"test/wer"') == 2                    # the first run's and this one's
  code, out, err = runs.cli(*args)                         # the same command again
  assert code == 0, (out + err)[-3000:]
  assert 'finished at step 16' in out and out.count('SUMMARY ') == 1
  with open(metrics, 'rb') as f:
    assert f.read() == rows


def test_undecodable_text_in_a_file_tsv_is_a_bad_line(tmp_path):
  from seq2seq_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.tasks import file_inputs  # pylint: disable=g-import-not-at-top
  tsv = tmp_path / 'train.tsv'
  tsv.write_bytes(b'a.npy\t12\nb.npy\t3\xff4\nc.npy\t56\n')

  class Files(file_inputs.FileToTextTask):
    def __init__(self, policy):   # only what _read_split reads
      self.bad_pairs = policy
      self._alphabet = frozenset('0123456789')
      self._lines, self._arrays = {}, {}
    def tsv_path(self, split):
      return str(tsv)
    def load_input(self, path):
      return np.zeros((2, 3), np.float32)

  with pytest.raises(UserError, match=r'train.tsv:2: not valid UTF-8'):
    Files('error')._read_split('train')
  got = Files('skip')._read_split('train')
  assert [t for _, t in got] == ['12', '56']


# --- 7. a stop that acts within a step or two ----------------------------------------------------
def test_the_loop_runs_at_most_two_steps_ahead_of_the_device(monkeypatch):
  from seq2seq_jax.trainer import loop as loop_lib  # pylint: disable=g-import-not-at-top
  waited = []
  monkeypatch.setattr(loop_lib.jax, 'block_until_ready', waited.append)
  loop = loop_lib.TrainLoop(run=None, ckpt=None, writer=None, progress=None, workdir='',
                            best=None, seconds={}, evaluate=None, stop=None)
  for step in range(1, 6):
    loop.record_step(step, {'loss': f'metrics of step {step}'}, tokens=1)
  # Recording step n waits until step n - 2 is done on the device.
  assert loop_lib.DISPATCH_AHEAD == 2
  assert waited == [{'loss': f'metrics of step {s}'} for s in (1, 2, 3)]


def test_a_signal_during_evaluation_abandons_it_saves_and_a_second_one_stops_at_once(
    g2p_run, tmp_path, monkeypatch):
  import signal  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  workdir = _copy(g2p_run, tmp_path)
  os.remove(os.path.join(workdir, 'summary.json'))
  traced, handlers = train.traced, []
  def signal_in_evaluation(run, fn, *args):
    if fn is run.eval_step and not handlers:    # the first batch of step 18's evaluation
      os.kill(os.getpid(), signal.SIGTERM)
      handlers.extend(signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT))
    return traced(run, fn, *args)
  monkeypatch.setattr(train, 'traced', signal_in_evaluation)
  previous = signal.getsignal(signal.SIGTERM)
  code, out, err = runs.cli(*g2p_run.args, f'--workdir={workdir}', '--config.train_steps=20',
                            '--config.eval_every_steps=2', QUICK_EVAL)
  monkeypatch.undo()
  assert code == 0, (out + err)[-3000:]
  assert handlers == [signal.SIG_DFL, signal.SIG_DFL]     # a second signal: the OS default
  assert signal.getsignal(signal.SIGTERM) == previous     # and the handler is put back
  assert 'evaluation at step 18 abandoned' in out and 'eval step 18' not in out
  assert 'stopped by SIGTERM after step 18 of 20: checkpoint 18 is saved' in out
  from seq2seq_jax.trainer import checkpoint  # pylint: disable=g-import-not-at-top
  assert checkpoint.verified(os.path.join(workdir, 'checkpoints', '18'))
  from seq2seq_jax.trainer import metric_writer  # pylint: disable=g-import-not-at-top
  assert not [r for r in metric_writer.read(workdir) if r['step'] == 18 and 'eval/loss' in r]
