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
usually the last id; this codebase reserves id 0 for padding (the source mask is ids > 0 and
the searches never emit 0). The loader therefore swaps rows 0 and pad_token_id of every
table indexed by token (embeddings, the logits bias, an untied projection): our id 0 is
Marian's <pad>, our id pad_token_id is Marian's </s>, every other id is unchanged. `to_ours`
and `from_ours` map id arrays (the swap is its own inverse); `special_ids` gives the ids the
searches take (bos = the start token = 0, eos). Generating never emits Marian's <pad> (our 0),
as OPUS-MT's generation config says (bad_words_ids).

`load_hf(dir)` gives (model config, params, config.json) for `build_model(config, src_vocab,
tgt_vocab)` (`vocab_sizes(config.json)`) and `model.apply({'params': params}, ...)`.
"""
import json
import os
from typing import Any

import numpy as np

from seq2seq_jax.errors import UserError

ACTIVATIONS = {'swish': 'swish', 'silu': 'swish', 'gelu': 'gelu', 'relu': 'relu'}


def vocab_sizes(cfg: dict[str, Any]) -> tuple[int, int]:
  """(source, target) vocabulary sizes of a Marian config.json."""
  src = int(cfg['vocab_size'])
  shared = cfg.get('share_encoder_decoder_embeddings', True)
  return src, (src if shared else int(cfg.get('decoder_vocab_size') or src))


def model_config(cfg: dict[str, Any]) -> dict[str, Any]:
  """The Transformer config of a Marian config.json (see the module docstring)."""
  def need(key):
    if key not in cfg:
      raise UserError(f'config.json has no {key!r} (not a Marian config)')
    return cfg[key]

  width = int(need('d_model'))
  heads = int(need('encoder_attention_heads'))
  if int(cfg.get('decoder_attention_heads', heads)) != heads:
    raise UserError('Marian encoder and decoder head counts differ; this preset has one')
  mlp_dim = int(need('encoder_ffn_dim'))
  if int(cfg.get('decoder_ffn_dim', mlp_dim)) != mlp_dim:
    raise UserError('Marian encoder and decoder ffn widths differ; this preset has one')
  act = cfg.get('activation_function', 'gelu')
  if act not in ACTIVATIONS:
    raise UserError(f'Marian activation_function {act!r} is not one of {", ".join(ACTIVATIONS)}')
  if width % 2:
    raise UserError(f'Marian d_model {width} is odd; its sinusoids are laid out for even widths')
  if cfg.get('normalize_before') or cfg.get('add_final_layer_norm'):
    raise UserError('this Marian config asks for pre-LayerNorm; the preset is post-LN')
  return dict(
      name='transformer', emb_dim=width, num_heads=heads, mlp_dim=mlp_dim,
      num_encoder_layers=int(need('encoder_layers')),
      num_decoder_layers=int(need('decoder_layers')), dropout_rate=0.0,
      attention_dropout_rate=0.0,
      positions=dict(name='sinusoidal', endpoint=False), target_positions='',
      max_len=int(cfg.get('max_position_embeddings', 512)), pre_norm=False,
      scale_embeddings=bool(cfg.get('scale_embedding', False)),
      share_embeddings=bool(cfg.get('share_encoder_decoder_embeddings', True)),
      tie_output=bool(cfg.get('tie_word_embeddings', True)),
      norm=dict(name='layer_norm', epsilon=1e-5), mlp=dict(name=ACTIVATIONS[act]),
      logits_bias=dict(name='learned'))


def _swap(table: np.ndarray, pad: int, axis: int = 0) -> np.ndarray:
  """Rows 0 and pad of a table indexed by token, exchanged (module docstring: Ids)."""
  order = np.arange(table.shape[axis])
  order[0], order[pad] = pad, 0
  return np.take(table, order, axis=axis)


def to_ours(ids: np.ndarray, pad: int) -> np.ndarray:
  """Marian's ids -> ours (</s> and <pad> exchanged)."""
  ids = np.asarray(ids)
  return np.where(ids == 0, pad, np.where(ids == pad, 0, ids)).astype(ids.dtype)


def from_ours(ids: np.ndarray, pad: int) -> np.ndarray:
  """Our ids -> Marian's (the same exchange)."""
  return to_ours(ids, pad)


def special_ids(cfg: dict[str, Any]) -> dict[str, int]:
  """Our ids of padding (0), the decoder's start token and </s>, for the searches."""
  pad = int(cfg['pad_token_id'])
  start = int(cfg.get('decoder_start_token_id', pad))
  eos = int(cfg.get('eos_token_id', 0))
  return {'pad': 0, 'bos': int(to_ours(np.int64(start), pad)),
          'eos': int(to_ours(np.int64(eos), pad))}


def hf_to_params(t: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, Any]:
  """Hugging Face MarianMTModel tensors -> our parameter tree (rows 0 and pad swapped)."""
  def get(*names):
    for name in names:
      for key in (name, name.replace('model.', '', 1)):
        if key in t:
          return np.asarray(t[key], np.float32)
    raise UserError(f'the Marian checkpoint has no tensor {names[0]!r}')

  d, heads = int(cfg['d_model']), int(cfg['encoder_attention_heads'])
  hd, pad = d // heads, int(cfg['pad_token_id'])
  src_vocab, tgt_vocab = vocab_sizes(cfg)
  shared = bool(cfg.get('share_encoder_decoder_embeddings', True))

  def lin(prefix, names, out_shape):
    w = np.concatenate([get(f'{prefix}.{n}.weight') for n in names])      # [out, in]
    b = np.concatenate([get(f'{prefix}.{n}.bias') for n in names])
    return {'kernel': w.T.reshape((w.shape[1],) + out_shape), 'bias': b.reshape(out_shape)}

  def out_proj(prefix):
    return {'kernel': get(prefix + '.weight').T.reshape(heads, hd, d),
            'bias': get(prefix + '.bias')}

  def norm(prefix):
    return {'scale': get(prefix + '.weight'), 'bias': get(prefix + '.bias')}

  def mlp(prefix):
    return {'wi': lin(prefix, ('fc1',), (get(prefix + '.fc1.weight').shape[0],)),
            'wo': lin(prefix, ('fc2',), (d,))}

  def table(name, rows, *fallbacks):
    e = get(name, *fallbacks)
    if e.shape != (rows, d):
      raise UserError(f'{name} has shape {e.shape}, config.json says ({rows}, {d})')
    return _swap(e, pad)

  params: dict[str, Any] = {}
  if shared:
    params['src_embed'] = {'embedding': table('model.shared.weight', src_vocab,
                                              'model.encoder.embed_tokens.weight')}
    tgt = params['src_embed']['embedding']
  else:
    params['src_embed'] = {'embedding': table('model.encoder.embed_tokens.weight', src_vocab)}
    params['tgt_embed'] = {'embedding': table('model.decoder.embed_tokens.weight', tgt_vocab)}
    tgt = params['tgt_embed']['embedding']
  bias = get('final_logits_bias').reshape(-1)
  if bias.shape != (tgt_vocab,):
    raise UserError(f'final_logits_bias has {bias.shape[0]} entries, the target vocabulary '
                    f'{tgt_vocab}')
  params['output_bias'] = {'bias': _swap(bias, pad)}
  if not cfg.get('tie_word_embeddings', True):
    w = _swap(get('lm_head.weight'), pad)
    params['logits_dense'] = {'kernel': w.T, 'bias': np.zeros(tgt_vocab, np.float32)}
  elif 'lm_head.weight' in t and not np.array_equal(_swap(get('lm_head.weight'), pad), tgt):
    raise UserError('the checkpoint\'s lm_head differs from its target embedding although '
                    'config.json says tie_word_embeddings')
  for side, n in (('encoder', int(cfg['encoder_layers'])),
                  ('decoder', int(cfg['decoder_layers']))):
    for i in range(n):
      p = f'model.{side}.layers.{i}'
      self_attn = {'qkv': lin(p + '.self_attn', ('q_proj', 'k_proj', 'v_proj'), (3, heads, hd)),
                   'out': out_proj(p + '.self_attn.out_proj')}
      if side == 'encoder':
        params[f'encoder_layers_{i}'] = {
            'attn': self_attn, 'ln_attn': norm(p + '.self_attn_layer_norm'),
            'mlp': mlp(p), 'ln_mlp': norm(p + '.final_layer_norm')}
      else:
        params[f'decoder_layers_{i}'] = {
            'self_attn': self_attn, 'ln_self': norm(p + '.self_attn_layer_norm'),
            'cross_attn': {'q': lin(p + '.encoder_attn', ('q_proj',), (heads, hd)),
                           'kv': lin(p + '.encoder_attn', ('k_proj', 'v_proj'), (2, heads, hd)),
                           'out': out_proj(p + '.encoder_attn.out_proj')},
            'ln_cross': norm(p + '.encoder_attn_layer_norm'),
            'mlp': mlp(p), 'ln_mlp': norm(p + '.final_layer_norm')}
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


def read_json(path: str) -> dict[str, Any]:
  if not os.path.isfile(path):
    raise UserError(f'no {os.path.basename(path)} in {os.path.dirname(path) or "."!r}')
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise UserError(f'{path} is not JSON: {e}') from None


def read_safetensors(directory: str) -> dict[str, np.ndarray]:
  path = os.path.join(directory, 'model.safetensors')
  if not os.path.isfile(path):
    raise UserError(f'no model.safetensors in {directory!r}')
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    return load_file(path)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{path} is not a safetensors file: {e}') from None


def load_hf(directory: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """(model config, params, config.json) of a Hugging Face Marian directory
  (config.json + model.safetensors, as save_pretrained and the hub write them)."""
  cfg = read_json(os.path.join(directory, 'config.json'))
  if cfg.get('model_type') != 'marian':
    raise UserError(f'{directory}/config.json is a {cfg.get("model_type")!r} model, not '
                    "'marian'")
  config = model_config(cfg)
  if 'pad_token_id' not in cfg:
    raise UserError(f'{directory}/config.json has no pad_token_id')
  tensors = read_safetensors(directory)
  check_positions(tensors, config)
  return config, hf_to_params(tensors, cfg), cfg


def generate(model: Any, params: Any, cfg: dict[str, Any], inputs: np.ndarray, max_new: int,
             beam_size: int = 1, alpha: float = 0.0) -> np.ndarray:
  """Marian's output ids [B, max_new] for source ids [B, S] in Marian's own ids (padded with
  pad_token_id), by the codebase's searches over the model's cache: greedy_search for
  beam_size 1, else beam_search (alpha: its length-penalty exponent; 0 ranks by summed
  log-probability, as transformers' length_penalty=0). </s> ends a row; pad_token_id fills
  the rest, as transformers' generate pads (its start token left out)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.decoding import search  # pylint: disable=g-import-not-at-top
  pad, ids = int(cfg['pad_token_id']), special_ids(cfg)
  src = jnp.asarray(to_ours(np.asarray(inputs), pad), jnp.int32)
  b = src.shape[0]

  def run(params, src):
    cache = model.apply({'params': params}, src, max_new, beam_size, method='init_cache')
    fn = lambda t, c: model.apply({'params': params}, t, c, method='decode_step')
    if beam_size == 1:
      return search.greedy_search(fn, cache, batch_size=b, max_len=max_new, bos_id=ids['bos'],
                                  eos_id=ids['eos'])[0]
    return search.beam_search(fn, cache, batch_size=b, beam_size=beam_size, max_len=max_new,
                              bos_id=ids['bos'], eos_id=ids['eos'], alpha=alpha)[0][:, 0]

  out = np.asarray(jax.jit(run)(params, src))
  return from_ours(out, pad)
