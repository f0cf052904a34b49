"""Writes tests/fixtures/whisper/: tiny random Whisper checkpoints and what the references
compute for them, for tests/test_whisper.py (which needs no PyTorch).

Runs in a reference environment with PyTorch, transformers, ctranslate2 and faster-whisper
(never a requirement of this project):

  python3 -m venv /work/whisper_env
  /work/whisper_env/bin/pip install torch==2.13.0 transformers safetensors tokenizers \
      ctranslate2 faster-whisper soundfile
  PYTHONPATH=. /work/whisper_env/bin/python tools/make_whisper_fixtures.py

What it writes (all small: d_model 32 or 24, vocabularies of 96 and 120 tokens):
  hf_a/, hf_b/      transformers' WhisperForConditionalGeneration with random weights (every
                    parameter redrawn, layer norms included, so nothing is 0 or 1), saved
                    with save_pretrained (model.safetensors + config.json): a has 80 mel
                    bins, 2+2 layers, 4 heads; b 128 bins, 2 encoder / 1 decoder layers, 3 heads
  io_a.npz, io_b.npz  inputs (log-mel features [B, T, mels], decoder ids [B, L]) and the
                    logits [B, L, V] transformers computes for them (float32)
  ct2_a/, ct2_a_int8/  model a converted by CTranslate2's own converter (WhisperLoader ->
                    WhisperSpec.save, float32 and int8 weights): model.bin + config.json;
                    ct2_a_vars.npz holds the float32 spec's variables as the spec had them
                    before saving, which the test compares with what our reader reads
  logmel.npz        a 1.37 s synthetic signal (two tones, a chirp and noise, 16 kHz) and
                    faster-whisper's log-mel of it for 80 and 128 bins, cut as its transcribe
                    cuts a segment (the first n // 160 frames; the rest of the 30 s window is
                    zeros)
  tokenizer.json    a word-level tokenizer over model a's 96 ids with Whisper's special
                    tokens at the ids config_a.json gives them, for the greedy-loop test
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures',
                   'whisper')

SPECIALS = ['<|endoftext|>', '<|startoftranscript|>', '<|en|>', '<|translate|>',
            '<|transcribe|>', '<|startoflm|>', '<|startofprev|>', '<|nocaptions|>',
            '<|notimestamps|>']


def sinusoids(length, channels, max_timescale=10000):
  """openai/whisper's encoder positions."""
  inc = np.log(max_timescale) / (channels // 2 - 1)
  inv = np.exp(-inc * np.arange(channels // 2))
  t = np.arange(length)[:, None] * inv[None, :]
  return np.concatenate([np.sin(t), np.cos(t)], axis=1).astype(np.float32)


def make_model(seed, *, vocab, mels, d, enc, dec, heads, frames, text_positions):
  torch.manual_seed(seed)
  eot = vocab - len(SPECIALS)   # the specials take the last ids, <|endoftext|> first
  cfg = transformers.WhisperConfig(
      vocab_size=vocab, num_mel_bins=mels, d_model=d, encoder_layers=enc, decoder_layers=dec,
      encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=4 * d,
      decoder_ffn_dim=4 * d, max_source_positions=frames // 2,
      max_target_positions=text_positions, pad_token_id=eot, bos_token_id=eot,
      eos_token_id=eot, decoder_start_token_id=eot + 1, suppress_tokens=[],
      begin_suppress_tokens=[], activation_function='gelu', scale_embedding=False,
      dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
  model = transformers.WhisperForConditionalGeneration(cfg).eval()
  model.config._attn_implementation = 'eager'   # pylint: disable=protected-access
  with torch.no_grad():
    for name, p in model.named_parameters():
      if 'embed_positions' in name and 'encoder' in name:
        p.copy_(torch.from_numpy(sinusoids(*p.shape)))
      elif name.endswith('layer_norm.weight'):
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      else:
        p.copy_(0.15 * torch.randn_like(p))
  model.tie_weights()
  return model, eot


def save_case(tag, model, eot, mels, frames, rng):
  path = os.path.join(OUT, f'hf_{tag}')
  model.save_pretrained(path, safe_serialization=True)
  for extra in os.listdir(path):
    if extra not in ('model.safetensors', 'config.json'):
      os.remove(os.path.join(path, extra))
  features = rng.normal(0, 0.6, (2, frames, mels)).astype(np.float32)
  ids = rng.integers(0, eot, (2, 7)).astype(np.int64)
  ids[:, 0] = eot + 1
  with torch.no_grad():
    logits = model(input_features=torch.from_numpy(features.transpose(0, 2, 1)),
                   decoder_input_ids=torch.from_numpy(ids)).logits.numpy()
  np.savez(os.path.join(OUT, f'io_{tag}.npz'), features=features, decoder_inputs=ids.astype(
      np.int32), logits=logits.astype(np.float32))


def save_ct2(model, vocab):
  """Model a through CTranslate2's converter and spec writer (float32 and int8)."""
  from ctranslate2.converters.transformers import WhisperLoader  # pylint: disable=g-import-not-at-top
  for quant, name in ((None, 'ct2_a'), ('int8', 'ct2_a_int8')):
    loader = WhisperLoader()
    spec = loader.get_model_spec(model)
    spec.register_vocabulary([f'tok{i}' for i in range(vocab)])
    spec.config.suppress_ids = []
    spec.config.suppress_ids_begin = []
    spec.config.lang_ids = []
    spec.config.alignment_heads = []
    spec.validate()
    spec.optimize(quantization=quant)
    if quant is None:
      variables = {k: (np.asarray(v.numpy(), np.float32) if hasattr(v, 'numpy') else v)
                   for k, v in spec.variables().items()}
      np.savez(os.path.join(OUT, 'ct2_a_vars.npz'),
               **{k: v for k, v in variables.items() if isinstance(v, np.ndarray)})
    path = os.path.join(OUT, name)
    os.makedirs(path)
    spec.save(path)
    for extra in os.listdir(path):
      if extra not in ('model.bin', 'config.json'):
        os.remove(os.path.join(path, extra))


def save_logmel():
  from faster_whisper.audio import pad_or_trim  # pylint: disable=g-import-not-at-top
  from faster_whisper.feature_extractor import FeatureExtractor  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  n = 21_937    # 1.37 s: not a whole number of hops
  t = np.arange(n) / 16000
  audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1870 * t)
           + 0.2 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.05 * rng.normal(size=n))
  audio = (audio * np.minimum(1.0, t / 0.2)).astype(np.float32)
  out = {'audio': audio}
  for mels in (80, 128):
    features = FeatureExtractor(feature_size=mels)(audio)        # as transcribe() calls it
    content = features.shape[-1] - 1
    segment = pad_or_trim(features[:, :content])                 # the first segment
    out[f'logmel_{mels}'] = segment[:, :content + 8].T.astype(np.float32)   # + zeros
  np.savez(os.path.join(OUT, 'logmel.npz'), **out)


def save_tokenizer(vocab, eot):
  from tokenizers import Tokenizer, models, pre_tokenizers, decoders  # pylint: disable=g-import-not-at-top
  words = {f'w{i}': i for i in range(eot)}
  words.update({tok: eot + i for i, tok in enumerate(SPECIALS)})
  assert len(words) == vocab
  tok = Tokenizer(models.WordLevel(words, unk_token='<|endoftext|>'))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  tok.decoder = decoders.WordPiece()   # joins words with spaces
  tok.save(os.path.join(OUT, 'tokenizer.json'))


def main():
  if os.path.isdir(OUT):
    shutil.rmtree(OUT)
  os.makedirs(OUT)
  rng = np.random.default_rng(0)
  vocab_a = 96
  model_a, eot_a = make_model(0, vocab=vocab_a, mels=80, d=32, enc=2, dec=2, heads=4,
                              frames=100, text_positions=32)
  save_case('a', model_a, eot_a, 80, 100, rng)
  model_b, eot_b = make_model(1, vocab=120, mels=128, d=24, enc=2, dec=1, heads=3, frames=60,
                              text_positions=24)
  save_case('b', model_b, eot_b, 128, 60, rng)
  save_ct2(model_a, vocab_a)
  save_logmel()
  save_tokenizer(vocab_a, eot_a)
  with open(os.path.join(OUT, 'versions.json'), 'w') as f:
    import ctranslate2, faster_whisper  # pylint: disable=g-import-not-at-top,multiple-imports
    json.dump({'torch': torch.__version__, 'transformers': transformers.__version__,
               'ctranslate2': ctranslate2.__version__,
               'faster_whisper': faster_whisper.__version__}, f, indent=1)
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
  print(f'wrote {OUT}: {total / 1e6:.2f} MB', file=sys.stderr)


if __name__ == '__main__':
  main()
