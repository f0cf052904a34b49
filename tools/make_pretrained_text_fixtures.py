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

Tokenizers (for the tasks' model.pretrained, tests/test_pretrained_tasks.py), trained here on
the few sentences of CORPUS (needs sentencepiece, 0.2.3 here, beside transformers):
  marian/hf_c/      source.spm, target.spm (SentencePiece unigram models of 40 pieces, English
                    and French) and vocab.json (</s> 0, <unk> 1, the pieces of both that fit,
                    <pad> 63: some pieces are left out, so they read as <unk>), as MarianTokenizer
                    saves them
  marian/hf_d/      the same with separate vocabularies: vocab.json (40) and target_vocab.json
                    (48)
  bart/hf_b/        a second BART whose vocabulary is a byte-level BPE of 300 tokens (<s> 0,
                    <pad> 1, </s> 2, <unk> 3, <mask> 4), 1+1 layers, forced_bos_token_id 0 (as
                    bart-large, in generation_config.json as transformers 5 saves it);
                    vocab.json + merges.txt + tokenizer.json, as BartTokenizer saves them
  t5/hf_d/          a T5 v1.1 (gated-gelu, own lm_head, 1+1 layers, 2 heads of 8, 8 buckets
                    up to 16) with spiece.model (64 pieces, <pad> 0, </s> 1, <unk> 2) and the
                    tokenizer.json T5Tokenizer makes of it (4 <extra_id_N> sentinels; the
                    vocabulary has 4 rows more, as t5-small's 32128 for 32100 tokens), trained
                    with T5_PREFIX before every source; its text_d.json has that source_prefix
  text_{tag}.json   for each of those, in Hugging Face's ids: TEXTS, their input_ids (the
                    tokenizer's, special tokens added), text_target encodings of TARGETS, the
                    greedy generate() output (as above, max_new_tokens=MAX_NEW, the checkpoint's
                    forced_bos_token_id) and its batch_decode(skip_special_tokens=True)
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
FIT_STEPS = 60      # the text cases' training on CORPUS
# What the fixture tokenizers are trained on (English sources, French targets).
CORPUS = [
    ('The cat sat on the mat.', 'Le chat est assis sur le tapis.'),
    ('A dog ran in the park!', 'Un chien a couru dans le parc !'),
    ('Numbers like 42 and 7 appear here.', 'Des nombres comme 42 et 7 apparaissent ici.'),
    ('She reads a book every evening.', 'Elle lit un livre chaque soir.'),
    ('We are going to the market tomorrow.', 'Nous allons au marché demain.'),
    ('The weather is nice today.', 'Il fait beau aujourd\'hui.'),
]
# What the references tokenize and translate: seen words, unseen ones, an unseen character.
TEXTS = ['The cat ran in the park.', 'A book every day!', 'Zebras eat 42 apples ß.',
         'the mat']
TARGETS = ['Le chat a couru.', 'Un livre ß chaque jour !', 'Des zèbres', 'le tapis']
T5_PREFIX = 'translate English to French: '   # t5/hf_d's task prefix (data.source_prefix)


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


def make_bart(seed, vocab=60, layers=2, forced_bos=None, positions=32):
  torch.manual_seed(seed)
  cfg = transformers.BartConfig(
      vocab_size=vocab, d_model=16, encoder_layers=layers, decoder_layers=layers,
      encoder_attention_heads=2,
      decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
      max_position_embeddings=positions, activation_function='gelu', scale_embedding=False,
      bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2,
      forced_bos_token_id=forced_bos, forced_eos_token_id=2, dropout=0.0, attention_dropout=0.0,
      activation_dropout=0.0)
  model = transformers.BartForConditionalGeneration(cfg).eval()
  model.generation_config.forced_bos_token_id = forced_bos   # (transformers 5 keeps it there)
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
  loaded = t5_as_on_the_hub(save_model(out, tag, model), type(model), tied)
  bucket = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
  rel = torch.arange(-2000, 2001)
  c = loaded.config
  extra = {f'buckets_{way}': bucket(rel, bidirectional=way == 'bi',
                                    num_buckets=c.relative_attention_num_buckets,
                                    max_distance=c.relative_attention_max_distance
                                    ).numpy().astype(np.int8) for way in ('bi', 'uni')}
  write_io(out, tag, loaded, 0, rng, (12, 5, 9), extra)


def t5_as_on_the_hub(path, model_cls, tied):
  """config.json of a saved T5 as the hub has it (tie_word_embeddings false for v1.1 / mT5);
  returns the model transformers loads back from the directory."""
  with open(os.path.join(path, 'config.json')) as f:
    cfg = json.load(f)
  cfg['tie_word_embeddings'] = tied
  cfg.pop('scale_decoder_outputs', None)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(cfg, f, indent=2)
  loaded = model_cls.from_pretrained(path, attn_implementation='eager').eval()
  if not tied:
    assert not torch.equal(loaded.lm_head.weight, loaded.shared.weight)
    assert not getattr(loaded.config, 'scale_decoder_outputs', False)
  else:
    assert loaded.config.model_type == 'mt5' or loaded.config.scale_decoder_outputs
  return loaded


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


def train_spm(path, sentences, size, ext='.spm', **special):
  """A SentencePiece unigram model of `size` pieces at path + ext (`special`: its ids, e.g.
  T5's pad_id=0, eos_id=1, unk_id=2)."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences * 4), model_prefix=path, vocab_size=size,
      model_type='unigram', character_coverage=1.0, num_threads=1, minloglevel=2,
      hard_vocab_limit=False, normalization_rule_name='identity',  # (no 240 KB charsmap)
      **special)
  os.replace(path + '.model', path + ext)
  os.remove(path + '.vocab')
  return spm.SentencePieceProcessor(model_file=path + ext)


def marian_tokenizer(path, vocab, decoder_vocab, shared):
  """source.spm, target.spm and vocab.json (+ target_vocab.json) as Marian's: </s> 0,
  <unk> 1, pieces, <pad> the last id of the smaller vocabulary (the model's pad)."""
  os.makedirs(path)
  src = train_spm(os.path.join(path, 'source'), [s for s, _ in CORPUS], 40)
  tgt = train_spm(os.path.join(path, 'target'), [t for _, t in CORPUS], 40)

  def pieces(sp):
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i))]

  pad = min(vocab, decoder_vocab) - 1

  def table(words, size):
    """Ids 0..size-1; pieces that do not fit are left out, unused ids are placeholders."""
    out = {'</s>': 0, '<unk>': 1}
    words = iter(words)
    while len(out) < size:
      if len(out) == pad:
        out['<pad>'] = pad
        continue
      w = next(words, None)
      w = f'<unused{len(out)}>' if w is None else w
      out.setdefault(w, len(out))
    return out

  if shared:
    both = pieces(src) + [p for p in pieces(tgt) if p not in pieces(src)]
    vocabs = {'vocab.json': table(both, vocab)}
  else:
    vocabs = {'vocab.json': table(pieces(src), vocab),
              'target_vocab.json': table(pieces(tgt), decoder_vocab)}
  for name, v in vocabs.items():
    assert sorted(v.values()) == list(range(len(v))), name
    with open(os.path.join(path, name), 'w') as f:
      json.dump(v, f, ensure_ascii=False)
  kw = {} if shared else dict(separate_vocabs=True,
                              target_vocab_file=os.path.join(path, 'target_vocab.json'))
  tok = transformers.MarianTokenizer(os.path.join(path, 'source.spm'),
                                     os.path.join(path, 'target.spm'),
                                     os.path.join(path, 'vocab.json'), **kw)
  assert tok.pad_token_id == pad and tok.eos_token_id == 0
  return tok


def bart_tokenizer(path):
  """A byte-level BPE of 300 tokens with BART's special tokens, saved as BartTokenizer saves
  one (tokenizer.json) plus its vocab.json and merges.txt."""
  from tokenizers import ByteLevelBPETokenizer  # pylint: disable=g-import-not-at-top
  bpe = ByteLevelBPETokenizer()
  bpe.train_from_iterator([s for p in CORPUS for s in p] * 4, vocab_size=300, min_frequency=1,
                          special_tokens=['<s>', '<pad>', '</s>', '<unk>', '<mask>'],
                          show_progress=False)
  os.makedirs(path)
  bpe.save_model(path)
  tok = transformers.BartTokenizer.from_pretrained(path)
  tok.save_pretrained(path)
  for extra in os.listdir(path):
    if extra not in ('vocab.json', 'merges.txt', 'tokenizer.json'):
      os.remove(os.path.join(path, extra))
  assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id) == (0, 1, 2)
  return tok


def t5_tokenizer(path, extra_ids):
  """spiece.model (a SentencePiece unigram model of 64 pieces on T5_PREFIX + the sources and
  on the targets: one vocabulary, <pad> 0, </s> 1, <unk> 2, as T5's) and the tokenizer.json
  transformers' T5Tokenizer makes of it, with `extra_ids` sentinels after the pieces."""
  os.makedirs(path)
  sp = train_spm(os.path.join(path, 'spiece'),
                 [T5_PREFIX + s for s, _ in CORPUS] + [t for _, t in CORPUS], 64, ext='.model',
                 pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
  tok = transformers.T5Tokenizer.from_pretrained(path, extra_ids=extra_ids)
  tok.save_pretrained(path)
  for extra in os.listdir(path):
    if extra not in ('spiece.model', 'tokenizer.json'):
      os.remove(os.path.join(path, extra))
  assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
  assert len(tok) == sp.get_piece_size() + extra_ids
  for text in [T5_PREFIX + t for t in TEXTS] + TARGETS:   # spiece.model alone gives the same
    assert tok(text).input_ids == sp.encode(text) + [1], text
  return tok


def fit(model, tok, tag, prefix=''):
  """The random model trained FIT_STEPS steps (Adam) on CORPUS (`prefix` before every
  source), so that it writes something like the French of a sentence it has seen rather than
  one token over and over."""
  enc = tok([prefix + s for s, _ in CORPUS], text_target=[t for _, t in CORPUS], padding=True,
            return_tensors='pt')
  labels = enc['labels'].masked_fill(enc['labels'] == model.config.pad_token_id, -100)
  opt = torch.optim.Adam(model.parameters(), lr=1e-2)
  model.train()
  for _ in range(FIT_STEPS):
    opt.zero_grad()
    loss = model(input_ids=enc['input_ids'], attention_mask=enc['attention_mask'],
                 labels=labels).loss
    loss.backward()
    opt.step()
  model.eval()
  print(tag, f'loss after {FIT_STEPS} steps: {loss.item():.3f}', file=sys.stderr)


def save_for_text(model, path, tok, out, tag):
  """A checkpoint whose outputs follow its input (fit), saved beside its tokenizer, then its
  references."""
  fit(model, tok, path[-12:])
  os.makedirs(path, exist_ok=True)
  model.save_pretrained(path, safe_serialization=True)   # generation_config.json kept
  save_text_case(out, tag, model, tok)


def save_text_case(out, tag, model, tok, prefix=''):
  """text_{tag}.json: TEXTS tokenized (`prefix` before each, then saved as source_prefix),
  TARGETS as labels, greedy outputs and their text."""
  pad = model.config.pad_token_id
  enc = tok([prefix + t for t in TEXTS], padding=True, return_tensors='pt')
  with torch.no_grad():
    greedy = model.generate(
        **enc, do_sample=False, num_beams=1, max_new_tokens=MAX_NEW, min_length=0,
        bad_words_ids=[[pad]], forced_eos_token_id=None,
        forced_bos_token_id=model.generation_config.forced_bos_token_id, no_repeat_ngram_size=0,
        repetition_penalty=1.0)
  greedy = greedy[:, 1:].numpy()        # without the start token
  ref = {'texts': TEXTS, 'targets': TARGETS,
         'input_ids': [tok(prefix + t).input_ids for t in TEXTS],
         'labels': [tok(text_target=t).input_ids for t in TARGETS],
         'greedy': [[int(i) for i in row if i != pad] for row in greedy],
         'decoded': tok.batch_decode(greedy, skip_special_tokens=True)}
  if prefix:
    ref['source_prefix'] = prefix
  with open(os.path.join(out, f'text_{tag}.json'), 'w') as f:
    json.dump(ref, f, ensure_ascii=False, indent=1)
  print(out[-6:], tag, 'decoded', ref['decoded'], file=sys.stderr)


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
  # d: a T5 v1.1 (gated-gelu, untied, 1+1 layers) with its tokenizer for the tasks, trained
  # on CORPUS with T5_PREFIX (after the cases above: their random draws stay as they were).
  path = os.path.join(out, 'hf_d')
  tok = t5_tokenizer(path, extra_ids=4)
  model, _ = make_t5(6, model_type='t5', vocab=len(tok) + 4, d=16, d_kv=8, heads=2, enc=1,
                     dec=1, ff=32, proj='gated-gelu', tied=False, buckets=8, distance=16)
  fit(model, tok, 't5 d', T5_PREFIX)
  model.save_pretrained(path, safe_serialization=True)   # generation_config.json kept
  save_text_case(out, 'd', t5_as_on_the_hub(path, type(model), False), tok, T5_PREFIX)
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
  # Checkpoints with tokenizers for the tasks (after the cases above: their random draws
  # stay as they were).
  for tag, seed, (vocab, dvocab, shared) in (('c', 4, (64, 64, True)), ('d', 5, (40, 48, False))):
    model, _ = make_model(seed, vocab=vocab, decoder_vocab=dvocab, d=16, enc=1, dec=1,
                          heads=2, activation='swish', scale=True, shared=shared)
    path = os.path.join(out, f'hf_{tag}')
    save_for_text(model, path, marian_tokenizer(path, vocab, dvocab, shared), out, tag)
  bart_out = os.path.join(FIXTURES, 'bart')
  path = os.path.join(bart_out, 'hf_b')
  tok = bart_tokenizer(path)
  model_d, _ = make_bart(3, vocab=len(tok), layers=1, forced_bos=0, positions=64)
  save_for_text(model_d, path, tok, bart_out, 'b')

  for family in ('marian', 'bart'):
    write_versions(os.path.join(FIXTURES, family))


if __name__ == '__main__':
  # With arguments, only those families: marian_bart, t5 (default: all).
  chosen = sys.argv[1:] or ['marian_bart', 't5']
  if 'marian_bart' in chosen:
    main()
  if 't5' in chosen:
    main_t5()
