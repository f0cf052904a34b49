r"""Decoding throughput of seq2seq_jax's beam search, and of Hugging Face generate() beside it.

The fixed model: a Transformer with embedding 256, 4 heads, MLP 1024, 3 + 3 layers,
vocabulary 64, batch 64, source length 32 and exactly 32 output tokens. Exactly 32 tokens are
forced by giving EOS a large negative bias (ours: eos_id is a token the model never picks;
Hugging Face: min_new_tokens = max_new_tokens = 32), so both sides do the same work.

  python benchmarks/decode_throughput.py                 # seq2seq_jax, beam 1 and 4
  python benchmarks/decode_throughput.py --hf            # + transformers (PyTorch, CPU)

The --hf side needs `pip install -r benchmarks/requirements.txt`. Prints one JSON line per
(implementation, beam size) with beam_size, sentences_per_s and tokens_per_s.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np

from seq2seq_jax import decoding
from seq2seq_jax.models import build_model

VOCAB, BATCH, SRC_LEN, OUT_LEN = 64, 64, 32, 32
MODEL = dict(name='transformer', emb_dim=256, num_heads=4, mlp_dim=1024, num_encoder_layers=3,
             num_decoder_layers=3, dropout_rate=0.0, share_embeddings=True, tie_output=True,
             max_len=64)


def bench_jax(beam_size: int, repeats: int) -> dict:
  model = build_model(MODEL, VOCAB, VOCAB)
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(4, VOCAB, (BATCH, SRC_LEN)), jnp.int32)
  params = nn.unbox(model.init(jax.random.key(0), {'inputs': inputs, 'decoder_inputs': inputs},
                               train=False)['params'])
  never = VOCAB  # an id outside the vocabulary: never generated, so all 32 steps run

  @jax.jit
  def decode(params, inputs):
    cache = model.apply({'params': params}, inputs, OUT_LEN, method='init_cache')
    fn = lambda t, c: model.apply({'params': params}, t, c, method='decode_step')
    if beam_size == 1:
      return decoding.greedy_search(fn, cache, batch_size=BATCH, max_len=OUT_LEN, bos_id=1,
                                    eos_id=never)[0]
    return decoding.beam_search(fn, cache, batch_size=BATCH, beam_size=beam_size,
                                max_len=OUT_LEN, bos_id=1, eos_id=never, alpha=0.6)[0]

  t = time.perf_counter()
  out = decode(params, inputs).block_until_ready()
  compile_s = time.perf_counter() - t
  assert out.shape[-1] == OUT_LEN and bool((out[..., -1] != 0).all())  # really 32 tokens
  t = time.perf_counter()
  for _ in range(repeats):
    out = decode(params, inputs)
  out.block_until_ready()
  dt = (time.perf_counter() - t) / repeats
  return {'impl': 'seq2seq_jax', 'beam_size': beam_size, 'sentences_per_s': BATCH / dt,
          'tokens_per_s': BATCH * OUT_LEN / dt, 'seconds_per_batch': dt, 'compile_s': compile_s,
          'backend': jax.default_backend()}


def bench_hf(beam_size: int, repeats: int) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  from transformers import BartConfig, BartForConditionalGeneration  # pylint: disable=g-import-not-at-top
  cfg = BartConfig(vocab_size=VOCAB, d_model=256, encoder_attention_heads=4,
                   decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024,
                   encoder_layers=3, decoder_layers=3, max_position_embeddings=128,
                   pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                   forced_bos_token_id=None, forced_eos_token_id=None, dropout=0.0)
  model = BartForConditionalGeneration(cfg).eval()
  rng = np.random.default_rng(0)
  inputs = torch.tensor(rng.integers(4, VOCAB, (BATCH, SRC_LEN)), dtype=torch.long)
  kwargs = dict(num_beams=beam_size, do_sample=False, max_new_tokens=OUT_LEN,
                min_new_tokens=OUT_LEN, early_stopping=False, length_penalty=0.6,
                use_cache=True)
  with torch.inference_mode():
    out = model.generate(inputs, **kwargs)  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
      out = model.generate(inputs, **kwargs)
    dt = (time.perf_counter() - t) / repeats
  generated = out.shape[1] - 1  # minus the decoder start token
  return {'impl': 'transformers.generate', 'beam_size': beam_size,
          'sentences_per_s': BATCH / dt, 'tokens_per_s': BATCH * generated / dt,
          'seconds_per_batch': dt, 'torch_threads': torch.get_num_threads(),
          'torch': torch.__version__}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--beams', default='1,4')
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--hf', action='store_true', help='also time Hugging Face generate()')
  a = p.parse_args()
  for beam in (int(b) for b in a.beams.split(',')):
    print(json.dumps(bench_jax(beam, a.repeats)), flush=True)
    if a.hf:
      print(json.dumps(bench_hf(beam, a.repeats)), flush=True)


if __name__ == '__main__':
  main()
