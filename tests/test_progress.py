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
