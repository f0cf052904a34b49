"""Writes tests/fixtures/marian/, bart/ and t5/: tiny random Marian (MarianMTModel, the OPUS-MT
family), BART (BartForConditionalGeneration) and T5 / mT5 checkpoints in the Hugging Face
layout and what transformers computes for them, for tests/test_pretrained_text.py and
tests/test_pretrained_t5.py (which need no PyTorch).

Runs in a reference environment with PyTorch and transformers (never a requirement of this
project), e.g. the one tools/make_whisper_fixtures.py describes:

  PYTHONPATH=. /work/whisper_env/bin/python tools/make_pretrained_text_fixtures.py [marian_bart t5]

(no argument: all families).

What it writes in marian/ (all small: d_model 16 or 24, vocabularies of 40 to 64 tokens):
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
and in bart/:
  hf_a/, io_a.npz   BART (learned positions with their offset of 2, embedding LayerNorm,
                    post-LN, GELU, final_logits_bias): vocabulary of 60 (<s> 0, <pad> 1,
                    </s> 2 the decoder's start token), d_model 16, 2+2 layers, 2 heads; the
                    same outputs, generate() also never producing <pad>
and in t5/ (sources of 12, 5 and 9 tokens, so relative distances reach the logarithmic buckets):
  hf_a/, io_a.npz   T5 v1.0: relu, tied output (decoder output times d_model**-0.5), vocabulary
                    64, d_model 16, 3 heads of d_kv 6 (attention width 18), 2+2 layers, 8
                    buckets up to distance 10
  hf_b/, io_b.npz   T5 v1.1 / Flan-T5: gated-gelu, its own lm_head (config.json's
                    tie_word_embeddings false, as on the hub), vocabulary 72, d_model 24, 3
                    heads of 8, 2 encoder layers and 1 decoder layer, 32 buckets up to 128
  hf_c/, io_c.npz   mT5 (MT5ForConditionalGeneration): gated-relu, own lm_head, vocabulary 56,
                    d_model 16, 4 heads of 4, 2+2 layers, 16 buckets up to 20
                    each io also holds transformers' _relative_position_bucket for relative
                    positions -2000..2000 (buckets_bi, buckets_uni); the references come from
                    the model transformers loads back from the saved directory
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

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures')
MAX_NEW = 12


def randomise(model, eos):
  """Every parameter redrawn but the fixed sinusoids; </s> favoured by the logits bias."""
  with torch.no_grad():
    for name, p in model.named_parameters():
      if 'embed_positions' in name and 'marian' in type(model).__name__.lower():
        continue          # Marian's fixed sinusoids
      if 'norm' in name and name.endswith('.weight'):
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      else:
        p.copy_(0.3 * torch.randn_like(p))
    bias = 0.5 * torch.randn_like(model.final_logits_bias)
    bias[0, eos] = 3.0    # </s>: some outputs end before MAX_NEW
    model.final_logits_bias.copy_(bias)
  model.tie_weights()


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
  randomise(model, 0)
  return model, pad


def make_bart(seed):
  torch.manual_seed(seed)
  cfg = transformers.BartConfig(
      vocab_size=60, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
      decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
      max_position_embeddings=32, activation_function='gelu', scale_embedding=False,
      bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2,
      forced_bos_token_id=None, forced_eos_token_id=2, dropout=0.0, attention_dropout=0.0,
      activation_dropout=0.0)
  model = transformers.BartForConditionalGeneration(cfg).eval()
  model.config._attn_implementation = 'eager'   # pylint: disable=protected-access
  randomise(model, 2)
  return model, 1


def make_t5(seed, *, model_type, vocab, d, d_kv, heads, enc, dec, ff, proj, tied, buckets,
            distance):
  """A random T5 (model_type 't5') or mT5 ('mt5'). v1.0-style (tied) scales the decoder
  output by d_model**-0.5 before the tied output; v1.1-style (untied, as T5 v1.1, Flan-T5
  and mT5 on the hub) has its own lm_head and no rescaling."""
  torch.manual_seed(seed)
  config_cls = transformers.MT5Config if model_type == 'mt5' else transformers.T5Config
  model_cls = (transformers.MT5ForConditionalGeneration if model_type == 'mt5'
               else transformers.T5ForConditionalGeneration)
  cfg = config_cls(
      vocab_size=vocab, d_model=d, d_kv=d_kv, d_ff=ff, num_layers=enc, num_decoder_layers=dec,
      num_heads=heads, relative_attention_num_buckets=buckets,
      relative_attention_max_distance=distance, dropout_rate=0.0, layer_norm_epsilon=1e-6,
      feed_forward_proj=proj, tie_word_embeddings=tied, pad_token_id=0, eos_token_id=1,
      decoder_start_token_id=0)
  model = model_cls(cfg).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if 'norm' in name:
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      elif name == 'shared.weight':
        p.copy_(torch.randn_like(p))     # tied logits (times d**-0.5) of order 1
      else:
        p.copy_((1.0 if 'relative_attention_bias' in name else 0.3) * torch.randn_like(p))
    if not tied:   # the hub's v1.1 / mT5 checkpoints: an lm_head of its own
      model.lm_head.weight = torch.nn.Parameter(0.3 * torch.randn_like(model.shared.weight))
      model.lm_head.weight.data[1] *= 1.5   # </s> a little likelier: some outputs end early
  return model, 0


def save_t5(out, tag, model, rng, tied):
  """Saves as the hub has T5 (config.json's tie_word_embeddings false for v1.1 / mT5), then
  computes the references from the model transformers loads back from the directory."""
  path = save_model(out, tag, model)
  with open(os.path.join(path, 'config.json')) as f:
    cfg = json.load(f)
  cfg['tie_word_embeddings'] = tied
  cfg.pop('scale_decoder_outputs', None)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(cfg, f, indent=2)
  loaded = type(model).from_pretrained(path, attn_implementation='eager').eval()
  if not tied:
    assert not torch.equal(loaded.lm_head.weight, loaded.shared.weight)
    assert not getattr(loaded.config, 'scale_decoder_outputs', False)
  else:
    assert loaded.config.model_type == 'mt5' or loaded.config.scale_decoder_outputs
  bucket = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
  rel = torch.arange(-2000, 2001)
  c = loaded.config
  extra = {f'buckets_{way}': bucket(rel, bidirectional=way == 'bi',
                                    num_buckets=c.relative_attention_num_buckets,
                                    max_distance=c.relative_attention_max_distance
                                    ).numpy().astype(np.int8) for way in ('bi', 'uni')}
  write_io(out, tag, loaded, 0, rng, (12, 5, 9), extra)


def save_model(out, tag, model):
  path = os.path.join(out, f'hf_{tag}')
  model.save_pretrained(path, safe_serialization=True)
  for extra in os.listdir(path):
    if extra not in ('model.safetensors', 'config.json'):
      os.remove(os.path.join(path, extra))
  return path


def save_case(out, tag, model, pad, rng, lengths=(9, 5, 7), extra=None):
  """Saves the model as hf_{tag}/ and writes io_{tag}.npz (with `extra` arrays)."""
  save_model(out, tag, model)
  write_io(out, tag, model, pad, rng, lengths, extra)


def write_io(out, tag, model, pad, rng, lengths=(9, 5, 7), extra=None):
  """io_{tag}.npz: transformers' encoder output, logits and generate() outputs of `model`."""
  cfg = model.config
  tgt_vocab = (cfg.decoder_vocab_size if not getattr(cfg, 'share_encoder_decoder_embeddings', True)
               else cfg.vocab_size)
  eos = cfg.eos_token_id
  src = np.full((len(lengths), max(lengths)), pad, np.int64)
  for r, n in enumerate(lengths):
    src[r, :n - 1] = rng.integers(3, cfg.vocab_size - 1, n - 1)
    src[r, :n - 1][src[r, :n - 1] == pad] = 3
    src[r, n - 1] = eos
  mask = (src != pad).astype(np.int64)
  dec_in = rng.integers(3, tgt_vocab - 1, (len(lengths), 6)).astype(np.int64)
  dec_in[dec_in == pad] = 3
  dec_in[:, 0] = cfg.decoder_start_token_id
  dec_in[1, 3] = eos      # </s> as an input token too
  dec_in[2, 2] = 1        # and id 1
  with torch.no_grad():
    res = model(input_ids=torch.from_numpy(src), attention_mask=torch.from_numpy(mask),
                decoder_input_ids=torch.from_numpy(dec_in))
    common = dict(input_ids=torch.from_numpy(src), attention_mask=torch.from_numpy(mask),
                  do_sample=False, max_new_tokens=MAX_NEW, min_length=0,
                  bad_words_ids=[[pad]], forced_eos_token_id=None, forced_bos_token_id=None,
                  no_repeat_ngram_size=0, repetition_penalty=1.0, length_penalty=0.0,
                  early_stopping='never', num_return_sequences=1)
    greedy = model.generate(num_beams=1, **common).numpy()
    beam = model.generate(num_beams=3, **common).numpy()

  def strip(seqs):   # without the start token, pad after </s> and up to MAX_NEW
    seqs = seqs[:, 1:].copy()
    # (transformers' beam search fills a row that ended early with </s>, greedy with pad)
    seqs[np.cumsum(np.cumsum(seqs == eos, axis=1), axis=1) > 1] = pad
    return np.pad(seqs, ((0, 0), (0, MAX_NEW - seqs.shape[1])), constant_values=pad)

  np.savez(os.path.join(out, f'io_{tag}.npz'), inputs=src.astype(np.int32),
           attention_mask=mask.astype(np.int32), decoder_inputs=dec_in.astype(np.int32),
           encoded=res.encoder_last_hidden_state.numpy().astype(np.float32),
           logits=res.logits.numpy().astype(np.float32),
           greedy=strip(greedy).astype(np.int32), beam3=strip(beam).astype(np.int32),
           **(extra or {}))
  print(out[-6:], tag, 'greedy', strip(greedy).tolist(), 'beam3', strip(beam).tolist(), file=sys.stderr)


def main_t5():
  out = os.path.join(FIXTURES, 't5')
  if os.path.isdir(out):
    shutil.rmtree(out)
  os.makedirs(out)
  rng = np.random.default_rng(1)
  # a: T5 v1.0 (relu, tied and rescaled), attention width 18 != d_model 16, 8 buckets up to
  # distance 10 (the test inputs reach the logarithmic buckets and the clamp).
  model, _ = make_t5(3, model_type='t5', vocab=64, d=16, d_kv=6, heads=3, enc=2, dec=2,
                     ff=32, proj='relu', tied=True, buckets=8, distance=10)
  save_t5(out, 'a', model, rng, True)
  # b: T5 v1.1 / Flan-T5 (gated-gelu, untied lm_head), 2 encoder and 1 decoder layers.
  model, _ = make_t5(4, model_type='t5', vocab=72, d=24, d_kv=8, heads=3, enc=2, dec=1,
                     ff=40, proj='gated-gelu', tied=False, buckets=32, distance=128)
  save_t5(out, 'b', model, rng, False)
  # c: mT5 (MT5ForConditionalGeneration) with gated-relu, untied.
  model, _ = make_t5(5, model_type='mt5', vocab=56, d=16, d_kv=4, heads=4, enc=2, dec=2,
                     ff=24, proj='gated-relu', tied=False, buckets=16, distance=20)
  save_t5(out, 'c', model, rng, False)
  write_versions(out)


def write_versions(out):
  with open(os.path.join(out, 'versions.json'), 'w') as f:
    json.dump({'torch': torch.__version__, 'transformers': transformers.__version__}, f,
              indent=1)
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
  print(f'wrote {out}: {total / 1e3:.0f} KB', file=sys.stderr)


def main():
  if os.path.isdir(FIXTURES + '/marian'):
    shutil.rmtree(FIXTURES + '/marian')
  if os.path.isdir(FIXTURES + '/bart'):
    shutil.rmtree(FIXTURES + '/bart')
  for family in ('marian', 'bart'):
    os.makedirs(os.path.join(FIXTURES, family))
  rng = np.random.default_rng(0)
  out = os.path.join(FIXTURES, 'marian')
  model_a, pad_a = make_model(0, vocab=64, decoder_vocab=64, d=16, enc=2, dec=2, heads=2,
                              activation='swish', scale=True, shared=True)
  save_case(out, 'a', model_a, pad_a, rng)
  model_b, pad_b = make_model(1, vocab=40, decoder_vocab=48, d=24, enc=1, dec=2, heads=3,
                              activation='gelu', scale=False, shared=False)
  save_case(out, 'b', model_b, pad_b, rng)
  model_c, pad_c = make_bart(2)
  save_case(os.path.join(FIXTURES, 'bart'), 'a', model_c, pad_c, rng)
  for family in ('marian', 'bart'):
    write_versions(os.path.join(FIXTURES, family))


if __name__ == '__main__':
  # With arguments, only those families: marian_bart, t5 (default: all).
  chosen = sys.argv[1:] or ['marian_bart', 't5']
  if 'marian_bart' in chosen:
    main()
  if 't5' in chosen:
    main_t5()
