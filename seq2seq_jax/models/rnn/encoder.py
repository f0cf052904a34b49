"""The recurrent encoder's parts: a (bi)directional layer, source reversal and the pyramid.

Padding never changes results: encoder carries freeze on padded steps (the final state is the
state at the last real token), the backward direction starts at each sentence's last real
token. The input part of every gate is one matmul over the whole sentence; both directions
advance in one scan step.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.models import layers
from seq2seq_jax.models.rnn.cells import make_cell, zero_carry


def reverse_valid(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Reverses the first lengths[b] positions of each row of x [B, T, ...]; padding stays."""
  t = jnp.arange(x.shape[1])[None, :]
  idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def pyramid_halve(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """LAS's pyramid step (Chan et al. 2016, Eq. 5): x [B, T, D] -> [B, ceil(T / 2), 2D], steps
  2i and 2i+1 side by side; a pair is real iff its first step is (padded steps are zeros, so an
  odd last step pairs with zeros whatever the batch's padding)."""
  b, t, d = x.shape
  x = x * mask[..., None].astype(x.dtype)
  if t % 2:
    x = jnp.pad(x, ((0, 0), (0, 1), (0, 0)))
    mask = jnp.pad(mask, ((0, 0), (0, 1)))
  return x.reshape(b, (t + t % 2) // 2, 2 * d), mask[:, ::2]


class EncoderLayer(nn.Module):
  """One (bi)directional layer: x [B, S, in] -> outputs [B, S, H or 2H], final carries.

  Both directions run in one scan over time (each step advances the forward cell at t and the
  backward cell at S-1-t of the reversed sentence): half the sequential steps of two scans.
  The input part of every gate, W x + b, is one matmul over the whole sentence per direction.
  """
  cell: str
  hidden: int
  in_features: int
  bidirectional: bool
  init_fn: Callable | None
  dtype: Any
  remat: str = 'none'

  @nn.compact
  def __call__(self, x, mask, lengths):
    zero = zero_carry(self.cell, x.shape[0], self.hidden)
    # Backward: read each sentence from its last real token. Reversing the real tokens keeps
    # padding at the end, so the same mask applies; the outputs are reversed back.
    inputs = [x, reverse_valid(x, lengths)] if self.bidirectional else [x]
    cells = [make_cell(self.cell, self.hidden, self.in_features, self.init_fn, self.dtype, name)
             for name in ('fwd', 'bwd')[:len(inputs)]]
    xws = tuple(jnp.swapaxes(c.project(v), 0, 1) for c, v in zip(cells, inputs))  # [S, B, G]
    kernels = tuple(c.recurrent_kernel for c in cells)
    recurrence, dtype = type(cells[0]).recurrence, self.dtype

    def step(carries, step_inputs):
      # On padding (m False) a carry stays and the output is 0.
      xw_t, m = step_inputs
      keep = m[:, None]
      new = tuple(jax.tree.map(lambda n, o: jnp.where(keep, n, o),
                               recurrence(u, carry, xw, dtype), carry)
                  for u, carry, xw in zip(kernels, carries, xw_t))
      return new, tuple(c['h'] * keep for c in new)

    # Remat of one step keeps only the carries per time step; the gates are recomputed.
    finals, outs = jax.lax.scan(layers.remat_fn(step, self.remat), (zero,) * len(cells),
                                (xws, mask.T))
    outs = [jnp.swapaxes(o, 0, 1) for o in outs]
    if not self.bidirectional:
      return outs[0], (finals[0], None)
    return jnp.concatenate([outs[0], reverse_valid(outs[1], lengths)], -1), finals
