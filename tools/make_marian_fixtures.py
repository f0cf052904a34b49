"""Writes tests/fixtures/marian/: tiny random Marian (MarianMTModel, the OPUS-MT family)
checkpoints in the Hugging Face layout and what transformers computes for them, for
tests/test_marian.py (which needs no PyTorch).

Runs in a reference environment with PyTorch and transformers (never a requirement of this
project), e.g. the one tools/make_whisper_fixtures.py describes:

  PYTHONPATH=. /work/whisper_env/bin/python tools/make_marian_fixtures.py

What it writes (all small: d_model 16 or 24, vocabularies of 40 to 64 tokens):
  hf_a/             one vocabulary shared by source and target (as most OPUS-MT models), SiLU
                    ('swish', OPUS-MT's activation), embeddings scaled by sqrt(d_model), 2+2
                    layers, 2 heads; model.safetensors + config.json from save_pretrained
  hf_b/             separate source and target vocabularies (share_encoder_decoder_embeddings
                    False: 40 and 48 tokens), GELU, unscaled embeddings, 1 encoder and 2
                    decoder layers, 3 heads
  io_a.npz, io_b.npz  in Hugging Face's ids: source ids [B, S] (padded with pad_token_id,
                    every row ending in </s>) and their attention mask, teacher-forced decoder
                    inputs [B, T] (decoder_start_token_id first), the encoder output [B, S, d],
                    the logits [B, T, V], and generate()'s outputs without the start token
                    (greedy and num_beams=3, length_penalty 0, pad never generated as
                    OPUS-MT's bad_words_ids say, no forced EOS, max_new_tokens=MAX_NEW)
Every parameter is redrawn (layer norms around 1, final_logits_bias included), so nothing is 0
or 1 where the model would hide a mistake; </s> gets a bias that ends some outputs early.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures',
                   'marian')
MAX_NEW = 12


def make_model(seed, *, vocab, decoder_vocab, d, enc, dec, heads, activation, scale, shared):
  torch.manual_seed(seed)
  # As OPUS-MT: </s> = 0, <unk> = 1, <pad> the last id (of the smaller vocabulary: the
  # two sides share it).
  pad = min(vocab, decoder_vocab) - 1
  cfg = transformers.MarianConfig(
      vocab_size=vocab, decoder_vocab_size=decoder_vocab, d_model=d, encoder_layers=enc,
      decoder_layers=dec, encoder_attention_heads=heads, decoder_attention_heads=heads,
      encoder_ffn_dim=2 * d, decoder_ffn_dim=2 * d, max_position_embeddings=64,
      activation_function=activation, scale_embedding=scale, pad_token_id=pad,
      eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=0,
      share_encoder_decoder_embeddings=shared, dropout=0.0, attention_dropout=0.0,
      activation_dropout=0.0)
  model = transformers.MarianMTModel(cfg).eval()
  model.config._attn_implementation = 'eager'   # pylint: disable=protected-access
  with torch.no_grad():
    for name, p in model.named_parameters():
      if 'embed_positions' in name:
        continue          # the fixed sinusoids
      if name.endswith('layer_norm.weight'):
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      else:
        p.copy_(0.3 * torch.randn_like(p))
    bias = 0.5 * torch.randn_like(model.final_logits_bias)
    bias[0, 0] = 3.0      # </s>: some outputs end before MAX_NEW
    model.final_logits_bias.copy_(bias)
  model.tie_weights()
  return model, pad


def save_case(tag, model, pad, rng):
  path = os.path.join(OUT, f'hf_{tag}')
  model.save_pretrained(path, safe_serialization=True)
  for extra in os.listdir(path):
    if extra not in ('model.safetensors', 'config.json'):
      os.remove(os.path.join(path, extra))
  cfg = model.config
  tgt_vocab = cfg.vocab_size if cfg.share_encoder_decoder_embeddings else cfg.decoder_vocab_size
  lengths = [9, 5, 7]
  src = np.full((len(lengths), max(lengths)), pad, np.int64)
  for r, n in enumerate(lengths):
    src[r, :n - 1] = rng.integers(2, pad, n - 1)
    src[r, n - 1] = 0
  mask = (src != pad).astype(np.int64)
  dec_in = rng.integers(1, tgt_vocab - 1, (len(lengths), 6)).astype(np.int64)
  dec_in[:, 0] = cfg.decoder_start_token_id
  dec_in[1, 3] = 0        # </s> as an input token too
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(src), attention_mask=torch.from_numpy(mask),
                decoder_input_ids=torch.from_numpy(dec_in))
    common = dict(input_ids=torch.from_numpy(src), attention_mask=torch.from_numpy(mask),
                  do_sample=False, max_new_tokens=MAX_NEW, min_length=0,
                  bad_words_ids=[[pad]], forced_eos_token_id=None, forced_bos_token_id=None,
                  no_repeat_ngram_size=0, repetition_penalty=1.0, length_penalty=0.0,
                  early_stopping='never', num_return_sequences=1)
    greedy = model.generate(num_beams=1, **common).numpy()
    beam = model.generate(num_beams=3, **common).numpy()

  def strip(seqs):   # without the start token, padded with pad to MAX_NEW
    seqs = seqs[:, 1:]
    return np.pad(seqs, ((0, 0), (0, MAX_NEW - seqs.shape[1])), constant_values=pad)

  np.savez(os.path.join(OUT, f'io_{tag}.npz'), inputs=src.astype(np.int32),
           attention_mask=mask.astype(np.int32), decoder_inputs=dec_in.astype(np.int32),
           encoded=out.encoder_last_hidden_state.numpy().astype(np.float32),
           logits=out.logits.numpy().astype(np.float32),
           greedy=strip(greedy).astype(np.int32), beam3=strip(beam).astype(np.int32))
  print(tag, 'greedy', strip(greedy).tolist(), 'beam3', strip(beam).tolist(), file=sys.stderr)


def main():
  if os.path.isdir(OUT):
    shutil.rmtree(OUT)
  os.makedirs(OUT)
  rng = np.random.default_rng(0)
  model_a, pad_a = make_model(0, vocab=64, decoder_vocab=64, d=16, enc=2, dec=2, heads=2,
                              activation='swish', scale=True, shared=True)
  save_case('a', model_a, pad_a, rng)
  model_b, pad_b = make_model(1, vocab=40, decoder_vocab=48, d=24, enc=1, dec=2, heads=3,
                              activation='gelu', scale=False, shared=False)
  save_case('b', model_b, pad_b, rng)
  with open(os.path.join(OUT, 'versions.json'), 'w') as f:
    json.dump({'torch': torch.__version__, 'transformers': transformers.__version__}, f,
              indent=1)
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
  print(f'wrote {OUT}: {total / 1e3:.0f} KB', file=sys.stderr)


if __name__ == '__main__':
  main()
