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
keeps the parameter names of the defaults."""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import layers
from seq2seq_jax.models.layers import constrain
from seq2seq_jax.models.registry import Registry, freeze

NORMS = Registry('model.norm')
MLPS = Registry('model.mlp')
POSITIONS = Registry('model.positions')
LOGITS_BIASES = Registry('model.logits_bias')


@NORMS.register('layer_norm')
class LayerNorm(nn.LayerNorm):
  """nn.LayerNorm (float32 parameters named 'embed'); `epsilon` 1e-6 unless set."""
  epsilon: float = 1e-6


def layer_norm(dtype, spec: Any = 'layer_norm') -> nn.LayerNorm:
  """The normalisation `spec` names (NORMS), with float32 parameters on the 'embed' axis."""
  return NORMS.build(
      spec, dtype=dtype, param_dtype=jnp.float32,
      scale_init=layers.partitioned(nn.initializers.ones_init(), ('embed',)),
      bias_init=layers.partitioned(nn.initializers.zeros_init(), ('embed',)))


def mlp(spec: Any, mlp_dim: int, emb_dim: int, dtype) -> nn.Module:
  """The position-wise MLP `spec` names (MLPS)."""
  return MLPS.build(spec, mlp_dim=mlp_dim, emb_dim=emb_dim, dtype=dtype)


class SelfAttention(nn.Module):
  """Multi-head self-attention with one fused QKV projection."""
  num_heads: int
  head_dim: int
  emb_dim: int
  attention_dropout_rate: float
  dtype: Any

  def setup(self):
    self.qkv = layers.dense((3, self.num_heads, self.head_dim), ('embed', None, 'heads', 'kv'),
                            dtype=self.dtype, fused=3)
    self.out = layers.dense(self.emb_dim, ('heads', 'kv', 'embed'), num_in_axes=2,
                            dtype=self.dtype)
    self.drop = nn.Dropout(self.attention_dropout_rate)

  def _project(self, x):
    qkv = self.qkv(x)
    names = ('batch', 'length', 'heads', 'kv')
    return [constrain(qkv[:, :, i], names) for i in range(3)]

  def __call__(self, x, bias, deterministic: bool):
    q, k, v = self._project(x)
    return self.out(layers.attention(q, k, v, bias, self.drop, deterministic))

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
    # Every beam attends over all slots of its item; the bias keeps its own history.
    out = layers.attention_step(q.transpose(0, 2, 1, 3), k_slots, v_slots, bias)
    return self.out(out.transpose(0, 2, 1, 3).reshape(b * j, 1, h, d)), k_slots, v_slots


class CrossAttention(nn.Module):
  """Multi-head encoder-decoder attention; K/V of the source can be computed once."""
  num_heads: int
  head_dim: int
  emb_dim: int
  attention_dropout_rate: float
  dtype: Any

  def setup(self):
    self.q = layers.dense((self.num_heads, self.head_dim), ('embed', 'heads', 'kv'),
                          dtype=self.dtype)
    self.kv = layers.dense((2, self.num_heads, self.head_dim), ('embed', None, 'heads', 'kv'),
                           dtype=self.dtype, fused=2)
    self.out = layers.dense(self.emb_dim, ('heads', 'kv', 'embed'), num_in_axes=2,
                            dtype=self.dtype)
    self.drop = nn.Dropout(self.attention_dropout_rate)

  def project_kv(self, memory):
    kv = self.kv(memory)
    names = ('batch', 'length', 'heads', 'kv')
    return constrain(kv[:, :, 0], names), constrain(kv[:, :, 1], names)

  def __call__(self, x, k, v, bias, deterministic: bool = True):
    q = constrain(self.q(x), ('batch', 'length', 'heads', 'kv'))
    return self.out(layers.attention(q, k, v, bias, self.drop, deterministic, sow_in=self))

  def copy_weights(self, x, k, bias):
    """Head 0's attention weights float32 [B, T, S] (x [B, T, E], keys k [B, S, H, D], bias
    [B, 1, T or 1, S]): the copy distribution of Model(copy=True), no dropout."""
    q = self.q(x)[:, :, 0]
    logits = jnp.einsum('btd,bsd->bts', q * (q.shape[-1] ** -0.5), k[:, :, 0],
                        preferred_element_type=jnp.float32)
    return jax.nn.softmax(logits + bias[:, 0], axis=-1)

  def copy_weights_step(self, x, k_t, bias):
    """copy_weights for one step: x [B * J, 1, E], keys k_t [B, H, D, S] -> [B * J, S]."""
    b, _, d, _ = k_t.shape
    q = self.q(x)[:, 0, 0].reshape(b, -1, d)
    logits = jnp.einsum('bjd,bds->bjs', q * (d ** -0.5), k_t[:, 0].astype(q.dtype),
                        preferred_element_type=jnp.float32)
    return jax.nn.softmax(logits + bias[:, 0], axis=-1).reshape(-1, k_t.shape[-1])

  def step(self, x, k_t, v, bias):
    """x [B * J, 1, E] (J beams per item) against one item's source keys k_t [B, H, D, S]
    and values v [B, H, S, D] (held once per item, not per beam)."""
    b, h, d, _ = k_t.shape
    q = constrain(self.q(x), ('batch', 'length', 'heads', 'kv'))
    out = layers.attention_step(q.reshape(b, -1, h, d).transpose(0, 2, 1, 3), k_t, v, bias)
    return self.out(out.transpose(0, 2, 1, 3).reshape(-1, 1, h, d))


@MLPS.register('relu')
class Mlp(nn.Module):
  """Position-wise feed-forward network (Sec. 3.3): ReLU between two projections."""
  mlp_dim: int
  emb_dim: int
  dtype: Any

  def activation(self, h):
    return nn.relu(h)

  @nn.compact
  def __call__(self, x):
    h = layers.dense(self.mlp_dim, ('embed', 'mlp'), dtype=self.dtype, name='wi')(x)
    h = constrain(self.activation(h), ('batch', 'length', 'mlp'))
    return layers.dense(self.emb_dim, ('mlp', 'embed'), dtype=self.dtype, name='wo')(h)


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

  def residual(self, x, fn, norm, deterministic):
    if self.pre_norm:
      return x + self.drop(fn(norm(x)), deterministic=deterministic)
    return norm(x + self.drop(fn(x), deterministic=deterministic))


class EncoderLayer(_Block):
  """Self-attention then MLP, each a residual block."""

  def setup(self):
    self.attn = SelfAttention(self.num_heads, self.head_dim, self.emb_dim,
                              self.attention_dropout_rate, self.dtype)
    self.mlp = mlp(self.mlp_spec, self.mlp_dim, self.emb_dim, self.dtype)
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
    self.self_attn = SelfAttention(self.num_heads, self.head_dim, self.emb_dim,
                                   self.attention_dropout_rate, self.dtype)
    self.cross_attn = CrossAttention(self.num_heads, self.head_dim, self.emb_dim,
                                     self.attention_dropout_rate, self.dtype)
    self.mlp = mlp(self.mlp_spec, self.mlp_dim, self.emb_dim, self.dtype)
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
