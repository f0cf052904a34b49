"""What every attention family shares: the registry ATTENTIONS, the source-side keys and the
masked softmax that turns scores into weights and a context vector.

An attention family is a subclass of `Attention` that says how a query scores the source
(`score`), how wide its precomputed keys are (`key_width`, or `projects_keys = False` when the
annotations themselves are the keys) and which decoder cell queries it
(`family`: the name of a part in seq2seq_jax/models/rnn/decoder.py's DECODERS), registered under
the name `model.attention` gives it. Which decoder state is the query (s_{i-1} before the step
for Bahdanau, h_t after it for Luong) is the decoder's business; here a query scores every
source position. Padded source positions get zero weight.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.models import layers
from seq2seq_jax.models.registry import Registry

ATTENTIONS = Registry('model.attention')


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


class Attention(nn.Module):
  """Scores a query [B, Q] against keys [B, S, K]; returns (context [B, D], weights [B, S]).

  Subclasses define `score`, and may set `family`, `additive`, `projects_keys` and
  `key_width`.
  """
  attention_dim: int = 0     # scorer size of additive families (the model resolves 0)
  init_fn: Callable | None = None
  dtype: Any = jnp.float32
  family = 'luong'           # the decoder cell that queries it (decoder.DECODERS)
  additive = False           # coverage (See et al. 2017, Eq. 11) fits additive scores only
  attends = True             # False: no attention at all ('none')
  projects_keys = True       # False: the annotations are the keys (no SourceKeys)

  @classmethod
  def key_width(cls, query_dim: int, attention_dim: int) -> int:
    """Width of the keys SourceKeys precomputes once per sentence (projects_keys only)."""
    return query_dim

  def score(self, query: jax.Array, keys: jax.Array,
            coverage: jax.Array | None) -> jax.Array:
    """Scores [B, S] of query [B, Q] against keys [B, S, K]."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, query: jax.Array, keys: jax.Array, memory: jax.Array,
               mask: jax.Array, coverage: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """Args: query [B, Q]; keys [B, S, K] from SourceKeys; memory [B, S, D]; mask [B, S];
    coverage [B, S]: the attention summed over past steps (additive families only)."""
    if coverage is not None and not self.additive:
      raise ValueError(f'coverage needs an additive attention, not {self.part_name!r}')
    scores = jnp.where(mask, self.score(query, keys, coverage).astype(jnp.float32),
                       layers.NEG_INF)
    weights = jax.nn.softmax(scores, axis=-1)
    # Kept only when 'intermediates' is mutable (seq2seq_jax/analysis/attention_maps.py).
    self.sow('intermediates', 'attention_weights', weights)
    context = jnp.einsum('bs,bsd->bd', weights.astype(self.dtype), memory.astype(self.dtype))
    return context.astype(jnp.float32), weights


@ATTENTIONS.register('none')
class NoAttention(Attention):
  """Sutskever et al. 2014 and Cho et al. 2014: the decoder reads no attention; the source
  reaches it through its initial state (and Cho et al.'s fixed context)."""
  family = 'plain'
  attends = False
  projects_keys = False
