"""The Transformer's layers (Vaswani et al. 2017): fused-QKV self-attention, cross-attention
whose source K/V are computed once, the position-wise MLP, and the encoder and decoder layers
with pre- or post-LayerNorm residual wiring. Each layer also has the one-step form (`step`) that
incremental decoding uses (see model.py's Model.init_cache for the cache layouts).

These parts are registered by name, each with its own settings (models/registry.py), so a
pretrained family is a preset rather than a branch: the normalisation (`model.norm`, NORMS:
'layer_norm' with `epsilon`, 1e-6 by default; Whisper's and Marian's is 1e-5; also
`model.embed_norm`, BART's LayerNorm of the embedded tokens plus positions), the
position-wise MLP (`model.mlp`, MLPS: 'relu', the paper's, the default; 'gelu', exact GELU as
in Whisper; 'swish', SiLU as in Marian's OPUS-MT models), the fixed position encodings
(`model.positions` / `model.target_positions` other than 'learned', POSITIONS: 'sinusoidal'
with `max_timescale` and `endpoint`) and a bias on the output logits (`model.logits_bias`,
LOGITS_BIASES: 'none', the default; 'learned', Marian's and BART's final_logits_bias). Each
keeps the parameter names of the defaults.

T5's parts (Raffel et al. 2020; pretrained/t5.py) are choices here too: 'rms_norm' (NORMS: a
scale, no bias, no mean subtraction), the gated MLPs 'gated_gelu' / 'gated_relu' /
'gated_silu' (MLPS: Shazeer 2020's GLU variants, T5 v1.1's and mT5's 'gated-gelu'), and
'relative' positions (POSITIONS: T5's bucketed relative position bias, one learned scalar per
bucket and head added to the self-attention logits, computed once per stack and shared by its
layers). Attention and MLP biases (`use_bias`) and the 1/sqrt(d) query scaling
(`scale_attention`) are model settings the layers receive."""
import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import layers
from seq2seq_jax.models.layers import constrain
from seq2seq_jax.models.registry import Registry, freeze, spec_dict

NORMS = Registry('model.norm')
MLPS = Registry('model.mlp')
POSITIONS = Registry('model.positions')
LOGITS_BIASES = Registry('model.logits_bias')


@NORMS.register('layer_norm')
class LayerNorm(nn.LayerNorm):
  """nn.LayerNorm (float32 parameters named 'embed'); `epsilon` 1e-6 unless set."""
  epsilon: float = 1e-6


@NORMS.register('rms_norm')
class RMSNorm(nn.RMSNorm):
  """Root-mean-square normalisation (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + epsilon)
  times a learned scale, no mean subtracted, no bias: T5's T5LayerNorm. The statistics are
  float32 whatever the compute dtype; parameter 'scale' as LayerNorm's."""
  epsilon: float = 1e-6


def layer_norm(dtype, spec: Any = 'layer_norm') -> nn.Module:
  """The normalisation `spec` names (NORMS), with float32 parameters on the 'embed' axis."""
  kwargs = dict(dtype=dtype, param_dtype=jnp.float32,
                scale_init=layers.partitioned(nn.initializers.ones_init(), ('embed',)))
  fields = {f.name for f in dataclasses.fields(NORMS.get(spec_dict(spec).get('name')))}
  if 'bias_init' in fields:   # the norms with a bias
    kwargs['bias_init'] = layers.partitioned(nn.initializers.zeros_init(), ('embed',))
  return NORMS.build(spec, **kwargs)


def mlp(spec: Any, mlp_dim: int, emb_dim: int, dtype, use_bias: bool = True) -> nn.Module:
  """The position-wise MLP `spec` names (MLPS)."""
  return MLPS.build(spec, mlp_dim=mlp_dim, emb_dim=emb_dim, dtype=dtype, use_bias=use_bias)


class SelfAttention(nn.Module):
  """Multi-head self-attention with one fused QKV projection."""
  num_heads: int
  head_dim: int
  emb_dim: int
  attention_dropout_rate: float
  dtype: Any
  use_bias: bool = True   # biases on the projections (T5 has none)
  scale: bool = True      # queries times head_dim**-0.5 (T5: unscaled)

  def setup(self):
    self.qkv = layers.dense((3, self.num_heads, self.head_dim), ('embed', None, 'heads', 'kv'),
                            dtype=self.dtype, fused=3, use_bias=self.use_bias)
    self.out = layers.dense(self.emb_dim, ('heads', 'kv', 'embed'), num_in_axes=2,
                            dtype=self.dtype, use_bias=self.use_bias)
    self.drop = nn.Dropout(self.attention_dropout_rate)

  def _project(self, x):
    qkv = self.qkv(x)
    names = ('batch', 'length', 'heads', 'kv')
    return [constrain(qkv[:, :, i], names) for i in range(3)]

  def __call__(self, x, bias, deterministic: bool):
    q, k, v = self._project(x)
    return self.out(layers.attention(q, k, v, bias, self.drop, deterministic, scale=self.scale))

  def step(self, x, k_slots, v_slots, pos, bias):
    """One new position per hypothesis (see Model.init_cache for the layouts).

    x [B * J, 1, E] (J beams per item, item-major); k_slots [B, H, D, M * J] and v_slots
    [B, H, M * J, D]: beam j writes its key/value for position m to slot m * J + j; pos: the
    step (all rows are at the same one); bias [B, 1, J, M * J]: each beam's own history.
    """
    b, h, d, n = k_slots.shape
    j = x.shape[0] // b
    q, k, v = (t.reshape(b, j, h, d) for t in self._project(x))
    # One dynamic-update-slice per buffer writes the step's J slots in place.
    k_slots = lax.dynamic_update_slice(
        k_slots, k.transpose(0, 2, 3, 1).astype(k_slots.dtype), (0, 0, 0, pos * j))
    v_slots = lax.dynamic_update_slice(
        v_slots, v.transpose(0, 2, 1, 3).astype(v_slots.dtype), (0, 0, pos * j, 0))
    # Every beam attends over the slots of its item; the bias keeps its own history.
    out = layers.attention_prefix(q.transpose(0, 2, 1, 3), k_slots, v_slots, bias, pos, j,
                                  self.scale)
    return self.out(out.transpose(0, 2, 1, 3).reshape(b * j, 1, h, d)), k_slots, v_slots


class CrossAttention(nn.Module):
  """Multi-head encoder-decoder attention; K/V of the source can be computed once."""
  num_heads: int
  head_dim: int
  emb_dim: int
  attention_dropout_rate: float
  dtype: Any
  use_bias: bool = True   # as SelfAttention's
  scale: bool = True

  def setup(self):
    self.q = layers.dense((self.num_heads, self.head_dim), ('embed', 'heads', 'kv'),
                          dtype=self.dtype, use_bias=self.use_bias)
    self.kv = layers.dense((2, self.num_heads, self.head_dim), ('embed', None, 'heads', 'kv'),
                           dtype=self.dtype, fused=2, use_bias=self.use_bias)
    self.out = layers.dense(self.emb_dim, ('heads', 'kv', 'embed'), num_in_axes=2,
                            dtype=self.dtype, use_bias=self.use_bias)
    self.drop = nn.Dropout(self.attention_dropout_rate)

  def project_kv(self, memory):
    kv = self.kv(memory)
    names = ('batch', 'length', 'heads', 'kv')
    return constrain(kv[:, :, 0], names), constrain(kv[:, :, 1], names)

  def __call__(self, x, k, v, bias, deterministic: bool = True):
    q = constrain(self.q(x), ('batch', 'length', 'heads', 'kv'))
    return self.out(layers.attention(q, k, v, bias, self.drop, deterministic, sow_in=self,
                                     scale=self.scale))

  def copy_weights(self, x, k, bias):
    """Head 0's attention weights float32 [B, T, S] (x [B, T, E], keys k [B, S, H, D], bias
    [B, 1, T or 1, S]): the copy distribution of Model(copy=True), no dropout."""
    q = self.q(x)[:, :, 0]
    logits = jnp.einsum('btd,bsd->bts', layers.scaled(q, self.scale), k[:, :, 0],
                        preferred_element_type=jnp.float32)
    return jax.nn.softmax(logits + bias[:, 0], axis=-1)

  def copy_weights_step(self, x, k_t, bias):
    """copy_weights for one step: x [B * J, 1, E], keys k_t [B, H, D, S] -> [B * J, S]."""
    b, _, d, _ = k_t.shape
    q = self.q(x)[:, 0, 0].reshape(b, -1, d)
    logits = jnp.einsum('bjd,bds->bjs', layers.scaled(q, self.scale), k_t[:, 0].astype(q.dtype),
                        preferred_element_type=jnp.float32)
    return jax.nn.softmax(logits + bias[:, 0], axis=-1).reshape(-1, k_t.shape[-1])

  def step(self, x, k_t, v, bias):
    """x [B * J, 1, E] (J beams per item) against one item's source keys k_t [B, H, D, S]
    and values v [B, H, S, D] (held once per item, not per beam)."""
    b, h, d, _ = k_t.shape
    q = constrain(self.q(x), ('batch', 'length', 'heads', 'kv'))
    out = layers.attention_step(q.reshape(b, -1, h, d).transpose(0, 2, 1, 3), k_t, v, bias,
                                self.scale)
    return self.out(out.transpose(0, 2, 1, 3).reshape(-1, 1, h, d))


@MLPS.register('relu')
class Mlp(nn.Module):
  """Position-wise feed-forward network (Sec. 3.3): ReLU between two projections."""
  mlp_dim: int
  emb_dim: int
  dtype: Any
  use_bias: bool = True   # given by the model (model.use_bias)

  def activation(self, h):
    return nn.relu(h)

  @nn.nowrap
  def dense(self, features, names, name):
    return layers.dense(features, names, dtype=self.dtype, use_bias=self.use_bias, name=name)

  @nn.compact
  def __call__(self, x):
    h = self.dense(self.mlp_dim, ('embed', 'mlp'), 'wi')(x)
    h = constrain(self.activation(h), ('batch', 'length', 'mlp'))
    return self.dense(self.emb_dim, ('mlp', 'embed'), 'wo')(h)


@MLPS.register('gelu')
class GeluMlp(Mlp):
  """The MLP with the exact GELU (erf, not the tanh approximation), as in Whisper and BERT."""

  def activation(self, h):
    return nn.gelu(h, approximate=False)


@MLPS.register('swish')
class SwishMlp(Mlp):
  """The MLP with SiLU, x * sigmoid(x) (Ramachandran et al. 2017's Swish with beta 1), the
  activation of Marian's OPUS-MT models (transformers' 'swish')."""

  def activation(self, h):
    return nn.silu(h)


@MLPS.register('gated_gelu')
class GatedGeluMlp(Mlp):
  """A gated MLP (Shazeer 2020, "GLU Variants Improve Transformer"): wo(act(wi_0 x) * wi_1 x),
  here GEGLU with the tanh approximation of GELU (transformers' 'gelu_new'), as T5 v1.1's,
  Flan-T5's and mT5's 'gated-gelu'. Parameters wi_0 (the gated branch), wi_1, wo."""

  def activation(self, h):
    return nn.gelu(h, approximate=True)

  @nn.compact
  def __call__(self, x):
    gate = self.activation(self.dense(self.mlp_dim, ('embed', 'mlp'), 'wi_0')(x))
    h = constrain(gate * self.dense(self.mlp_dim, ('embed', 'mlp'), 'wi_1')(x),
                  ('batch', 'length', 'mlp'))
    return self.dense(self.emb_dim, ('mlp', 'embed'), 'wo')(h)


@MLPS.register('gated_relu')
class GatedReluMlp(GatedGeluMlp):
  """The gated MLP with ReLU (Shazeer 2020's ReGLU; T5's 'gated-relu')."""

  def activation(self, h):
    return nn.relu(h)


@MLPS.register('gated_silu')
class GatedSiluMlp(GatedGeluMlp):
  """The gated MLP with SiLU (Shazeer 2020's SwiGLU; T5's 'gated-silu')."""

  def activation(self, h):
    return nn.silu(h)


@POSITIONS.register('sinusoidal')
@dataclasses.dataclass(frozen=True)
class Sinusoidal:
  """Fixed sinusoidal encodings (Vaswani et al. 2017, Sec. 3.5): all sines, then all cosines.

  With `endpoint` (the default) the timescales run geometrically from 1 to `max_timescale`
  inclusive, as tensor2tensor's get_timing_signal_1d (and fairseq, Whisper); without it they
  stop one step short, 10000^(2i / d) for i < d / 2: the paper's formula, which Marian (and
  Hugging Face's MarianSinusoidalPositionalEmbedding) lay out as sines then cosines.
  """
  max_timescale: float = 1e4
  endpoint: bool = True

  def __call__(self, positions: jax.Array, dim: int) -> jax.Array:
    """float32 encodings [..., dim] of integer positions [...]."""
    if self.endpoint:
      return layers.sinusoidal(positions, dim, self.max_timescale)
    if dim % 2:
      raise UserError(f'sinusoidal positions without endpoint need an even width, got {dim}')
    half = dim // 2
    freqs = np.exp(-np.log(self.max_timescale) * np.arange(half) / half).astype(np.float32)
    angles = positions[..., None].astype(jnp.float32) * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def relative_buckets(relative: jax.Array, bidirectional: bool, num_buckets: int,
                     max_distance: int) -> jax.Array:
  """T5's bucket of each relative position (key position - query position), int32.

  As Mesh TensorFlow's _relative_position_bucket (and transformers' T5Attention): with
  `bidirectional` half the buckets are for keys after the query, else keys after it share
  bucket 0; of each half, the first half are exact distances 0, 1, ..., the rest grow
  logarithmically up to `max_distance`, beyond which all share the last bucket. Computed in
  float32 as they do, so distances on a bucket boundary fall the same way.
  """
  relative = jnp.asarray(relative, jnp.int32)
  buckets = jnp.zeros_like(relative)
  if bidirectional:
    num_buckets //= 2
    buckets = buckets + (relative > 0).astype(jnp.int32) * num_buckets
    distance = jnp.abs(relative)
  else:
    distance = -jnp.minimum(relative, 0)
  max_exact = num_buckets // 2
  ratio = jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
  large = max_exact + (ratio / np.float32(math.log(max_distance / max_exact))
                       * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return buckets + jnp.where(distance < max_exact, distance, large)


@POSITIONS.register('relative')
class RelativePositionBias(nn.Module):
  """T5's relative positions (Raffel et al. 2020, Sec. 2.1; Shaw et al. 2018): no encoding
  is added to the embeddings; each self-attention logit gets a learned scalar per head for
  the bucket of its relative position (`relative_buckets`), bidirectional in the encoder and
  causal in the decoder (the model supplies which). One table per stack ('embedding',
  [num_buckets, heads]): computed once and shared by every layer, as T5's first layer
  computes it and the others reuse it. Cross-attention gets none."""
  num_buckets: int = 32
  max_distance: int = 128
  num_heads: int = 8          # given by the model
  bidirectional: bool = True  # given by the model: the encoder's, or the decoder's (causal)

  adds_encoding = False       # the model adds no position encoding to the embeddings

  @nn.compact
  def __call__(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
    """float32 bias [B or 1, heads, Q, K] for query positions [B or 1, Q] and key positions
    [B or 1, K]."""
    table = self.param('embedding', layers.partitioned(nn.initializers.normal(1.0),
                                                       (None, 'heads')),
                       (self.num_buckets, self.num_heads), jnp.float32)
    buckets = relative_buckets(k_positions[:, None, :] - q_positions[:, :, None],
                               self.bidirectional, self.num_buckets, self.max_distance)
    return jnp.take(table, buckets, axis=0).transpose(0, 3, 1, 2)


@LOGITS_BIASES.register('none')
class NoLogitsBias(nn.Module):
  """Logits as the output projection gives them."""
  vocab_size: int

  def __call__(self, logits: jax.Array) -> jax.Array:
    return logits


@LOGITS_BIASES.register('learned')
class LearnedLogitsBias(nn.Module):
  """A learned vector [vocab] added to every position's logits (zeros at initialisation):
  the final_logits_bias of Marian and BART, which their tied output projection lacks."""
  vocab_size: int

  @nn.compact
  def __call__(self, logits: jax.Array) -> jax.Array:
    bias = self.param('bias', layers.partitioned(nn.initializers.zeros_init(), ('vocab',)),
                      (self.vocab_size,), jnp.float32)
    return logits + bias


class _Block(nn.Module):
  """Shared residual wiring: pre-LN x + f(LN(x)), or the paper's post-LN LN(x + f(x))."""
  pre_norm: bool
  dropout_rate: float
  dtype: Any
  num_heads: int = 8
  head_dim: int = 64
  emb_dim: int = 512
  mlp_dim: int = 2048
  attention_dropout_rate: float = 0.0
  norm: Any = freeze('layer_norm')   # NORMS: the layer normalisations
  mlp_spec: Any = freeze('relu')     # MLPS: the position-wise MLP
  use_bias: bool = True              # biases in attention and the MLP (T5: none)
  scale_attention: bool = True       # queries times head_dim**-0.5 (T5: unscaled)

  @nn.nowrap
  def attention(self, cls):
    return cls(self.num_heads, self.head_dim, self.emb_dim, self.attention_dropout_rate,
               self.dtype, use_bias=self.use_bias, scale=self.scale_attention)

  def residual(self, x, fn, norm, deterministic):
    if self.pre_norm:
      return x + self.drop(fn(norm(x)), deterministic=deterministic)
    return norm(x + self.drop(fn(x), deterministic=deterministic))


class EncoderLayer(_Block):
  """Self-attention then MLP, each a residual block."""

  def setup(self):
    self.attn = self.attention(SelfAttention)
    self.mlp = mlp(self.mlp_spec, self.mlp_dim, self.emb_dim, self.dtype, self.use_bias)
    self.ln_attn = layer_norm(self.dtype, self.norm)
    self.ln_mlp = layer_norm(self.dtype, self.norm)
    self.drop = nn.Dropout(self.dropout_rate)

  def __call__(self, x, bias, deterministic: bool):
    x = self.residual(x, lambda h: self.attn(h, bias, deterministic), self.ln_attn,
                      deterministic)
    x = self.residual(x, self.mlp, self.ln_mlp, deterministic)
    return constrain(x, ('batch', 'length', 'embed'))


class DecoderLayer(_Block):
  """Causal self-attention, cross-attention to the encoder, then MLP.

  With copy_head (the top layer of a copying model) it also returns the first cross-attention
  head's weights [B, T, S] (the pointer's copy distribution)."""
  copy_head: bool = False

  def setup(self):
    self.self_attn = self.attention(SelfAttention)
    self.cross_attn = self.attention(CrossAttention)
    self.mlp = mlp(self.mlp_spec, self.mlp_dim, self.emb_dim, self.dtype, self.use_bias)
    self.ln_self = layer_norm(self.dtype, self.norm)
    self.ln_cross = layer_norm(self.dtype, self.norm)
    self.ln_mlp = layer_norm(self.dtype, self.norm)
    self.drop = nn.Dropout(self.dropout_rate)

  def __call__(self, y, self_bias, memory, cross_bias, deterministic: bool):
    ck, cv = self.cross_attn.project_kv(memory)
    y = self.residual(y, lambda h: self.self_attn(h, self_bias, deterministic), self.ln_self,
                      deterministic)
    copied = []

    def cross(h):
      if self.copy_head:
        copied.append(self.cross_attn.copy_weights(h, ck, cross_bias))
      return self.cross_attn(h, ck, cv, cross_bias, deterministic)

    y = self.residual(y, cross, self.ln_cross, deterministic)
    y = self.residual(y, self.mlp, self.ln_mlp, deterministic)
    y = constrain(y, ('batch', 'length', 'embed'))
    return (y, copied[0]) if self.copy_head else y

  def step(self, y, cache, pos, self_bias, cross_bias):
    """One decode step; cache holds this layer's unwrapped 'k', 'v', 'ck', 'cv'.

    Returns (y, new k slots, new v slots, the copy head's weights [B * J, S] or None).
    """
    new = {}

    def self_attn(h):
      out, new['k'], new['v'] = self.self_attn.step(h, cache['k'], cache['v'], pos, self_bias)
      return out

    def cross(h):
      if self.copy_head:
        new['copy'] = self.cross_attn.copy_weights_step(h, cache['ck'], cross_bias)
      return self.cross_attn.step(h, cache['ck'], cache['cv'], cross_bias)

    y = self.residual(y, self_attn, self.ln_self, True)
    y = self.residual(y, cross, self.ln_cross, True)
    y = self.residual(y, self.mlp, self.ln_mlp, True)
    return y, new['k'], new['v'], new.get('copy')
