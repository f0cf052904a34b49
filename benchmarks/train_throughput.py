r"""Training throughput of the real train_step (the one launch.py runs), with MFU.

  python benchmarks/train_throughput.py                       # the fixed small Transformer
  python benchmarks/train_throughput.py --model=rnn           # the attention LSTM
  python benchmarks/train_throughput.py --model=gru           # the same with GRUs
  python benchmarks/train_throughput.py --model=transformer_big
  python benchmarks/train_throughput.py --sweep_lengths=32,64,128,256
  python benchmarks/train_throughput.py --sweep_batches=32,64,128,256
  # the scale switches, each beside float32 / grad_accum_steps=1 / remat=none, alternating:
  python benchmarks/train_throughput.py --dtype=bfloat16
  python benchmarks/train_throughput.py --grad_accum_steps=4
  python benchmarks/train_throughput.py --remat=full
  # memory only (compile, no steps): the Transformer base at its paper batch, one device
  python benchmarks/train_throughput.py --model=transformer_base --vocab=37000 --batch=96 \
      --src_len=256 --tgt_len=256 --steps=0 --remat=full

Prints one JSON line per measured setting: steps_per_s, tokens_per_s (source + target),
step_flops (matmul and convolution FLOPs counted on the step's jaxpr, scans included:
seq2seq_jax/trainer/throughput.py), xla_flops (XLA's cost analysis of the compiled step, which counts
a scan's body once), peak_flops_per_s (a large float32 matmul timed in the same process), mfu
(step_flops per second / peak), compile_s, and XLA's memory analysis of the compiled step:
temp_bytes (activations and other temporaries), argument_bytes, output_bytes.
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
from seq2seq_jax.trainer import feed as feed_lib
from seq2seq_jax.trainer import sharding
from seq2seq_jax.trainer import throughput
from seq2seq_jax.trainer import train
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
    # Vaswani et al. 2017 base: 6 + 6 layers, d_model 512, 8 heads, d_ff 2048.
    'transformer_base': dict(name='transformer', emb_dim=512, num_heads=8, qkv_dim=512,
                             mlp_dim=2048, num_encoder_layers=6, num_decoder_layers=6,
                             dropout_rate=0.1, attention_dropout_rate=0.0,
                             share_embeddings=True, tie_output=True, max_len=256),
    # The attention LSTM (RNNsearch-shaped; its PyTorch peer: train_throughput_torch.py).
    'rnn': dict(name='rnn', cell='lstm', emb_dim=256, hidden_dim=256, encoder_layers=2,
                decoder_layers=2, bidirectional=True, attention='bahdanau', dropout_rate=0.1),
}
MODELS['gru'] = dict(MODELS['rnn'], cell='gru')


class _FixedVocabTask(base.BaseTask):
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
            peak: float, dtype: str = 'float32', grad_accum_steps: int = 1,
            remat: str = 'none', vocab: int = VOCAB) -> dict:
  """One setting: compile the real train step, then time `steps` steps after `warmup`."""
  base = os.path.join(ROOT, 'experiments', 'g2p_cmudict_transformer.py')
  config = config_lib.load_config(base, [('batch_size', str(batch)), ('mesh.data', '1')])
  config.unlock()
  config.model = dict(MODELS[model], remat=remat)
  config.dtype = dtype
  config.grad_accum_steps = grad_accum_steps
  config.optimizer.update(name='adam', schedule='constant', warmup_steps=0, grad_clip_norm=0.0)
  config.label_smoothing = 0.0
  task = _FixedVocabTask(config)
  task.src_vocab_size = task.tgt_vocab_size = vocab
  run = train.setup(config, task=task)
  rng = np.random.default_rng(0)
  src = rng.integers(4, vocab, (batch, src_len), dtype=np.int32)
  tgt = rng.integers(4, vocab, (batch, tgt_len), dtype=np.int32)
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
  with sharding.activate(run.mesh, run.rules):
    step_flops = throughput.step_flops(run.train_step, state, data)
  mem = compiled.memory_analysis()
  out = {'model': model, 'num_params': run.num_params, 'dtype': dtype,
         'grad_accum_steps': grad_accum_steps, 'remat': remat, 'batch': batch,
         'src_len': src_len, 'tgt_len': tgt_len, 'step_flops': step_flops,
         'xla_flops': float(cost.get('flops', 0.0)), 'peak_flops_per_s': peak,
         'compile_s': compile_s, 'temp_bytes': int(mem.temp_size_in_bytes),
         'argument_bytes': int(mem.argument_size_in_bytes),
         'output_bytes': int(mem.output_size_in_bytes),
         'devices': jax.device_count(), 'backend': jax.default_backend()}
  if steps <= 0:  # memory and FLOPs only
    return out
  for _ in range(warmup):
    state, m = compiled(state, data)
  jax.block_until_ready(m)
  t = time.perf_counter()
  for _ in range(steps):
    state, m = compiled(state, data)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t) / steps
  return out | {'steps_per_s': 1 / dt, 'step_ms': 1000 * dt,
                'tokens_per_s': batch * (src_len + tgt_len) / dt,
                'mfu': step_flops / dt / peak}


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
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                 help='compute dtype; not float32: measured beside float32')
  p.add_argument('--grad_accum_steps', type=int, default=1,
                 help='microbatches per step; not 1: measured beside 1')
  p.add_argument('--remat', default='none', choices=('none', 'full', 'dots'),
                 help='rematerialization; not none: measured beside none')
  p.add_argument('--repeats', type=int, default=2,
                 help='with a switch: alternate baseline and switch this many times')
  p.add_argument('--vocab', type=int, default=VOCAB, help='source = target vocabulary size')
  a = p.parse_args()
  if a.grad_accum_steps < 1 or a.batch % a.grad_accum_steps:
    p.error(f'--batch={a.batch} must be a positive multiple of --grad_accum_steps')
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
  switch = dict(dtype=a.dtype, grad_accum_steps=a.grad_accum_steps, remat=a.remat)
  baseline = dict(dtype='float32', grad_accum_steps=1, remat='none')
  variants = [switch] if switch == baseline else [baseline, switch] * a.repeats
  for batch, s, t in settings:
    for v in variants:
      print(json.dumps(measure(a.model, batch, s, t, a.steps, a.warmup, peak, vocab=a.vocab,
                               **v)), flush=True)


if __name__ == '__main__':
  main()
