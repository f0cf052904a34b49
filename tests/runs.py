"""Helpers for tests of launch.py: run it in this process (`cli`) or, where the test needs a
process of its own, as a subprocess (start one, kill it once a checkpoint exists); read a
workdir's logged losses."""
import contextlib
import importlib.util
import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, 'launch.py')


def _launch_module():
  """launch.py imported once as a module (its absl flags are defined at import)."""
  if 's2s_launch' not in sys.modules:
    spec = importlib.util.spec_from_file_location('s2s_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules['s2s_launch'] = module
    spec.loader.exec_module(module)
  return sys.modules['s2s_launch']


def cli(*args: str, stdin: str = '') -> tuple[int, str, str]:
  """`python launch.py ARGS` in this process, as app.run would call it, with `stdin` as
  standard input: (exit code, stdout, stderr).

  A user error leaves through launch._fail's SystemExit; any other exception propagates (an
  in-process traceback), so a test that gets a code has seen no traceback. Runs that build a
  mesh use this process's devices (conftest: 8), so pass --config.mesh.data=1 for one.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  launch = _launch_module()
  launch._OVERRIDES.clear()  # pylint: disable=protected-access
  flags.FLAGS.unparse_flags()
  out, err, code = io.StringIO(), io.StringIO(), 0
  old_stdin = sys.stdin
  sys.stdin = io.StringIO(stdin)
  # Warnings logged through `logging` reach a user's stderr; here, `err`.
  logged = logging.StreamHandler(err)
  logged.setLevel(logging.WARNING)
  logging.getLogger().addHandler(logged)
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        launch.main(launch._parse_flags(['launch.py', *args]))  # pylint: disable=protected-access
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
  finally:
    logging.getLogger().removeHandler(logged)
    sys.stdin = old_stdin
    launch._OVERRIDES.clear()  # pylint: disable=protected-access
  return code, out.getvalue(), err.getvalue()


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a process of the tests on `devices` simulated CPU devices, with this
  session's other flags (conftest: the optimisation level), so that it runs the same code."""
  flags = re.sub(r'--xla_force_host_platform_device_count=\d+', '',
                 os.environ.get('XLA_FLAGS', '')).split()
  return ' '.join([f'--xla_force_host_platform_device_count={devices}', *flags])


def launch(args, devices: int = 1) -> subprocess.Popen:
  """`python launch.py ARGS` on `devices` simulated CPU devices; stdout and stderr merged."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=xla_flags(devices))
  return subprocess.Popen([sys.executable, LAUNCH, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)


def losses(workdir: str) -> dict[int, float]:
  """{step: train/loss} from a workdir's metrics.jsonl."""
  from seq2seq_jax.trainer import metric_writer  # pylint: disable=g-import-not-at-top
  rows = metric_writer.read(workdir)   # as the run now stands (after any restart)
  return {r['step']: r['train/loss'] for r in rows if 'train/loss' in r}


def kill_at_checkpoint(proc: subprocess.Popen, workdir: str, step: int,
                       timeout: float = 300) -> str:
  """SIGKILLs `proc` as soon as checkpoint `step` appears in `workdir`; asserts that the
  process really died of it (not finished, not failed) and left no summary. Its output."""
  first = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.time() + timeout
  while not os.path.isdir(first) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  out, _ = proc.communicate()
  assert proc.returncode == -signal.SIGKILL, out[-2000:]
  assert os.path.isdir(first)
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))
  return out


def resume(args, devices: int = 1, timeout: float = 300) -> int:
  """Runs launch.py ARGS to the end in a workdir a killed run left; asserts it succeeded and
  resumed from a checkpoint. The step it resumed from."""
  proc = launch(args, devices)
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-3000:]
  assert 'resumed from step ' in out, out[-3000:]
  return int(out.split('resumed from step ')[1].split()[0])


def tb_events(workdir: str) -> list[list[Any]]:
  """The TensorBoard events of each event file in workdir (oldest file first), read with
  tensorboardX's protobufs (TFRecord framing: length, CRC, bytes, CRC)."""
  import struct  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  files = sorted((f for f in os.listdir(workdir) if f.startswith('events.out.tfevents')),
                 key=lambda f: os.path.getmtime(os.path.join(workdir, f)))
  out = []
  for name in files:
    with open(os.path.join(workdir, name), 'rb') as f:
      data = f.read()
    events, at = [], 0
    while at + 12 <= len(data):
      (length,) = struct.unpack('<Q', data[at:at + 8])
      events.append(event_pb2.Event.FromString(data[at + 12:at + 12 + length]))
      at += 12 + length + 4
    out.append(events)
  return out
