r"""Decoding throughput of seq2seq_jax's beam search, and of Hugging Face generate() beside it.

The fixed model: a Transformer with embedding 256, 4 heads, MLP 1024, 3 + 3 layers,
vocabulary 64, batch 64, source length 32, random parameters, and exactly 32 output tokens
per hypothesis, so both sides do the same work:
  - seq2seq_jax: eos_id=64, an id outside the 64-token vocabulary. No hypothesis can end,
    so every search runs all 32 steps (early stopping never fires); checked on the output.
  - transformers: min_new_tokens = max_new_tokens = 32 (EOS is masked until step 32).
The Hugging Face model is BART-shaped (d_model 256, 4 heads, FFN 1024, 3 + 3 layers,
vocabulary 64); BART normalises after each block where ours normalises before, which costs
the same.

Threads: --threads 0 (the default) leaves both at their defaults (all cores): the fair
comparison. --threads 1 asks both for one thread (XLA: --xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1; torch.set_num_threads(1)), but jax 0.10's CPU runtime still
used 1.7 cores under it (measured), so it is not a single-core comparison; for that, pin the
process: `taskset -c 0 python benchmarks/decode_throughput.py --hf`. Each line reports
`cpu_util`, CPU seconds per wall second while timing, to show the threads really used.

  python benchmarks/decode_throughput.py                   # seq2seq_jax, beam 1 and 4
  python benchmarks/decode_throughput.py --hf --greedy     # + transformers, + greedy_search
  python benchmarks/decode_throughput.py --model=rnn --torch   # the attention LSTM + PyTorch's

--model=rnn | gru: the attention LSTM / GRU of benchmarks/train_throughput.py (embeddings
256, BiLSTM 2 x 256, Bahdanau attention, 2-layer decoder of 512), same batch and lengths, no
EOS either. --torch times the same model in PyTorch (train_throughput_torch.AttentionRNN)
under a beam search written as PyTorch users write one: a batched loop over time, top-k over
beam x vocabulary, the decoder states reordered with index_select (`torch_beam_search` below).

--hf needs `pip install -r benchmarks/requirements.txt`. Prints one JSON line per
(implementation, search, beam size) with beam_size, sentences_per_s and tokens_per_s, the
median over --repeats timed runs after two warm-up runs (the first compiles). tokens_per_s
counts the returned sentences' tokens (64 x 32 per batch), not every beam's.
"""
import argparse
import json
import os
import statistics
import sys
import time

VOCAB, BATCH, SRC_LEN, OUT_LEN = 64, 64, 32, 32
MODELS = {
    'transformer': dict(name='transformer', emb_dim=256, num_heads=4, mlp_dim=1024,
                        num_encoder_layers=3, num_decoder_layers=3, dropout_rate=0.0,
                        share_embeddings=True, tie_output=True, max_len=64),
    'rnn': dict(name='rnn', cell='lstm', emb_dim=256, hidden_dim=256, encoder_layers=2,
                decoder_layers=2, bidirectional=True, attention='bahdanau', dropout_rate=0.0),
}
MODELS['gru'] = dict(MODELS['rnn'], cell='gru')
BOS_ID = 1
NEVER_EOS = VOCAB  # outside the vocabulary: never generated, so all OUT_LEN steps run


def _timed(fn, repeats: int) -> tuple[float, float]:
  """Median wall seconds of `repeats` calls of fn(), and CPU seconds per wall second."""
  walls, cpu0, wall0 = [], time.process_time(), time.perf_counter()
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    walls.append(time.perf_counter() - t)
  return statistics.median(walls), (time.process_time() - cpu0) / (time.perf_counter() - wall0)


def _line(impl: str, search: str, beam_size: int, seconds: float, cpu_util: float,
          **extra) -> dict:
  return {'impl': impl, 'search': search, 'beam_size': beam_size,
          'sentences_per_s': round(BATCH / seconds, 2),
          'tokens_per_s': round(BATCH * OUT_LEN / seconds, 1),
          'seconds_per_batch': round(seconds, 4), 'cpu_util': round(cpu_util, 2), **extra}


def bench_jax(model_name: str, search: str, beam_size: int, repeats: int) -> dict:
  """Times seq2seq_jax's beam_search (or greedy_search) over the model's decode_step."""
  # Imported here so main() can set XLA_FLAGS first.
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.decoding import search as decoding  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.models import build_model  # pylint: disable=g-import-not-at-top

  model = build_model(MODELS[model_name], VOCAB, VOCAB)
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(4, VOCAB, (BATCH, SRC_LEN)), jnp.int32)
  params = nn.unbox(model.init(jax.random.key(0), {'inputs': inputs, 'decoder_inputs': inputs},
                               train=False)['params'])

  @jax.jit
  def decode(params, inputs):
    cache = model.apply({'params': params}, inputs, OUT_LEN,
                        1 if search == 'greedy' else beam_size, method='init_cache')
    fn = lambda t, c: model.apply({'params': params}, t, c, method='decode_step')
    if search == 'greedy':
      return decoding.greedy_search(fn, cache, batch_size=BATCH, max_len=OUT_LEN,
                                    bos_id=BOS_ID, eos_id=NEVER_EOS)[0]
    return decoding.beam_search(fn, cache, batch_size=BATCH, beam_size=beam_size,
                                max_len=OUT_LEN, bos_id=BOS_ID, eos_id=NEVER_EOS, alpha=0.6)[0]

  t = time.perf_counter()
  out = decode(params, inputs).block_until_ready()  # compile + warm-up
  compile_s = time.perf_counter() - t
  if not bool((out[..., -1] != 0).all()):
    raise RuntimeError('a hypothesis ended before 32 tokens')
  decode(params, inputs).block_until_ready()  # second warm-up
  seconds, util = _timed(lambda: decode(params, inputs).block_until_ready(), repeats)
  return _line('seq2seq_jax', search, beam_size, seconds, util, model=model_name,
               compile_s=round(compile_s, 2), backend=jax.default_backend())


def bench_hf(beam_size: int, repeats: int) -> dict:
  """Times transformers' generate(num_beams=beam_size) on a BART of the same size."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  cfg = transformers.BartConfig(
      vocab_size=VOCAB, d_model=256, encoder_attention_heads=4, decoder_attention_heads=4,
      encoder_ffn_dim=1024, decoder_ffn_dim=1024, encoder_layers=3, decoder_layers=3,
      max_position_embeddings=128, pad_token_id=0, bos_token_id=BOS_ID, eos_token_id=2,
      decoder_start_token_id=BOS_ID, forced_bos_token_id=None, forced_eos_token_id=None,
      dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
  model = transformers.BartForConditionalGeneration(cfg).eval()
  rng = np.random.default_rng(0)
  inputs = torch.tensor(rng.integers(4, VOCAB, (BATCH, SRC_LEN)), dtype=torch.long)
  kwargs = dict(num_beams=beam_size, do_sample=False, max_new_tokens=OUT_LEN,
                min_new_tokens=OUT_LEN, no_repeat_ngram_size=0, use_cache=True)
  if beam_size > 1:  # beam-only flags (generate() warns about them otherwise)
    kwargs.update(early_stopping=False, length_penalty=0.6)
  with torch.inference_mode():
    out = model.generate(inputs, **kwargs)  # warm-up
    model.generate(inputs, **kwargs)
    seconds, util = _timed(lambda: model.generate(inputs, **kwargs), repeats)
  if out.shape[1] - 1 != OUT_LEN:  # minus the decoder start token
    raise RuntimeError(f'generate() made {out.shape[1] - 1} tokens, not {OUT_LEN}')
  return _line('transformers.generate', 'greedy' if beam_size == 1 else 'beam', beam_size,
               seconds, util, torch_threads=torch.get_num_threads(), torch=torch.__version__,
               transformers=transformers.__version__)


def torch_beam_search(model, src, beam_size: int, max_len: int, alpha: float = 0.6):
  """Batched beam search over AttentionRNN.step: [B, beam, max_len] tokens, best first."""
  import torch  # pylint: disable=g-import-not-at-top
  batch, vocab = src.shape[0], VOCAB
  memory, keys, mask = model.encode(src)
  tile = lambda x: x.repeat_interleave(beam_size, 0)
  memory, keys, mask = tile(memory), tile(keys), tile(mask)
  states = model.zero_state(batch * beam_size)
  tokens = torch.full((batch * beam_size,), BOS_ID, dtype=torch.long)
  scores = torch.full((batch, beam_size), float('-inf'))
  scores[:, 0] = 0.0                       # one live hypothesis per item at the start
  history = torch.zeros(batch * beam_size, 0, dtype=torch.long)
  offset = (torch.arange(batch) * beam_size)[:, None]
  for _ in range(max_len):
    y_emb = model.tgt_embed(tokens)
    s_prev, context, states = model.step(y_emb, states, memory, keys, mask)
    logp = torch.log_softmax(model.readout(s_prev, y_emb, context), -1)
    cand = scores[:, :, None] + logp.view(batch, beam_size, vocab)
    scores, flat = cand.view(batch, -1).topk(beam_size, -1)
    origin = (flat // vocab + offset).view(-1)
    tokens = (flat % vocab).view(-1)
    history = torch.cat([history.index_select(0, origin), tokens[:, None]], 1)
    states = [tuple(s.index_select(0, origin) for s in st) if isinstance(st, tuple)
              else st.index_select(0, origin) for st in states]
  # Every hypothesis has max_len tokens, so the length penalty ((5 + L) / 6) ** alpha divides
  # all scores alike: the top-k order is already the final order.
  del alpha
  return history.view(batch, beam_size, max_len)


def bench_torch(model_name: str, beam_size: int, repeats: int) -> dict:
  """Times torch_beam_search on the PyTorch AttentionRNN of the same size."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from train_throughput_torch import AttentionRNN  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  model = AttentionRNN('lstm' if model_name == 'rnn' else 'gru', dropout=0.0).eval()
  rng = np.random.default_rng(0)
  inputs = torch.tensor(rng.integers(4, VOCAB, (BATCH, SRC_LEN)), dtype=torch.long)
  with torch.inference_mode():
    out = torch_beam_search(model, inputs, beam_size, OUT_LEN)  # warm-up
    torch_beam_search(model, inputs, beam_size, OUT_LEN)
    seconds, util = _timed(lambda: torch_beam_search(model, inputs, beam_size, OUT_LEN),
                           repeats)
  if out.shape != (BATCH, beam_size, OUT_LEN):
    raise RuntimeError(f'torch beam search returned {tuple(out.shape)}')
  return _line('torch', 'beam', beam_size, seconds, util, model=model_name,
               torch_threads=torch.get_num_threads(), torch=torch.__version__,
               num_params=sum(p.numel() for p in model.parameters()))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', default='transformer', choices=sorted(MODELS))
  p.add_argument('--beams', default='1,4', help='comma-separated beam sizes')
  p.add_argument('--repeats', type=int, default=5, help='timed runs (median reported)')
  p.add_argument('--threads', type=int, default=0, choices=(0, 1),
                 help='0: both at their defaults (all cores); 1: ask both for one thread '
                      '(XLA does not fully obey: see cpu_util)')
  p.add_argument('--greedy', action='store_true', help='also time greedy_search (beam 1)')
  p.add_argument('--hf', action='store_true', help='also time Hugging Face generate()')
  p.add_argument('--torch', action='store_true',
                 help='also time the PyTorch model and beam search (--model=rnn | gru)')
  a = p.parse_args()
  if a.hf and a.model != 'transformer':
    p.error('--hf compares the Transformer (--model=transformer); for rnn | gru use --torch')
  if a.torch and a.model == 'transformer':
    p.error('--torch times the recurrent peer: pass --model=rnn or --model=gru')
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  if a.threads == 1:
    # Must be set before jax is imported (bench_jax imports it).
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_multi_thread_eigen'
                               '=false intra_op_parallelism_threads=1').strip()
  if a.hf or a.torch:
    import torch  # pylint: disable=g-import-not-at-top
    if a.threads == 1:
      torch.set_num_threads(1)
      torch.set_num_interop_threads(1)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  for beam in (int(b) for b in a.beams.split(',')):
    print(json.dumps(bench_jax(a.model, 'beam', beam, a.repeats)), flush=True)
    if beam == 1 and a.greedy:
      print(json.dumps(bench_jax(a.model, 'greedy', 1, a.repeats)), flush=True)
    if a.hf:
      print(json.dumps(bench_hf(beam, a.repeats)), flush=True)
    if a.torch:
      print(json.dumps(bench_torch(a.model, beam, a.repeats)), flush=True)


if __name__ == '__main__':
  main()
