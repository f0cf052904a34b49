"""Attention mechanisms of the recurrent encoder-decoders (seq2seq_jax/models/rnn.py).

  'bahdanau'  additive, Bahdanau et al. 2015, App. A.1.2:   e_ij = v^T tanh(W s_{i-1} + U h_j)
  'dot'       Luong et al. 2015, Sec. 3.1, Eq. 8:            h_t^T h_s
  'general'   Luong et al. 2015, Eq. 8:                      h_t^T W_a h_s
  'concat'    Luong et al. 2015, Eq. 8:                      v^T tanh(W_a [h_t; h_s])
  'see'       See et al. 2017, Eq. 1 (additive, queried by the whole new LSTM state
              s_t = [c_t; h_t]):                             v^T tanh(W_h h_i + W_s s_t + b)
Coverage (See et al. 2017, Eq. 11) adds w_c c_i inside any additive score (ADDITIVE).
Which decoder state is the query (s_{i-1} before the step for Bahdanau, h_t after it for
Luong) is the decoder's business; here a query scores every source position.

The source side of each score (U h_j, W_a h_s, or the W_a columns acting on h_s for concat)
does not depend on the decoder, so `SourceKeys` computes it once per sentence ('dot' uses h_s
as it is); the per-step cost is then one query projection and a [B, S] score. Padded source
positions get zero weight.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.models import layers

ATTENTION_TYPES = ('none', 'bahdanau', 'dot', 'general', 'concat', 'see')
ADDITIVE = ('bahdanau', 'concat', 'see')   # v^T tanh(W_h h_j + W_s s (+ w_c c_j) + b)


def key_width(kind: str, query_dim: int, attention_dim: int) -> int:
  """Width of the projected keys: the scorer size (additive) or the query size (general)."""
  return attention_dim if kind in ADDITIVE else query_dim


class SourceKeys(nn.Module):
  """Source-side projections of the annotations, once per sentence: memory [B,S,D] -> keys
  [B,S,width] (U h_j for additive scores, W_a h_s for 'general'; 'dot' scores h_s itself)."""
  width: int
  init_fn: Callable | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, memory: jax.Array) -> jax.Array:
    # No bias: the query side carries the one bias of the additive scores.
    return layers.dense(self.width, ('hidden', 'kv'), use_bias=False, dtype=self.dtype,
                        init=self.init_fn, name='proj')(memory)


@jax.checkpoint
def additive_scores(keys: jax.Array, q: jax.Array, v: jax.Array, coverage: jax.Array | None = None,
                    w_c: jax.Array | None = None) -> jax.Array:
  """v^T tanh(keys + q [+ w_c c_i]) for every source position: keys [B, S, A], q [B, A] ->
  [B, S]; with coverage c [B, S] (See et al. 2017, Eq. 11) each position's key gains w_c c_i.

  Rematerialised: the backward pass recomputes the [B, S, A] tanh from keys (the same for every
  decoder step) and q instead of keeping it. Kept, it is a [T, B, S, A] residual of the
  teacher-forced scan (268 MB for batch 128, 32 x 32 tokens, A = 512), written and read back
  at every step; recomputed, it costs one more tanh per step.
  """
  pre = keys + q[:, None, :]
  if coverage is not None:
    pre = pre + coverage[:, :, None].astype(pre.dtype) * w_c
  return jnp.tanh(pre) @ v


class Attention(nn.Module):
  """Scores a query [B, Q] against keys [B, S, K]; returns (context [B, D], weights [B, S])."""
  kind: str                  # bahdanau | dot | general | concat
  attention_dim: int         # hidden size of the additive scorer (bahdanau, concat)
  init_fn: Callable | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, query: jax.Array, keys: jax.Array, memory: jax.Array,
               mask: jax.Array, coverage: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """Args: query [B, Q]; keys [B, S, K] from SourceKeys; memory [B, S, D]; mask [B, S];
    coverage [B, S]: the attention summed over past steps (additive kinds only)."""
    if self.kind in ADDITIVE:
      q = layers.dense(self.attention_dim, ('hidden', 'kv'), dtype=self.dtype,
                       init=self.init_fn, name='query')(query)
      v = self.param('v', layers.partitioned(
          self.init_fn or nn.initializers.normal(self.attention_dim ** -0.5), ('kv',)),
                     (self.attention_dim,), jnp.float32)
      if coverage is None:
        scores = additive_scores(keys, q, v.astype(self.dtype))
      else:                      # See et al. 2017, Eq. 11: w_c, one weight per scorer unit
        w_c = self.param('coverage', layers.partitioned(
            self.init_fn or nn.initializers.normal(1.0), ('kv',)),
                         (self.attention_dim,), jnp.float32).astype(self.dtype)
        scores = additive_scores(keys, q, v.astype(self.dtype), coverage, w_c)
    elif self.kind in ('dot', 'general'):
      if coverage is not None:
        raise ValueError(f'coverage needs an additive attention, not {self.kind!r}')
      scores = jnp.einsum('bd,bsd->bs', query.astype(self.dtype), keys)
    else:
      raise ValueError(f'unknown attention {self.kind!r}')
    scores = jnp.where(mask, scores.astype(jnp.float32), layers.NEG_INF)
    weights = jax.nn.softmax(scores, axis=-1)
    # Kept only when 'intermediates' is mutable (seq2seq_jax/analysis/attention_maps.py).
    self.sow('intermediates', 'attention_weights', weights)
    context = jnp.einsum('bs,bsd->bd', weights.astype(self.dtype), memory.astype(self.dtype))
    return context.astype(jnp.float32), weights
