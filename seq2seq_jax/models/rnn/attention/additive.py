"""Additive attention, v^T tanh(W_s s + U h_j + b), and the three decoders that query it.

  'bahdanau'  Bahdanau et al. 2015, App. A.1.2: e_ij = v^T tanh(W s_{i-1} + U h_j); the
              previous state s_{i-1} queries (decoder 'bahdanau')
  'concat'    Luong et al. 2015, Eq. 8: v^T tanh(W_a [h_t; h_s]); the new top state h_t
              queries (decoder 'luong')
  'see'       See et al. 2017, Eq. 1: v^T tanh(W_h h_i + W_s s_t + b), queried by the whole new
              LSTM state s_t = [c_t; h_t] (decoder 'see')

Coverage (See et al. 2017, Eq. 11) adds w_c c_i inside the score. The source side U h_j does
not depend on the decoder: SourceKeys computes it once per sentence, so a step costs one query
projection and a [B, S] score.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.models import layers
from seq2seq_jax.models.rnn.attention.base import ATTENTIONS, Attention


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


class Additive(Attention):
  """v^T tanh(W_s query + keys (+ w_c c_i) + b), keys = U h_j from SourceKeys."""
  additive = True

  @classmethod
  def key_width(cls, query_dim: int, attention_dim: int) -> int:
    return attention_dim

  def score(self, query, keys, coverage):
    q = layers.dense(self.attention_dim, ('hidden', 'kv'), dtype=self.dtype,
                     init=self.init_fn, name='query')(query)
    v = self.param('v', layers.partitioned(
        self.init_fn or nn.initializers.normal(self.attention_dim ** -0.5), ('kv',)),
                   (self.attention_dim,), jnp.float32)
    if coverage is None:
      return additive_scores(keys, q, v.astype(self.dtype))
    # See et al. 2017, Eq. 11: w_c, one weight per scorer unit
    w_c = self.param('coverage', layers.partitioned(
        self.init_fn or nn.initializers.normal(1.0), ('kv',)),
                     (self.attention_dim,), jnp.float32).astype(self.dtype)
    return additive_scores(keys, q, v.astype(self.dtype), coverage, w_c)


@ATTENTIONS.register('bahdanau')
class Bahdanau(Additive):
  family = 'bahdanau'


@ATTENTIONS.register('concat')
class Concat(Additive):
  family = 'luong'


@ATTENTIONS.register('see')
class See(Additive):
  family = 'see'
