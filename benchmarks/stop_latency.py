r"""How soon a stop signal (what a preemptible VM sends ~30 s before it kills) gives a saved
checkpoint: signal-to-saved in seconds and in steps, on the main job (or any launch.py
command), once during training steps and once during a validation evaluation.

  python benchmarks/stop_latency.py                      # the main job (G2P Transformer)
  python benchmarks/stop_latency.py --after_steps=40 -- --config=experiments/spoken_digits.py

For each case it starts `python launch.py --workdir=<fresh temp dir> [args]`, waits until the
run has printed a progress line at or past `--after_steps` (training) or until the step that
starts a validation evaluation has printed (evaluation; the run's eval_every_steps is set to
that step), sends SIGTERM, and reads until the run says which step it saved. It reports the
seconds from the signal to the process's exit (the checkpoint is written and committed by
then: the run waits for it), the step printed last before the signal and the step saved. The
time includes waiting for the device to finish the steps already dispatched, the final
checkpoint's write, and the process's exit.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _measure(args: list[str], wait_for: re.Pattern, pause: float) -> dict:
  with tempfile.TemporaryDirectory() as workdir:
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'launch.py'),
                             f'--workdir={workdir}', *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last_step, lines = 0, []
    for line in proc.stdout:
      lines.append(line)
      m = re.search(r'step (\d+)/\d+ \|', line)
      if m:
        last_step = int(m.group(1))
      if wait_for.search(line):
        break
    else:
      raise SystemExit('the run ended before the signal:\n' + ''.join(lines[-20:]))
    time.sleep(pause)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    proc.wait()
    took = time.perf_counter() - sent
    saved = re.search(r'after step (\d+) of', rest)
    if proc.returncode != 0 or not saved:
      raise SystemExit(f'exit {proc.returncode}, no "stopped by" line:\n{rest[-3000:]}')
    saved_step = int(saved.group(1))
    assert str(saved_step) in os.listdir(os.path.join(workdir, 'checkpoints'))
    return {'seconds': took, 'last_printed_step': last_step, 'saved_step': saved_step,
            'abandoned_eval': 'abandoned for the stop' in rest}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--after_steps', type=int, default=60,
                      help='signal once a progress line at or past this step has printed')
  parser.add_argument('--eval_at', type=int, default=30,
                      help='the step whose validation evaluation gets the signal')
  parser.add_argument('launch_args', nargs='*', help='launch.py flags (after --)')
  opts = parser.parse_args()
  args = opts.launch_args
  steps = _measure(args + ['--config.log_every_steps=20'],
                   re.compile(rf'step ({opts.after_steps}|[1-9]\d{{{len(str(opts.after_steps))},}})'
                              r'/\d+ \|'), 0.0)
  print(f'during training steps: signal-to-saved {steps["seconds"]:.1f} s; last step printed '
        f'{steps["last_printed_step"]}, saved step {steps["saved_step"]} (log every 20 steps)',
        flush=True)
  ev = _measure(args + [f'--config.eval_every_steps={opts.eval_at}',
                        f'--config.log_every_steps={opts.eval_at}'],
                re.compile(rf'step {opts.eval_at}/\d+ \|'), 2.0)
  print(f'during the validation evaluation at step {opts.eval_at} (signal 2 s into it): '
        f'signal-to-saved {ev["seconds"]:.1f} s; saved step {ev["saved_step"]}; evaluation '
        f'abandoned: {ev["abandoned_eval"]}', flush=True)


if __name__ == '__main__':
  main()
