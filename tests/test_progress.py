"""The progress line: its ETA follows recent throughput, not the run's average."""
import io

from seq2seq_jax.trainer.metric_writer import Progress


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_eta_forgets_a_slow_start_and_skips_pauses():
  clock, out = Clock(), io.StringIO()
  p = Progress(total_steps=10_000, start_step=0, stream=out, window=4, clock=clock)
  clock.now = 100.0                     # the first 50 steps took 100 s (compilation)
  p.update(50, loss=2.0, tokens=500)
  for step in range(100, 1050, 50):     # then 10 steps/s
    clock.now += 5.0
    p.update(step, loss=1.0, tokens=500)
  assert abs(p.eta_s - (10_000 - 1000) / 10.0) < 1e-6   # 900 s; the run's average says 1300 s
  p.pause()
  clock.now += 600.0                    # an evaluation
  p.resume()
  clock.now += 5.0
  rates = p.update(1050, loss=1.0, tokens=500)
  assert abs(rates['steps_per_s'] - 10.0) < 1e-6
  assert abs(p.eta_s - (10_000 - 1050) / 10.0) < 1e-6
  last = out.getvalue().splitlines()[-1]
  assert 'step 1050/10000' in last and 'ETA 14m55s' in last


def test_restart_leaves_the_first_steps_compile_out_of_the_rates():
  """After a (re)start the first step compiles: `restart` at that step makes the rates and the
  ETA count from its end, and a log at that very step prints no rate."""
  clock, out = Clock(), io.StringIO()
  p = Progress(total_steps=1_000, start_step=400, stream=out, window=4, clock=clock)
  clock.now = 150.0                     # restoring and compiling step 401 took 150 s
  p.restart(401)
  assert p.update(401, loss=2.0, tokens=10) == {}
  assert out.getvalue().splitlines()[-1] == 'step 401/1000 | loss 2.0000 | rates from the next log on'
  clock.now += 10.0                     # then 10 steps in 10 s
  rates = p.update(411, loss=1.0, tokens=10)
  assert abs(rates['steps_per_s'] - 1.0) < 1e-9 and abs(p.eta_s - 589.0) < 1e-6
