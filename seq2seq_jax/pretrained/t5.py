"""T5 (Raffel et al. 2020), T5 v1.1 / Flan-T5 (Chung et al. 2022) and mT5 (Xue et al. 2021)
from the Hugging Face layout (config.json + model.safetensors of T5ForConditionalGeneration
or MT5ForConditionalGeneration), as a preset of the Transformer's registered parts.

The preset (`model_config(hf_config)`) is `model.name='transformer'` with:
  positions  relative position biases (`positions='relative'`, blocks.POSITIONS): T5's buckets
             (relative_attention_num_buckets, relative_attention_max_distance), bidirectional
             in the encoder, causal in the decoder, one table per stack in its first layer,
             shared by all its layers; no position encodings on the embeddings
  blocks     pre-norm with a final norm per stack (`pre_norm=True`), RMS norms without bias
             (`norm=dict(name='rms_norm', epsilon=layer_norm_epsilon)`); attention of
             num_heads heads of d_kv (`qkv_dim` = num_heads * d_kv, which may differ from
             d_model) with unscaled logits (`scale_attention=False`); no biases anywhere
             (`use_bias=False`); the MLP of feed_forward_proj: 'relu' (T5 v1.0), 'gated-gelu'
             (v1.1, Flan-T5, mT5: GEGLU with the tanh GELU, `mlp='gated_gelu'`),
             'gated-relu', 'gated-silu', 'gelu' (exact), 'silu'
  tokens     one vocabulary and embedding for both sides (`share_embeddings`), unscaled
             (`scale_embeddings=False`)
  output     tie_word_embeddings true (T5 v1.0): tied to the embedding, the decoder output
             first times d_model**-0.5 (`scale_output=True`); false (v1.1, Flan-T5, mT5): its
             own lm_head (`tie_output=False`), no rescaling

Refused with a UserError: other model types (UMT5's per-layer position biases, LongT5, ...),
an encoder-only config, another feed_forward_proj, a tied config whose lm_head differs from
its embedding, an odd relative_attention_num_buckets.

Ids: T5's <pad> is 0 (our padding too), </s> 1, <unk> 2, and the decoder starts from <pad>.
The ids are ours unchanged (hf_text's exchange of 0 and pad_token_id is the identity here);
`generate` starts the searches from an id beyond the vocabulary read as the start token (they
never emit their start id, nor 0) and returns T5's ids, padded with 0 after </s>. Our trainer's
BOS 1 and EOS 2 are T5's </s> and <unk>: the translation and summarization tasks map the ids
(model.pretrained, text_tokens.py: </s> and <unk> exchanged, the decoder reading <pad> at
position 0 through model.decoder_start).
"""
from typing import Any

import numpy as np

from seq2seq_jax.errors import UserError
from seq2seq_jax.pretrained import hf_text

FAMILY = 'T5'
MODEL_TYPES = ('t5', 'mt5')
# feed_forward_proj -> our MLP (blocks.MLPS). transformers reads 'gated-gelu' as GEGLU with
# 'gelu_new' (the tanh approximation); a plain 'gelu' is the exact one.
FEED_FORWARD = {'relu': 'relu', 'gelu': 'gelu', 'silu': 'swish', 'swish': 'swish',
                'gated-gelu': 'gated_gelu', 'gated-gelu_new': 'gated_gelu',
                'gated-relu': 'gated_relu', 'gated-silu': 'gated_silu',
                'gated-swish': 'gated_silu'}

to_ours = hf_text.to_ours
from_ours = hf_text.from_ours


def read_config(directory: str) -> dict[str, Any]:
  """config.json of a T5 or mT5 directory; UserError for another model type."""
  cfg = hf_text.read_json(f'{directory}/config.json')
  if cfg.get('model_type') not in MODEL_TYPES:
    raise UserError(f'{directory}/config.json is a {cfg.get("model_type")!r} model, not '
                    f'{" or ".join(map(repr, MODEL_TYPES))}')
  return cfg


def tied(cfg: dict[str, Any]) -> bool:
  """Whether the output is tied to the embedding (T5 v1.0) or an lm_head of its own."""
  return cfg.get('tie_word_embeddings', True) is not False


def model_config(cfg: dict[str, Any]) -> dict[str, Any]:
  """The Transformer config of a T5 / mT5 config.json (see the module docstring)."""
  need = lambda key: hf_text.need(cfg, key, FAMILY)
  if cfg.get('is_encoder_decoder', True) is False:
    raise UserError('this T5 config.json is encoder-only (is_encoder_decoder false); the '
                    'preset is the encoder-decoder')
  proj = str(cfg.get('feed_forward_proj', 'relu'))
  if proj not in FEED_FORWARD:
    raise UserError(f'T5 feed_forward_proj {proj!r} is not one of {", ".join(FEED_FORWARD)}')
  buckets = int(cfg.get('relative_attention_num_buckets', 32))
  if buckets < 4 or buckets % 2:
    raise UserError(f'T5 relative_attention_num_buckets {buckets} must be even and >= 4')
  heads = int(need('num_heads'))
  layers = int(need('num_layers'))
  return dict(
      name='transformer', emb_dim=int(need('d_model')), num_heads=heads,
      qkv_dim=heads * int(need('d_kv')), mlp_dim=int(need('d_ff')), num_encoder_layers=layers,
      num_decoder_layers=int(cfg.get('num_decoder_layers') or layers), dropout_rate=0.0,
      attention_dropout_rate=0.0,
      positions=dict(name='relative', num_buckets=buckets,
                     max_distance=int(cfg.get('relative_attention_max_distance', 128))),
      target_positions='', pre_norm=True,
      norm=dict(name='rms_norm', epsilon=float(cfg.get('layer_norm_epsilon', 1e-6))),
      mlp=dict(name=FEED_FORWARD[proj]), use_bias=False, scale_attention=False,
      scale_embeddings=False, share_embeddings=True, tie_output=tied(cfg),
      scale_output=tied(cfg))


def vocab_size(cfg: dict[str, Any]) -> int:
  return int(hf_text.need(cfg, 'vocab_size', FAMILY))


def special_ids(cfg: dict[str, Any]) -> dict[str, int]:
  """Our ids of padding, the decoder's start token and </s> (T5's: 0, 0, 1)."""
  pad = int(cfg.get('pad_token_id', 0))
  start = int(cfg.get('decoder_start_token_id', pad))
  eos = int(cfg.get('eos_token_id', 1))
  return {'pad': 0, 'bos': int(to_ours(np.int64(start), pad)),
          'eos': int(to_ours(np.int64(eos), pad))}


def _kernel(w: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
  """A torch Linear weight [out, in] -> our kernel [in, *out_shape]."""
  return w.T.reshape((w.shape[1],) + out_shape)


def hf_to_params(t: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, Any]:
  """Hugging Face T5 / mT5 tensors -> our parameter tree (rows 0 and pad_token_id swapped:
  the identity for T5, whose pad is 0)."""
  get = hf_text.getter(t, FAMILY)
  config = model_config(cfg)
  d, heads = config['emb_dim'], config['num_heads']
  hd = config['qkv_dim'] // heads
  pad = int(cfg.get('pad_token_id', 0))
  embed = hf_text.embedding(get, vocab_size(cfg), d, pad, 'shared.weight',
                            'encoder.embed_tokens.weight')
  params: dict[str, Any] = {'src_embed': {'embedding': embed}}
  if tied(cfg):
    if 'lm_head.weight' in t and not np.array_equal(hf_text.swap(get('lm_head.weight'), pad),
                                                    embed):
      raise UserError('the T5 checkpoint\'s lm_head differs from its embedding although '
                      'config.json says tie_word_embeddings (set it to false for v1.1 / mT5)')
  else:
    w = hf_text.swap(get('lm_head.weight'), pad)
    if w.shape != embed.shape:
      raise UserError(f'lm_head.weight has shape {w.shape}, the embedding {embed.shape}')
    params['logits_dense'] = {'kernel': w.T}

  def norm(name):
    return {'scale': get(name + '.weight')}

  def attention(prefix, fused_self):
    q, k, v, o = (get(f'{prefix}.{n}.weight') for n in 'qkvo')
    out = {'kernel': o.T.reshape(heads, hd, d)}
    if fused_self:
      return {'qkv': {'kernel': _kernel(np.concatenate([q, k, v]), (3, heads, hd))},
              'out': out}
    return {'q': {'kernel': _kernel(q, (heads, hd))},
            'kv': {'kernel': _kernel(np.concatenate([k, v]), (2, heads, hd))}, 'out': out}

  def mlp(prefix):
    if config['mlp']['name'].startswith('gated_'):
      names = ('wi_0', 'wi_1', 'wo')
    else:
      names = ('wi', 'wo')
    return {n: {'kernel': get(f'{prefix}.DenseReluDense.{n}.weight').T} for n in names}

  for side, ours, n in (('encoder', 'src', config['num_encoder_layers']),
                        ('decoder', 'tgt', config['num_decoder_layers'])):
    for i in range(n):
      p = f'{side}.block.{i}.layer'
      if side == 'encoder':
        params[f'encoder_layers_{i}'] = {
            'attn': attention(f'{p}.0.SelfAttention', True), 'ln_attn': norm(f'{p}.0.layer_norm'),
            'mlp': mlp(f'{p}.1'), 'ln_mlp': norm(f'{p}.1.layer_norm')}
      else:
        params[f'decoder_layers_{i}'] = {
            'self_attn': attention(f'{p}.0.SelfAttention', True),
            'ln_self': norm(f'{p}.0.layer_norm'),
            'cross_attn': attention(f'{p}.1.EncDecAttention', False),
            'ln_cross': norm(f'{p}.1.layer_norm'),
            'mlp': mlp(f'{p}.2'), 'ln_mlp': norm(f'{p}.2.layer_norm')}
    params[f'{side}_norm'] = norm(f'{side}.final_layer_norm')
    table = get(f'{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight')
    buckets = config['positions']['num_buckets']
    if table.shape != (buckets, heads):
      raise UserError(f'{side}.block.0...relative_attention_bias.weight has shape '
                      f'{table.shape}, config.json says ({buckets}, {heads})')
    params[f'{ours}_pos_bias'] = {'embedding': table}
  extra = [k for k in t if 'relative_attention_bias' in k and '.block.0.layer.0.' not in k]
  if extra:   # UMT5-style per-layer tables would be silently dropped
    raise UserError(f'the checkpoint has relative position biases beyond the first layer '
                    f'({extra[0]}); the T5 preset shares one per stack')
  return params


def load_hf(directory: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """(model config, params, config.json) of a Hugging Face T5 / mT5 directory (config.json +
  model.safetensors); build with build_model(config, vocab_size, vocab_size)."""
  cfg = read_config(directory)
  config = model_config(cfg)
  return config, hf_to_params(hf_text.read_safetensors(directory), cfg), cfg


def generate(model: Any, params: Any, cfg: dict[str, Any], inputs: np.ndarray, max_new: int,
             beam_size: int = 1, alpha: float = 0.0) -> np.ndarray:
  """T5's output ids [B, max_new] for source ids [B, S] in T5's ids (padded with 0):
  hf_text.generate from decoder_start_token_id (<pad>), greedy for beam_size 1, else beam
  search; </s> ends a row, 0 fills the rest; <pad> is never generated."""
  pad = int(cfg.get('pad_token_id', 0))
  return hf_text.generate(model, params, inputs, max_new, pad=pad,
                          start=int(cfg.get('decoder_start_token_id', pad)),
                          eos=int(cfg.get('eos_token_id', 1)), beam_size=beam_size,
                          alpha=alpha)
