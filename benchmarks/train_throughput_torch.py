r"""The peer for benchmarks/train_throughput.py: PyTorch's nn.Transformer of the same size.

  pip install -r benchmarks/requirements.txt
  python benchmarks/train_throughput_torch.py

The same fixed model (embedding 256, 4 heads, MLP 1024, 3 + 3 layers, pre-LayerNorm, shared
vocabulary of 64 tied to the output, dropout 0.1), batch 128 of 32 source and 32 target
tokens, Adam, one optimizer step per iteration (eager PyTorch, float32, all threads).

Prints one JSON line: steps_per_s, tokens_per_s, step_flops (torch.utils.flop_counter, which
counts matmul-like operations only), peak_flops_per_s (a large float32 matmul timed here with
torch) and mfu. Pass --step_flops to use another count (e.g. the XLA cost analysis printed
by train_throughput.py for our step of the same shapes) so both sides divide the same work.
"""
import argparse
import json
import math
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

VOCAB = 64


class Seq2Seq(nn.Module):
  """Embeddings (scaled by sqrt(d), sinusoidal positions) around nn.Transformer; tied logits."""

  def __init__(self, d: int = 256, heads: int = 4, mlp: int = 1024, layers: int = 3,
               dropout: float = 0.1, max_len: int = 512):
    super().__init__()
    self.d = d
    self.embed = nn.Embedding(VOCAB, d)
    nn.init.normal_(self.embed.weight, std=d ** -0.5)
    pos = torch.arange(max_len)[:, None] * torch.exp(
        -math.log(1e4) * torch.arange(d // 2) / (d // 2 - 1))[None]
    self.register_buffer('pos', torch.cat([pos.sin(), pos.cos()], -1))
    self.drop = nn.Dropout(dropout)
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(d, heads, mlp, dropout, batch_first=True, norm_first=True),
        layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
    self.core = nn.Transformer(d, heads, layers, layers, mlp, dropout, custom_encoder=encoder,
                               batch_first=True, norm_first=True)

  def forward(self, src, dec_in):
    def emb(ids):
      return self.drop(self.embed(ids) * math.sqrt(self.d) + self.pos[:ids.shape[1]])
    causal = nn.Transformer.generate_square_subsequent_mask(dec_in.shape[1])
    y = self.core(emb(src), emb(dec_in), tgt_mask=causal, tgt_is_causal=True,
                  src_key_padding_mask=src == 0, memory_key_padding_mask=src == 0)
    return y @ self.embed.weight.T


def peak_flops_per_s(n: int = 2048, reps: int = 10) -> float:
  a = torch.ones(n, n)
  a @ a
  t = time.perf_counter()
  for _ in range(reps):
    a @ a
  return 2 * n ** 3 * reps / (time.perf_counter() - t)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--src_len', type=int, default=32)
  p.add_argument('--tgt_len', type=int, default=32)
  p.add_argument('--steps', type=int, default=10)
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--step_flops', type=float, default=0.0,
                 help='FLOPs per step to divide by (default: torch flop counter)')
  a = p.parse_args()
  torch.manual_seed(0)
  model = Seq2Seq()
  opt = torch.optim.Adam(model.parameters(), lr=1e-4)
  g = torch.Generator().manual_seed(0)
  src = torch.randint(4, VOCAB, (a.batch, a.src_len), generator=g)
  tgt = torch.randint(4, VOCAB, (a.batch, a.tgt_len), generator=g)
  dec_in = torch.cat([torch.ones(a.batch, 1, dtype=torch.long), tgt[:, :-1]], 1)
  loss_fn = nn.CrossEntropyLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    logits = model(src, dec_in)
    loss = loss_fn(logits.reshape(-1, VOCAB), tgt.reshape(-1))
    loss.backward()
    opt.step()
    return loss

  model.train()
  counter = FlopCounterMode(display=False)
  with counter:
    step()
  counted = float(counter.get_total_flops())
  for _ in range(a.warmup):
    step()
  t = time.perf_counter()
  for _ in range(a.steps):
    loss = step()
  loss.item()
  dt = (time.perf_counter() - t) / a.steps
  peak = peak_flops_per_s()
  flops = a.step_flops or counted
  print(json.dumps({
      'model': 'torch.nn.Transformer', 'torch': torch.__version__,
      'threads': torch.get_num_threads(),
      'num_params': sum(p.numel() for p in model.parameters()), 'batch': a.batch,
      'src_len': a.src_len, 'tgt_len': a.tgt_len, 'steps_per_s': 1 / dt, 'step_ms': 1000 * dt,
      'tokens_per_s': a.batch * (a.src_len + a.tgt_len) / dt, 'counted_flops': counted,
      'step_flops': flops, 'peak_flops_per_s': peak, 'mfu': flops / dt / peak}), flush=True)


if __name__ == '__main__':
  main()
