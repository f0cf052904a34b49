"""Helpers for tests that run launch.py in subprocesses: start one, kill it once a checkpoint
exists, read a workdir's logged losses."""
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, 'launch.py')


def launch(args, devices: int = 8) -> subprocess.Popen:
  """`python launch.py ARGS` on `devices` simulated CPU devices; stdout and stderr merged."""
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  return subprocess.Popen([sys.executable, LAUNCH, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)


def losses(workdir: str) -> dict[int, float]:
  """{step: train/loss} from a workdir's metrics.jsonl."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
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
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))
  return out


def resume(args, devices: int = 8, timeout: float = 300) -> int:
  """Runs launch.py ARGS to the end in a workdir a killed run left; asserts it succeeded and
  resumed from a checkpoint. The step it resumed from."""
  proc = launch(args, devices)
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-3000:]
  assert 'resumed from step ' in out, out[-3000:]
  return int(out.split('resumed from step ')[1].split()[0])
