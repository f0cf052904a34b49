"""Decoder cells (one time step), one registered family per way of reading the source.

  'plain'     Sutskever et al. 2014 (Sec. 2): the decoder sees the source only through its
              initial state. With a fixed context (model.feed_context) Cho et al. 2014
              (Sec. 2.2): c enters every step and the readout, h_t = f(h_{t-1}, y_{t-1}, c),
              p(y_t | ...) = g(h_t, y_{t-1}, c).
  'bahdanau'  RNNsearch (Bahdanau et al. 2015, App. A.2.2): the previous state s_{i-1}
              queries, c_i enters the recurrence, the readout reads [s_{i-1}, E y_{i-1}, c_i].
  'luong'     Luong et al. 2015 global attention (Sec. 3.1): the new top state h_t queries;
              h~_t = tanh(W_c [c_t; h_t]) (Eq. 5) feeds the softmax (Eq. 6) and, with input
              feeding, the next step's first layer (Sec. 3.3).
  'see'       the pointer-generator's baseline (See et al. 2017, Sec. 2.1 and their code):
              x_t = W [E y_{t-1}; h*_{t-1}] + b enters the LSTM; the new state s_t = [c_t; h_t]
              queries (Eq. 1); V [h_t; h*_t] + b (no squashing) is the output (Eq. 4).

The attention chooses the family (its `family`: seq2seq_jax/models/rnn/attention/). Every
family shares the cell stack, the readout (linear or maxout) and the copy/coverage extras
(copy.py); a family only says what enters the stack (`before`) and what comes out (`after`).
"""
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.models import layers
from seq2seq_jax.models.registry import Registry
from seq2seq_jax.models.rnn import copy as copy_lib
from seq2seq_jax.models.rnn.attention import ATTENTIONS
from seq2seq_jax.models.rnn.cells import make_cell

DECODERS = Registry('decoder cell')


def maxout(x: jax.Array) -> jax.Array:
  """Maxout with pool size 2 over adjacent units (Bahdanau et al. 2015, App. A.2.2)."""
  return jnp.max(x.reshape(x.shape[:-1] + (x.shape[-1] // 2, 2)), axis=-1)


class DecoderCell(nn.Module):
  """One decoder step: (carry, E y_{t-1} [B, E], source) -> (carry, readout [B, readout]).

  `source` holds what the encoder gives every step: {'memory', 'keys', 'mask'} with attention
  ('dot' has no separate keys), {'context'} for Cho et al., {} for Sutskever et al.
  """
  cell: str
  hidden: int
  num_layers: int
  attention: str
  attention_dim: int
  readout: str
  readout_dim: int
  residual: bool
  dropout_rate: float
  deterministic: bool
  init_fn: Callable | None
  dtype: Any
  copy: bool = False       # also return the copy attention and the p_gen logit
  coverage: bool = False   # carry 'coverage' (summed attention) into the scores

  @classmethod
  def carry_extras(cls, model: Any, batch: int) -> dict[str, jax.Array]:
    """What the family keeps in the carry beside the layers' states, at the first step."""
    return {}

  def before(self, carry, y_emb, source, attend, dense):
    """What enters the cell stack: (E y_{t-1}, a context or None, attention weights or None)."""
    return y_emb, source.get('context'), None

  def after(self, carry, new_carry, x, y_emb, context, weights, source, attend, dense, width):
    """The step's output before maxout: (out, context, weights)."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, carry, y_emb, source):
    drop = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
    dense = functools.partial(layers.dense, names=('hidden', 'embed'), dtype=self.dtype,
                              init=self.init_fn)
    width = 2 * self.readout_dim if self.readout == 'maxout' else self.readout_dim
    attn_cls = ATTENTIONS.get(self.attention)
    attend = (attn_cls(attention_dim=self.attention_dim, init_fn=self.init_fn,
                       dtype=self.dtype, name='attention') if attn_cls.attends else None)
    states = list(carry['layers'])
    y_emb, context, weights = self.before(carry, y_emb, source, attend, dense)
    x = jnp.concatenate([y_emb] + [v for v in (context, carry.get('feed')) if v is not None], -1)
    for i in range(self.num_layers):
      cell = make_cell(self.cell, self.hidden, x.shape[-1], self.init_fn, self.dtype,
                       f'layer_{i}')
      states[i] = cell(states[i], drop(x))
      x = states[i]['h'] + x if (self.residual and i >= 2) else states[i]['h']
    new_carry = {'layers': tuple(states)}
    out, context, weights = self.after(carry, new_carry, x, y_emb, context, weights, source,
                                       attend, dense, width)
    if self.readout == 'maxout':
      out = maxout(out)
    if 'feed' in carry:                      # input feeding (Luong Sec. 3.3)
      new_carry['feed'] = out.astype(jnp.float32)
    if not (self.copy or self.coverage):
      return new_carry, drop(out)
    extras = copy_lib.step_extras(self.copy, self.coverage, carry, new_carry, context,
                                  weights, y_emb, dense)
    return new_carry, (drop(out), extras)


@DECODERS.register('plain')
class PlainDecoderCell(DecoderCell):
  """Sutskever et al. 2014; with a fixed context, Cho et al. 2014."""

  def after(self, carry, new_carry, x, y_emb, context, weights, source, attend, dense, width):
    if context is not None:   # Cho et al. (Sec. 2.2): the deep output reads h_t, y, c
      return _deep_output(dense, width, x, y_emb, context), context, weights
    if width != x.shape[-1] or self.readout == 'maxout':
      return dense(width, name='readout')(x), context, weights
    return x, context, weights   # Sutskever et al.: softmax on the top state


@DECODERS.register('bahdanau')
class BahdanauDecoderCell(DecoderCell):
  """RNNsearch: c_i from s_{i-1} (App. A.1.2); the deep output reads s_{i-1}, y, c_i."""

  def before(self, carry, y_emb, source, attend, dense):
    keys = source.get('keys', source.get('memory'))
    context, weights = attend(carry['layers'][-1]['h'], keys, source['memory'], source['mask'],
                              carry.get('coverage'))
    return y_emb, context, weights

  def after(self, carry, new_carry, x, y_emb, context, weights, source, attend, dense, width):
    prev_top = carry['layers'][-1]['h']
    return _deep_output(dense, width, prev_top, y_emb, context), context, weights


@DECODERS.register('luong')
class LuongDecoderCell(DecoderCell):
  """Luong et al. 2015: h_t queries; h~_t = tanh(W_c [c_t; h_t]) (Eq. 5)."""

  @classmethod
  def carry_extras(cls, model, batch):
    # Input feeding (Sec. 3.3): h~_{t-1} joins the first layer's input.
    return {'feed': jnp.zeros((batch, model.out_width), jnp.float32)} if model.input_feeding else {}

  def after(self, carry, new_carry, x, y_emb, context, weights, source, attend, dense, width):
    keys = source.get('keys', source.get('memory'))
    context, weights = attend(x, keys, source['memory'], source['mask'], carry.get('coverage'))
    out = jnp.tanh(dense(width, use_bias=False, name='combine')(
        jnp.concatenate([context, x], -1)))
    return out, context, weights


@DECODERS.register('see')
class SeeDecoderCell(DecoderCell):
  """See et al. 2017, Eq. 1-4; the carry holds the previous context h*_{t-1}."""

  @classmethod
  def carry_extras(cls, model, batch):
    return {'context': jnp.zeros((batch, model.enc_out), jnp.float32)}

  def before(self, carry, y_emb, source, attend, dense):
    # x_t = W [E y_{t-1}; h*_{t-1}] + b
    y_emb = dense(y_emb.shape[-1], name='input_proj')(
        jnp.concatenate([y_emb, carry['context'].astype(y_emb.dtype)], -1))
    return y_emb, None, None

  def after(self, carry, new_carry, x, y_emb, context, weights, source, attend, dense, width):
    top = new_carry['layers'][-1]              # the query is the whole state s_t = (c_t, h_t)
    query = jnp.concatenate([top['c'], top['h']], -1) if 'c' in top else top['h']
    keys = source.get('keys', source.get('memory'))
    context, weights = attend(query, keys, source['memory'], source['mask'],
                              carry.get('coverage'))
    out = dense(width, name='output')(jnp.concatenate([x, context.astype(x.dtype)], -1))
    new_carry['context'] = context
    return out, context, weights


def _deep_output(dense, width, state, y_emb, context):
  """Deep output from a state, the previous word and the context (Bahdanau App. A.2.2 reads
  s_{i-1}; Cho et al. Sec. 2.2 read h_t)."""
  return (dense(width, name='readout_state')(state)
          + dense(width, use_bias=False, name='readout_embed')(y_emb)
          + dense(width, use_bias=False, name='readout_context')(context))


@functools.lru_cache(maxsize=None)
def scan_decoder(family: str, remat: str):
  """The decoder cell of `family` scanned over time (teacher forcing; one step in decoding)."""
  # Attention weights sown at each step stack along time (axis 1), as the outputs do.
  return nn.scan(layers.remat(DECODERS.get(family), remat), variable_broadcast='params',
                 variable_axes={'intermediates': 1},
                 split_rngs={'params': False, 'dropout': True},
                 in_axes=(1, nn.broadcast), out_axes=1)
