r"""The peer for benchmarks/train_throughput.py: PyTorch models of the same sizes.

  pip install -r benchmarks/requirements.txt
  python benchmarks/train_throughput_torch.py               # nn.Transformer
  python benchmarks/train_throughput_torch.py --model=rnn   # the attention LSTM
  python benchmarks/train_throughput_torch.py --model=gru   # the same with GRUs

--model=transformer: the fixed model of train_throughput.py (embedding 256, 4 heads, MLP 1024,
3 + 3 layers, pre-LayerNorm, shared vocabulary of 64 tied to the output, dropout 0.1).
--model=rnn | gru: its `rnn` / `gru` model (`AttentionRNN` below): embeddings 256, a fused
bidirectional `nn.LSTM` (`nn.GRU`) encoder of 2 x 256, Bahdanau attention (512), a 2-layer
decoder of `nn.LSTMCell`s (`nn.GRUCell`s) of 512 run by a Python loop over time, as PyTorch
users write it, the deep-output readout and the vocabulary projection after the loop (one
matmul over all steps), dropout 0.1. Batch 128 of 32 source and 32 target tokens, Adam, one
optimizer step per iteration (eager PyTorch, float32, all threads).

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


class AttentionRNN(nn.Module):
  """RNNsearch-shaped (Bahdanau et al. 2015): the `rnn` model of train_throughput.py in PyTorch.

  The decoder state s_{i-1} queries the annotations, the context c_i joins E y_{i-1} as the
  first decoder layer's input, and the readout reads [s_{i-1}, E y_{i-1}, c_i]. PyTorch's
  cells keep two bias vectors per gate (ours one) and its GRU applies the reset gate after the
  recurrent product (ours, as Cho et al., before it): the same work per step.
  """

  def __init__(self, cell: str = 'lstm', emb: int = 256, hidden: int = 256, layers: int = 2,
               dropout: float = 0.1):
    super().__init__()
    self.cell, dec, att = cell, 2 * hidden, 2 * hidden
    rnn, rnn_cell = (nn.LSTM, nn.LSTMCell) if cell == 'lstm' else (nn.GRU, nn.GRUCell)
    self.src_embed = nn.Embedding(VOCAB, emb)
    self.tgt_embed = nn.Embedding(VOCAB, emb)
    self.encoder = rnn(emb, hidden, num_layers=layers, bidirectional=True, batch_first=True,
                       dropout=dropout)
    self.cells = nn.ModuleList([rnn_cell(emb + 2 * hidden if i == 0 else dec, dec)
                                for i in range(layers)])
    self.keys = nn.Linear(2 * hidden, att, bias=False)
    self.query = nn.Linear(dec, att)
    self.v = nn.Parameter(torch.randn(att) * att ** -0.5)
    self.readout_state = nn.Linear(dec, dec)
    self.readout_embed = nn.Linear(emb, dec, bias=False)
    self.readout_context = nn.Linear(2 * hidden, dec, bias=False)
    self.out = nn.Linear(dec, VOCAB)
    self.drop = nn.Dropout(dropout)

  def encode(self, src):
    """-> (memory [B, S, 2h], keys [B, S, att], mask [B, S])."""
    memory, _ = self.encoder(self.drop(self.src_embed(src)))
    return memory, self.keys(memory), src > 0

  def zero_state(self, batch: int):
    z = torch.zeros(batch, self.cells[0].hidden_size)
    return [(z, z) if self.cell == 'lstm' else z for _ in self.cells]

  def step(self, y_emb, states, memory, keys, mask):
    """One decoder step: (E y_{i-1} [B, E], states) -> (s_{i-1}, c_i, new states)."""
    top = states[-1]
    s_prev = top[0] if self.cell == 'lstm' else top
    scores = torch.tanh(keys + self.query(s_prev)[:, None]) @ self.v
    weights = torch.softmax(scores.masked_fill(~mask, -1e9), -1)
    context = torch.bmm(weights[:, None], memory)[:, 0]
    x, new = torch.cat([y_emb, context], -1), []
    for cell, state in zip(self.cells, states):
      state = cell(self.drop(x), state)
      new.append(state)
      x = state[0] if self.cell == 'lstm' else state
    return s_prev, context, new

  def readout(self, s_prev, y_emb, context):
    return self.out(self.drop(self.readout_state(s_prev) + self.readout_embed(y_emb)
                              + self.readout_context(context)))

  def forward(self, src, dec_in):
    memory, keys, mask = self.encode(src)
    y_emb = self.tgt_embed(dec_in)
    states, s_all, c_all = self.zero_state(src.shape[0]), [], []
    for t in range(dec_in.shape[1]):
      s_prev, context, states = self.step(y_emb[:, t], states, memory, keys, mask)
      s_all.append(s_prev)
      c_all.append(context)
    return self.readout(torch.stack(s_all, 1), y_emb, torch.stack(c_all, 1))


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
  p.add_argument('--model', default='transformer', choices=('transformer', 'rnn', 'gru'))
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--src_len', type=int, default=32)
  p.add_argument('--tgt_len', type=int, default=32)
  p.add_argument('--steps', type=int, default=10)
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--step_flops', type=float, default=0.0,
                 help='FLOPs per step to divide by (default: torch flop counter)')
  a = p.parse_args()
  torch.manual_seed(0)
  model = Seq2Seq() if a.model == 'transformer' else AttentionRNN(
      'lstm' if a.model == 'rnn' else 'gru')
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
      'model': a.model, 'impl': type(model).__name__, 'torch': torch.__version__,
      'threads': torch.get_num_threads(),
      'num_params': sum(p.numel() for p in model.parameters()), 'batch': a.batch,
      'src_len': a.src_len, 'tgt_len': a.tgt_len, 'steps_per_s': 1 / dt, 'step_ms': 1000 * dt,
      'tokens_per_s': a.batch * (a.src_len + a.tgt_len) / dt, 'counted_flops': counted,
      'step_flops': flops, 'peak_flops_per_s': peak, 'mfu': flops / dt / peak}), flush=True)


if __name__ == '__main__':
  main()
