"""Marian (Junczys-Dowmunt et al. 2018; the OPUS-MT models, Tiedemann and Thottingal 2020)
from the Hugging Face layout (config.json + model.safetensors of MarianMTModel), as a preset of
the Transformer's registered parts.

The preset (`model_config(hf_config)`) is `model.name='transformer'` with:
  positions  fixed sinusoids on both sides in Marian's layout: sines then cosines at
             10000^(-2i/d) (blocks.POSITIONS 'sinusoidal' with endpoint=False), from position 0
  blocks     post-LayerNorm (`pre_norm=False`: no final LayerNorms), epsilon 1e-5, the MLP of
             config.json's activation_function ('swish' -> SiLU in OPUS-MT, 'gelu', 'relu')
  tokens     embeddings times sqrt(d_model) if config.json's scale_embedding (OPUS-MT: yes);
             one vocabulary for both sides (`share_embeddings`) unless
             share_encoder_decoder_embeddings is false (then decoder_vocab_size targets)
  output     tied to the target embedding (tie_word_embeddings; an untied lm_head becomes our
             own projection), plus Marian's final_logits_bias (`logits_bias='learned'`)

Ids. Marian's </s> is id 0 and its <pad> (also the decoder's start token) is pad_token_id,
usually the last id; this codebase reserves id 0 for padding, so the loader swaps rows 0 and
pad_token_id of every table indexed by token (embeddings, the logits bias, an untied
projection; hf_text.py): our id 0 is Marian's <pad>, our pad_token_id Marian's </s>.
`to_ours` / `from_ours` map id arrays; `special_ids` gives ours. `generate` takes and returns
Marian's ids and never emits <pad>, as OPUS-MT's generation config says (bad_words_ids).

`load_hf(dir)` gives (model config, params, config.json) for `build_model(config, src_vocab,
tgt_vocab)` (`vocab_sizes(config.json)`) and `model.apply({'params': params}, ...)`.
"""
from typing import Any

import numpy as np

from seq2seq_jax.errors import UserError
from seq2seq_jax.pretrained import hf_text

def vocab_sizes(cfg: dict[str, Any]) -> tuple[int, int]:
  """(source, target) vocabulary sizes of a Marian config.json."""
  src = int(cfg['vocab_size'])
  shared = cfg.get('share_encoder_decoder_embeddings', True)
  return src, (src if shared else int(cfg.get('decoder_vocab_size') or src))


def model_config(cfg: dict[str, Any]) -> dict[str, Any]:
  """The Transformer config of a Marian config.json (see the module docstring)."""
  config = hf_text.block_config(cfg, 'Marian')
  if config['emb_dim'] % 2:
    raise UserError(f'Marian d_model {config["emb_dim"]} is odd; its sinusoids are laid out '
                    'for even widths')
  return dict(config, positions=dict(name='sinusoidal', endpoint=False), target_positions='',
              max_len=int(cfg.get('max_position_embeddings', 512)),
              share_embeddings=bool(cfg.get('share_encoder_decoder_embeddings', True)))


to_ours = hf_text.to_ours
from_ours = hf_text.from_ours


def special_ids(cfg: dict[str, Any]) -> dict[str, int]:
  """Our ids of padding (0), the decoder's start token and </s>."""
  pad = int(cfg['pad_token_id'])
  start = int(cfg.get('decoder_start_token_id', pad))
  eos = int(cfg.get('eos_token_id', 0))
  return {'pad': 0, 'bos': int(to_ours(np.int64(start), pad)),
          'eos': int(to_ours(np.int64(eos), pad))}


def hf_to_params(t: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, Any]:
  """Hugging Face MarianMTModel tensors -> our parameter tree (rows 0 and pad swapped)."""
  get = hf_text.getter(t, 'Marian')
  d, pad = int(cfg['d_model']), int(cfg['pad_token_id'])
  src_vocab, tgt_vocab = vocab_sizes(cfg)
  params: dict[str, Any] = {}
  if cfg.get('share_encoder_decoder_embeddings', True):
    params['src_embed'] = {'embedding': hf_text.embedding(
        get, src_vocab, d, pad, 'model.shared.weight', 'model.encoder.embed_tokens.weight')}
    tgt = params['src_embed']['embedding']
  else:
    params['src_embed'] = {'embedding': hf_text.embedding(
        get, src_vocab, d, pad, 'model.encoder.embed_tokens.weight')}
    params['tgt_embed'] = {'embedding': hf_text.embedding(
        get, tgt_vocab, d, pad, 'model.decoder.embed_tokens.weight')}
    tgt = params['tgt_embed']['embedding']
  params.update(hf_text.output_params(get, t, bool(cfg.get('tie_word_embeddings', True)), tgt,
                                      pad))
  params.update(hf_text.layer_params(get, d, int(cfg['encoder_attention_heads']),
                                     int(cfg['encoder_layers']), int(cfg['decoder_layers'])))
  return params


def check_positions(t: dict[str, np.ndarray], config: dict[str, Any]) -> None:
  """A checkpoint that stores its sinusoids (older exports do) must hold the ones we compute."""
  from seq2seq_jax.models.transformer.blocks import POSITIONS  # pylint: disable=g-import-not-at-top
  for side in ('encoder', 'decoder'):
    for key in (f'model.{side}.embed_positions.weight', f'{side}.embed_positions.weight'):
      if key in t:
        table = np.asarray(t[key], np.float32)
        ours = np.asarray(POSITIONS.build(config['positions'])(
            np.arange(table.shape[0]), table.shape[1]))
        diff = float(np.max(np.abs(ours - table)))
        if diff > 1e-4:
          raise UserError(f'{key} differs from Marian\'s sinusoids by {diff:.3g}')


def load_hf(directory: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """(model config, params, config.json) of a Hugging Face Marian directory
  (config.json + model.safetensors, as save_pretrained and the hub write them)."""
  cfg = hf_text.read_config(directory, 'marian')
  config = model_config(cfg)
  tensors = hf_text.read_safetensors(directory)
  check_positions(tensors, config)
  return config, hf_to_params(tensors, cfg), cfg


def generate(model: Any, params: Any, cfg: dict[str, Any], inputs: np.ndarray, max_new: int,
             beam_size: int = 1, alpha: float = 0.0) -> np.ndarray:
  """Marian's output ids [B, max_new] for source ids [B, S] in Marian's own ids (padded with
  pad_token_id): hf_text.generate, greedy for beam_size 1, else beam search."""
  pad = int(cfg['pad_token_id'])
  return hf_text.generate(model, params, inputs, max_new, pad=pad,
                          start=int(cfg.get('decoder_start_token_id', pad)),
                          eos=int(cfg.get('eos_token_id', 0)), beam_size=beam_size, alpha=alpha)
