"""Recurrent cells (`model.cell`): a registry CELLS of fused-gate cells chosen by name.

  'lstm'  Zaremba et al. 2014, Sec. 3 (the LSTM Luong et al. use): c' = s(f) c + s(i) tanh(g),
          h' = s(o) tanh(c') with [i f g o] = W x + U h + b
  'gru'   Cho et al. 2014, Eq. 5-8: r, z = s(W x + U h + b); h~ = tanh(W x + U (r * h) + b);
          h' = z * h + (1 - z) * h~

Cells have one bias per gate (an LSTM layer: 4 * (h * (in + h) + h) parameters; cuDNN keeps two
bias vectors, 4h more, for the same function) and no peepholes (Sutskever et al. cite Graves
2013, whose LSTM has 3h peephole weights per layer: 24k of their 384M). The GRU applies the
reset gate before the recurrent product, U (r * h), as Cho et al. 2014 (Eq. 8) and Bahdanau
et al. (App. A.2.2) write it, not after it as cuDNN does.

A new cell is a subclass of `_Cell` with `num_gates`, `state_keys` and a pure `recurrence`
(u, carry, xw, dtype) -> carry, registered with `@CELLS.register('name')`.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.models import layers
from seq2seq_jax.models.registry import Registry

CELLS = Registry('model.cell')


def _matmul(x: jax.Array, w: jax.Array, dtype) -> jax.Array:
  return jnp.dot(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


def _orthogonal_blocks(n: int) -> Callable:
  """Orthogonal init (Saxe et al. 2014) for each gate's [h, h] block of a fused kernel."""
  def init(key, shape, dtype=jnp.float32):
    rows, cols = shape
    blocks = [nn.initializers.orthogonal()(k, (rows, cols // n), dtype)
              for k in jax.random.split(key, n)]
    return jnp.concatenate(blocks, axis=1)
  return init


def lstm_step(u: jax.Array, carry: dict[str, jax.Array], xw: jax.Array,
              dtype) -> dict[str, jax.Array]:
  """c' = s(f) c + s(i) tanh(g), h' = s(o) tanh(c') with [i f g o] = xw + U h, xw = W x + b."""
  z = xw + _matmul(carry['h'], u, dtype)
  i, f, g, o = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f) * carry['c'] + jax.nn.sigmoid(i) * jnp.tanh(g)
  return {'c': c, 'h': jax.nn.sigmoid(o) * jnp.tanh(c)}


def gru_step(u: jax.Array, carry: dict[str, jax.Array], xw: jax.Array,
             dtype) -> dict[str, jax.Array]:
  """r, z = s(xw_rz + U_rz h); h~ = tanh(xw_n + U_n (r * h)); h' = z * h + (1 - z) * h~."""
  h = carry['h']
  n = h.shape[-1]
  xr, xz, xn = jnp.split(xw, 3, axis=-1)
  rz = _matmul(h, u[:, :2 * n], dtype)
  r = jax.nn.sigmoid(xr + rz[:, :n])
  z = jax.nn.sigmoid(xz + rz[:, n:])
  candidate = jnp.tanh(xn + _matmul(r * h, u[:, 2 * n:], dtype))
  return {'h': z * h + (1.0 - z) * candidate}


class _Cell(nn.Module):
  """A fused-gate recurrent cell split in two: `project` (the input part of every gate, W x + b,
  one matmul over a whole sequence in the encoder) and `step` (the recurrence, `recurrence`
  applied to the recurrent kernel U: a pure function, so a scan can run several cells)."""
  hidden: int
  in_features: int
  init_fn: Callable | None = None
  dtype: Any = jnp.float32
  num_gates = 0
  state_keys = ()   # the carry's entries, each [B, hidden]
  recurrence = None  # set by each cell class: a pure function (u, carry, xw, dtype) -> carry

  def setup(self):
    g = self.num_gates * self.hidden
    self.input_kernel = self.param('input_kernel', layers.partitioned(
        self.init_fn or layers.xavier(1, fused=self.num_gates), ('embed', 'gates')),
                                   (self.in_features, g), jnp.float32)
    self.recurrent_kernel = self.param('recurrent_kernel', layers.partitioned(
        self.init_fn or _orthogonal_blocks(self.num_gates), ('hidden', 'gates')),
                                       (self.hidden, g), jnp.float32)
    self.bias = self.param('bias', layers.partitioned(
        self.init_fn or nn.initializers.zeros_init(), ('gates',)), (g,), jnp.float32)

  def project(self, x: jax.Array) -> jax.Array:
    return _matmul(x, self.input_kernel, self.dtype) + self.bias

  def step(self, carry: dict[str, jax.Array], xw: jax.Array) -> dict[str, jax.Array]:
    return type(self).recurrence(self.recurrent_kernel, carry, xw, self.dtype)

  def __call__(self, carry, x):
    return self.step(carry, self.project(x))


@CELLS.register('lstm')
class LSTMCell(_Cell):
  """c' = s(f) c + s(i) tanh(g), h' = s(o) tanh(c') with [i f g o] = W x + U h + b
  (the LSTM of Zaremba et al. 2014, Sec. 3, used by Luong et al.)."""
  num_gates = 4
  state_keys = ('c', 'h')
  recurrence = staticmethod(lstm_step)


@CELLS.register('gru')
class GRUCell(_Cell):
  """Cho et al. 2014, Eq. 5-8: r, z = s(W x + U h + b); h~ = tanh(W x + U (r * h) + b);
  h' = z * h + (1 - z) * h~."""
  num_gates = 3
  state_keys = ('h',)
  recurrence = staticmethod(gru_step)


def make_cell(kind: str, hidden: int, in_features: int, init_fn, dtype, name: str) -> _Cell:
  """The cell registered as `kind`, as submodule `name`."""
  return CELLS.build(kind, hidden=hidden, in_features=in_features, init_fn=init_fn,
                     dtype=dtype, name=name)


def zero_carry(kind: str, batch: int, hidden: int) -> dict[str, jax.Array]:
  """The all-zero float32 state of cell `kind`: {'c', 'h'} for LSTM, {'h'} for GRU."""
  z = jnp.zeros((batch, hidden), jnp.float32)
  return {k: z for k in CELLS.get(kind).state_keys}
