"""BART (Lewis et al. 2020) from the Hugging Face layout (config.json + model.safetensors of
BartForConditionalGeneration), as a preset of the Transformer's registered parts.

The preset (`model_config(hf_config)`) is `model.name='transformer'` with:
  positions  learned on each side (`positions='learned'`, max_len = max_position_embeddings):
             Hugging Face's tables have 2 more rows, read at position + 2 (the offset fairseq's
             padding_idx left), so ours are their rows 2 onwards
  embedding  token embedding (times sqrt(d_model) if scale_embedding; BART: no) plus the
             position, then a LayerNorm per side (`embed_norm`: layernorm_embedding)
  blocks     post-LayerNorm (no final LayerNorms), epsilon 1e-5, exact-GELU MLP
  tokens     one vocabulary for both sides (`share_embeddings`), the output tied to it plus
             BART's final_logits_bias (`logits_bias='learned'`)

mBART (pre-LN, final LayerNorms) is not this preset: its config.json asks for
normalize_before, which model_config refuses.

Ids: BART's <s> is 0, <pad> 1, </s> 2, and the decoder starts from </s>. The loader swaps rows
0 and pad_token_id as for Marian (hf_text.py: our 0 is BART's <pad>, our 1 its <s>);
`generate` starts the searches from an id beyond the vocabulary read as </s>, since they never
emit their start id and BART ends with the same token. It never emits <pad>.
"""
from typing import Any

import numpy as np

from seq2seq_jax.errors import UserError
from seq2seq_jax.pretrained import hf_text

OFFSET = 2   # BartLearnedPositionalEmbedding reads row position + 2

to_ours = hf_text.to_ours
from_ours = hf_text.from_ours


def model_config(cfg: dict[str, Any]) -> dict[str, Any]:
  """The Transformer config of a BART config.json (see the module docstring)."""
  config = hf_text.block_config(cfg, 'BART')
  return dict(config, positions='learned', target_positions='',
              max_len=int(hf_text.need(cfg, 'max_position_embeddings', 'BART')),
              share_embeddings=True, embed_norm=dict(name='layer_norm', epsilon=1e-5))


def hf_to_params(t: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, Any]:
  """Hugging Face BartForConditionalGeneration tensors -> our parameter tree."""
  get = hf_text.getter(t, 'BART')
  d, pad, vocab = int(cfg['d_model']), int(cfg['pad_token_id']), int(cfg['vocab_size'])
  max_len = int(cfg['max_position_embeddings'])
  embed = hf_text.embedding(get, vocab, d, pad, 'model.shared.weight',
                            'model.encoder.embed_tokens.weight')
  params: dict[str, Any] = {'src_embed': {'embedding': embed}}
  for side, ours in (('encoder', 'src'), ('decoder', 'tgt')):
    table = get(f'model.{side}.embed_positions.weight')
    if table.shape != (max_len + OFFSET, d):
      raise UserError(f'model.{side}.embed_positions.weight has shape {table.shape}, '
                      f'config.json says ({max_len} + {OFFSET}, {d})')
    params[f'{ours}_pos'] = table[OFFSET:]
    params[f'{ours}_embed_norm'] = {'scale': get(f'model.{side}.layernorm_embedding.weight'),
                                    'bias': get(f'model.{side}.layernorm_embedding.bias')}
  params.update(hf_text.output_params(get, t, bool(cfg.get('tie_word_embeddings', True)),
                                      embed, pad))
  params.update(hf_text.layer_params(get, d, int(cfg['encoder_attention_heads']),
                                     int(cfg['encoder_layers']), int(cfg['decoder_layers'])))
  return params


def load_hf(directory: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """(model config, params, config.json) of a Hugging Face BART directory (config.json +
  model.safetensors); build with build_model(config, vocab_size, vocab_size)."""
  cfg = hf_text.read_config(directory, 'bart')
  config = model_config(cfg)
  return config, hf_to_params(hf_text.read_safetensors(directory), cfg), cfg


def generate(model: Any, params: Any, cfg: dict[str, Any], inputs: np.ndarray, max_new: int,
             beam_size: int = 1, alpha: float = 0.0) -> np.ndarray:
  """BART's output ids [B, max_new] for source ids [B, S] in BART's own ids (padded with
  pad_token_id): hf_text.generate from decoder_start_token_id, greedy for beam_size 1, else
  beam search. (No forced <s> first: bart-large's forced_bos_token_id is not applied.)"""
  eos = int(cfg.get('eos_token_id', 2))
  return hf_text.generate(model, params, inputs, max_new, pad=int(cfg['pad_token_id']),
                          start=int(cfg.get('decoder_start_token_id', eos)), eos=eos,
                          beam_size=beam_size, alpha=alpha)
