"""Bridges (`model.bridge`): the decoder's initial state from the encoder's final states.

  'none'    zeros
  'final'   the encoder's final states layer by layer ([h_N forward; h_1 backward] if
            bidirectional; Sutskever et al. 2014)
  'dense'   tanh(W h), h = h_1 backward (Bahdanau App. A.2.2; h_N forward if unidirectional)
            of the encoder layer at the same height counted from the top (the bottom one for
            extra decoder layers), or h = c with feed_context (Cho et al. 2014, App. A); LSTM
            memory cells start at 0
  'reduce'  ReLU(W [fwd; bwd] + b) of the final c and of the final h, each with its own W
            (See et al. 2017's code: "reduce_final_st")

A bridge is a dataclass registered in BRIDGES: `modules` gives the model the layers it owns (as
model attributes, so their parameters sit at the model's top level), `state` one decoder
layer's initial state.
"""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import layers
from seq2seq_jax.models.registry import Registry
from seq2seq_jax.models.rnn.cells import zero_carry

BRIDGES = Registry('model.bridge')


def _both(fwd, bwd):
  """A layer's final state, [forward; backward] when bidirectional."""
  return fwd if bwd is None else jax.tree.map(lambda a, b: jnp.concatenate([a, b], -1), fwd, bwd)


def _from_top(m: Any, finals, i: int):
  """Stacks aligned at the top: decoder layer i reads this encoder layer's final states."""
  return finals[max(0, i + m.encoder_layers - m.decoder_layers)]


@BRIDGES.register('none')
@dataclasses.dataclass(frozen=True)
class ZeroBridge:
  attr = None   # the model attribute holding the bridge's layers

  def check(self, m: Any) -> None:
    pass

  def modules(self, m: Any, dtype, init) -> Any:
    return None

  def state(self, m: Any, i: int, finals, source, zero):
    return zero


@BRIDGES.register('final')
@dataclasses.dataclass(frozen=True)
class FinalBridge(ZeroBridge):

  def check(self, m):
    if m.encoder_layers != m.decoder_layers or m.dec_hidden != m.enc_out:
      raise UserError(f"bridge='final' needs encoder_layers == decoder_layers and "
                      f'decoder_hidden_dim == the encoder output size ({m.enc_out})')

  def state(self, m, i, finals, source, zero):
    return _both(*finals[i])


@BRIDGES.register('dense')
@dataclasses.dataclass(frozen=True)
class DenseBridge(ZeroBridge):
  attr = 'bridge_proj'

  def modules(self, m, dtype, init):
    return [layers.dense(m.dec_hidden, ('hidden', 'embed'), dtype=dtype, init=init)
            for _ in range(m.decoder_layers)]

  def state(self, m, i, finals, source, zero):
    fwd, bwd = _from_top(m, finals, i)
    h = source['context'] if 'context' in source else (fwd if bwd is None else bwd)['h']
    return {**zero, 'h': jnp.tanh(m.bridge_proj[i](h)).astype(jnp.float32)}


@BRIDGES.register('reduce')
@dataclasses.dataclass(frozen=True)
class ReduceBridge(ZeroBridge):
  attr = 'reduce_proj'

  def modules(self, m, dtype, init):
    return [{k: layers.dense(m.dec_hidden, ('hidden', 'embed'), dtype=dtype, init=init)
             for k in zero_carry(m.cell, 1, 1)} for _ in range(m.decoder_layers)]

  def state(self, m, i, finals, source, zero):   # See et al. 2017: ReLU(W [fwd; bwd] + b)
    both = _both(*_from_top(m, finals, i))
    return {k: jax.nn.relu(m.reduce_proj[i][k](v)).astype(jnp.float32) for k, v in both.items()}
