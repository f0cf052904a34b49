"""What the Hugging Face text encoder-decoders of the BART lineage (Marian, BART) share when
read into our Transformer: reading config.json and model.safetensors (the `safetensors`
package's numpy interface, no PyTorch), the exchange of id 0 with the pad id, the mapping of
their layer names (q/k/v/out_proj, fc1/fc2, self_attn_layer_norm, encoder_attn,
final_layer_norm) to ours, the output (tied or not, final_logits_bias), and generation with the
codebase's searches.

Ids: this codebase reserves id 0 for padding (the source mask is ids > 0, the searches never
emit 0); these families put another token at 0 (Marian </s>, BART <s>) and padding at
pad_token_id. The loaders swap rows 0 and pad_token_id of every table indexed by token, so
our id 0 is their <pad> and our pad_token_id their id 0; `to_ours` / `from_ours` map id arrays
(the swap is its own inverse).
"""
import json
import os
from typing import Any, Callable

import numpy as np

from seq2seq_jax.errors import UserError


ACTIVATIONS = {'swish': 'swish', 'silu': 'swish', 'gelu': 'gelu', 'relu': 'relu'}


def read_json(path: str) -> dict[str, Any]:
  """A config.json as a dict; UserError if missing or not JSON."""
  if not os.path.isfile(path):
    raise UserError(f'no {os.path.basename(path)} in {os.path.dirname(path) or "."!r}')
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise UserError(f'{path} is not JSON: {e}') from None


def read_config(directory: str, model_type: str) -> dict[str, Any]:
  """config.json of `directory`, which must be a `model_type` model with a pad_token_id."""
  cfg = read_json(os.path.join(directory, 'config.json'))
  if cfg.get('model_type') != model_type:
    raise UserError(f'{directory}/config.json is a {cfg.get("model_type")!r} model, not '
                    f'{model_type!r}')
  if cfg.get('pad_token_id') is None:
    raise UserError(f'{directory}/config.json has no pad_token_id')
  return cfg


def read_safetensors(directory: str) -> dict[str, np.ndarray]:
  """The tensors of `directory`/model.safetensors as numpy arrays."""
  path = os.path.join(directory, 'model.safetensors')
  if not os.path.isfile(path):
    raise UserError(f'no model.safetensors in {directory!r}')
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    return load_file(path)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{path} is not a safetensors file: {e}') from None


def need(cfg: dict[str, Any], key: str, family: str) -> Any:
  if key not in cfg:
    raise UserError(f'config.json has no {key!r} (not a {family} config)')
  return cfg[key]


def block_config(cfg: dict[str, Any], family: str) -> dict[str, Any]:
  """The Transformer settings a config.json of the BART lineage gives for the blocks: widths,
  heads, layers, the MLP of activation_function, post-LN (LayerNorm epsilon 1e-5), no dropout,
  the learned logits bias."""
  width = int(need(cfg, 'd_model', family))
  heads = int(need(cfg, 'encoder_attention_heads', family))
  if int(cfg.get('decoder_attention_heads', heads)) != heads:
    raise UserError(f'{family} encoder and decoder head counts differ; this preset has one')
  mlp_dim = int(need(cfg, 'encoder_ffn_dim', family))
  if int(cfg.get('decoder_ffn_dim', mlp_dim)) != mlp_dim:
    raise UserError(f'{family} encoder and decoder ffn widths differ; this preset has one')
  act = cfg.get('activation_function', 'gelu')
  if act not in ACTIVATIONS:
    raise UserError(f'{family} activation_function {act!r} is not one of '
                    f'{", ".join(ACTIVATIONS)}')
  if cfg.get('normalize_before') or cfg.get('add_final_layer_norm'):
    raise UserError(f'this {family} config asks for pre-LayerNorm; the preset is post-LN')
  return dict(
      name='transformer', emb_dim=width, num_heads=heads, mlp_dim=mlp_dim,
      num_encoder_layers=int(need(cfg, 'encoder_layers', family)),
      num_decoder_layers=int(need(cfg, 'decoder_layers', family)), dropout_rate=0.0,
      attention_dropout_rate=0.0, pre_norm=False,
      scale_embeddings=bool(cfg.get('scale_embedding', False)),
      tie_output=bool(cfg.get('tie_word_embeddings', True)),
      norm=dict(name='layer_norm', epsilon=1e-5), mlp=dict(name=ACTIVATIONS[act]),
      logits_bias=dict(name='learned'))


def swap(table: np.ndarray, pad: int, axis: int = 0) -> np.ndarray:
  """Rows 0 and pad of a table indexed by token, exchanged (module docstring: Ids)."""
  order = np.arange(table.shape[axis])
  order[0], order[pad] = pad, 0
  return np.take(table, order, axis=axis)


def to_ours(ids: np.ndarray, pad: int) -> np.ndarray:
  """The checkpoint's ids -> ours (id 0 and pad exchanged)."""
  ids = np.asarray(ids)
  return np.where(ids == 0, pad, np.where(ids == pad, 0, ids)).astype(ids.dtype)


def from_ours(ids: np.ndarray, pad: int) -> np.ndarray:
  """Our ids -> the checkpoint's (the same exchange)."""
  return to_ours(ids, pad)


def getter(t: dict[str, np.ndarray], family: str) -> Callable[..., np.ndarray]:
  """get(name, *fallbacks): the first tensor found as float32 (a name also without its
  leading 'model.'), else a UserError naming the first."""
  def get(*names):
    for name in names:
      for key in (name, name.replace('model.', '', 1)):
        if key in t:
          return np.asarray(t[key], np.float32)
    raise UserError(f'the {family} checkpoint has no tensor {names[0]!r}')
  return get


def layer_params(get: Callable[..., np.ndarray], d: int, heads: int, encoder_layers: int,
                 decoder_layers: int) -> dict[str, Any]:
  """The encoder and decoder layers (BART's names: model.{side}.layers.{i}.self_attn.q_proj,
  ..., fc1, fc2, self_attn_layer_norm, encoder_attn(_layer_norm), final_layer_norm) ->
  our encoder_layers_i / decoder_layers_i (q, k, v fused as our projections hold them)."""
  hd = d // heads

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

  params = {}
  for side, n in (('encoder', encoder_layers), ('decoder', decoder_layers)):
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


def embedding(get: Callable[..., np.ndarray], rows: int, d: int, pad: int, *names: str
              ) -> np.ndarray:
  """A token table [rows, d] (the first of `names` found), rows 0 and pad swapped."""
  e = get(*names)
  if e.shape != (rows, d):
    raise UserError(f'{names[0]} has shape {e.shape}, config.json says ({rows}, {d})')
  return swap(e, pad)


def output_params(get: Callable[..., np.ndarray], t: dict[str, np.ndarray], tied: bool,
                  target_embedding: np.ndarray, pad: int) -> dict[str, Any]:
  """final_logits_bias -> 'output_bias' (model.logits_bias='learned'); an untied lm_head ->
  'logits_dense' (its bias zeros: final_logits_bias is the bias)."""
  vocab = target_embedding.shape[0]
  bias = get('final_logits_bias').reshape(-1)
  if bias.shape != (vocab,):
    raise UserError(f'final_logits_bias has {bias.shape[0]} entries, the target vocabulary '
                    f'{vocab}')
  params: dict[str, Any] = {'output_bias': {'bias': swap(bias, pad)}}
  if not tied:
    w = swap(get('lm_head.weight'), pad)
    params['logits_dense'] = {'kernel': w.T, 'bias': np.zeros(vocab, np.float32)}
  elif 'lm_head.weight' in t and not np.array_equal(swap(get('lm_head.weight'), pad),
                                                    target_embedding):
    raise UserError('the checkpoint\'s lm_head differs from its target embedding although '
                    'config.json says tie_word_embeddings')
  return params


def generate(model: Any, params: Any, inputs: np.ndarray, max_new: int, *, pad: int,
             start: int, eos: int, beam_size: int = 1, alpha: float = 0.0) -> np.ndarray:
  """Output ids [B, max_new] for source ids [B, S], both in the checkpoint's own ids (the
  source padded with pad), by the codebase's searches over the model's cache: greedy_search
  for beam_size 1, else beam_search (alpha: its length-penalty exponent; 0 ranks by summed
  log-probability, as transformers' length_penalty=0). `eos` ends a row and pad fills the
  rest, as transformers' generate pads (its start token left out); pad is never generated.

  The searches never generate their bos_id, while BART's start token is its </s>: the search
  starts from an id beyond the vocabulary, which the model reads as `start`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.decoding import search  # pylint: disable=g-import-not-at-top
  src = jnp.asarray(to_ours(np.asarray(inputs), pad), jnp.int32)
  b, vocab = src.shape[0], model.tgt_vocab_size
  ours_start, ours_eos = int(to_ours(np.int64(start), pad)), int(to_ours(np.int64(eos), pad))

  def run(params, src):
    cache = model.apply({'params': params}, src, max_new, beam_size, method='init_cache')

    def fn(tokens, c):
      tokens = jnp.where(tokens == vocab, ours_start, tokens)
      return model.apply({'params': params}, tokens, c, method='decode_step')

    if beam_size == 1:
      return search.greedy_search(fn, cache, batch_size=b, max_len=max_new, bos_id=vocab,
                                  eos_id=ours_eos)[0]
    return search.beam_search(fn, cache, batch_size=b, beam_size=beam_size, max_len=max_new,
                              bos_id=vocab, eos_id=ours_eos, alpha=alpha)[0][:, 0]

  return from_ours(np.asarray(jax.jit(run)(params, src)), pad)
