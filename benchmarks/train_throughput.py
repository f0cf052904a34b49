r"""Training throughput of the real train_step (the one launch.py runs), with MFU.

  python benchmarks/train_throughput.py                       # the fixed small Transformer
  python benchmarks/train_throughput.py --model=rnn           # the attention LSTM
  python benchmarks/train_throughput.py --model=transformer_big
  python benchmarks/train_throughput.py --sweep_lengths=32,64,128,256
  python benchmarks/train_throughput.py --sweep_batches=32,64,128,256

Prints one JSON line per measured setting: steps_per_s, tokens_per_s (source + target),
step_flops (XLA cost analysis of the compiled step), peak_flops_per_s (a large float32 matmul
timed in the same process), mfu (achieved FLOP/s / peak) and compile_s.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from seq2seq_jax import config as config_lib
from seq2seq_jax import feed as feed_lib
from seq2seq_jax import sharding
from seq2seq_jax import train
from seq2seq_jax.tasks import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 64

MODELS = {
    # The fixed benchmark model: emb 256, 4 heads, MLP 1024, 3+3 layers, dropout 0.1.
    'transformer': dict(name='transformer', emb_dim=256, num_heads=4, mlp_dim=1024,
                        num_encoder_layers=3, num_decoder_layers=3, dropout_rate=0.1,
                        attention_dropout_rate=0.0, share_embeddings=True, tie_output=True),
    'transformer_big': dict(name='transformer', emb_dim=512, num_heads=8, mlp_dim=2048,
                            num_encoder_layers=6, num_decoder_layers=6, dropout_rate=0.1,
                            attention_dropout_rate=0.0, share_embeddings=True,
                            tie_output=True),
    'rnn': dict(name='rnn', cell='lstm', emb_dim=256, hidden_dim=256, encoder_layers=2,
                decoder_layers=2, bidirectional=True, attention='bahdanau', dropout_rate=0.1),
}


class _FixedVocabTask(base.Task):
  """Only what setup() needs from a task: the vocabulary sizes."""
  src_vocab_size = VOCAB
  tgt_vocab_size = VOCAB


def peak_flops_per_s(n: int = 2048, reps: int = 10) -> float:
  """FLOP/s of a large float32 matmul: the machine's practical compute ceiling."""
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  f(a, a).block_until_ready()
  t = time.perf_counter()
  for _ in range(reps):
    out = f(a, a)
  out.block_until_ready()
  return 2 * n ** 3 * reps / (time.perf_counter() - t)


def measure(model: str, batch: int, src_len: int, tgt_len: int, steps: int, warmup: int,
            peak: float) -> dict:
  base = os.path.join(ROOT, 'experiments', 'g2p_cmudict_transformer.py')
  config = config_lib.load_config(base, [('batch_size', str(batch)), ('mesh.data', '1')])
  config.unlock()
  config.model = MODELS[model]
  config.optimizer.update(name='adam', schedule='constant', warmup_steps=0, grad_clip_norm=0.0)
  config.label_smoothing = 0.0
  run = train.setup(config, task=_FixedVocabTask(config))
  rng = np.random.default_rng(0)
  src = rng.integers(4, VOCAB, (batch, src_len), dtype=np.int32)
  tgt = rng.integers(4, VOCAB, (batch, tgt_len), dtype=np.int32)
  local = {'inputs': src, 'decoder_inputs': np.concatenate([np.ones((batch, 1), np.int32),
                                                            tgt[:, :-1]], 1),
           'targets': tgt}
  data = feed_lib.Feed(run.mesh, batch).to_global(local)
  state = run.init_state(jax.random.key(0))
  t = time.perf_counter()
  with sharding.activate(run.mesh, run.rules):
    compiled = run.train_step.lower(state, data).compile()
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  step_flops = float(cost.get('flops', 0.0))
  for _ in range(warmup):
    state, m = compiled(state, data)
  jax.block_until_ready(m)
  t = time.perf_counter()
  for _ in range(steps):
    state, m = compiled(state, data)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t) / steps
  return {'model': model, 'num_params': run.num_params, 'batch': batch, 'src_len': src_len,
          'tgt_len': tgt_len, 'steps_per_s': 1 / dt, 'step_ms': 1000 * dt,
          'tokens_per_s': batch * (src_len + tgt_len) / dt, 'step_flops': step_flops,
          'peak_flops_per_s': peak, 'mfu': step_flops / dt / peak, 'compile_s': compile_s,
          'devices': jax.device_count(), 'backend': jax.default_backend()}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', default='transformer', choices=sorted(MODELS))
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--src_len', type=int, default=32)
  p.add_argument('--tgt_len', type=int, default=32)
  p.add_argument('--steps', type=int, default=10)
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--sweep_lengths', default='', help='comma-separated lengths (src = tgt)')
  p.add_argument('--sweep_batches', default='', help='comma-separated batch sizes')
  p.add_argument('--dropout', type=float, default=None, help='override the dropout rate')
  p.add_argument('--prng', default='', help="jax_default_prng_impl, e.g. 'rbg'")
  a = p.parse_args()
  if a.dropout is not None:
    for m in MODELS.values():
      m['dropout_rate'] = a.dropout
  if a.prng:
    jax.config.update('jax_default_prng_impl', a.prng)
  peak = peak_flops_per_s()
  settings = [(a.batch, a.src_len, a.tgt_len)]
  if a.sweep_lengths:
    settings = [(a.batch, int(n), int(n)) for n in a.sweep_lengths.split(',')]
  if a.sweep_batches:
    settings = [(int(b), a.src_len, a.tgt_len) for b in a.sweep_batches.split(',')]
  for batch, s, t in settings:
    print(json.dumps(measure(a.model, batch, s, t, a.steps, a.warmup, peak)), flush=True)


if __name__ == '__main__':
  main()
