"""Recurrent cells and attention mechanisms for the RNN encoder-decoders.

Cells have fused gate kernels (one matmul for all gates). Attention follows
  Bahdanau et al. 2015 (additive; App. A.1.2): e_ij = v^T tanh(W s_{i-1} + U h_j)
  Luong et al. 2015 (Sec. 3.1, Eq. 8): dot s^T h, general s^T W h, concat v^T tanh(W[s; h])
Source-side projections (U h_j, W h_j) are computed once per sentence (`keys`), so the
per-step cost is one query projection.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.models import layers

ATTENTION_TYPES = ('none', 'bahdanau', 'dot', 'general', 'concat')


def _param(module: nn.Module, name: str, init: Callable, shape, names):
  return module.param(name, layers.partitioned(init, names), shape, jnp.float32)


class LSTMCell(nn.Module):
  """LSTM (Hochreiter & Schmidhuber 1997; gates as in Zaremba et al. 2014) with one bias
  per gate: 4 * (h * (in + h) + h) parameters."""
  hidden: int
  kernel_init: Callable = nn.initializers.xavier_uniform()
  recurrent_init: Callable = nn.initializers.orthogonal()
  bias_init: Callable = nn.initializers.zeros_init()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry, x):
    wi = _param(self, 'input_kernel', self.kernel_init, (x.shape[-1], 4 * self.hidden),
                ('embed', 'gates'))
    wh = _param(self, 'recurrent_kernel', _stacked(self.recurrent_init, 4),
                (self.hidden, 4 * self.hidden), ('hidden', 'gates'))
    b = _param(self, 'bias', self.bias_init, (4 * self.hidden,), ('gates',))
    z = x.astype(self.dtype) @ wi.astype(self.dtype) + carry['h'] @ wh.astype(self.dtype) + b
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * carry['c'] + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return {'c': c, 'h': h}


class GRUCell(nn.Module):
  """GRU (Cho et al. 2014, Eq. 5-8), reset gate applied after the recurrent product:
  3 * (h * (in + h) + h) parameters."""
  hidden: int
  kernel_init: Callable = nn.initializers.xavier_uniform()
  recurrent_init: Callable = nn.initializers.orthogonal()
  bias_init: Callable = nn.initializers.zeros_init()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry, x):
    wi = _param(self, 'input_kernel', self.kernel_init, (x.shape[-1], 3 * self.hidden),
                ('embed', 'gates'))
    wh = _param(self, 'recurrent_kernel', _stacked(self.recurrent_init, 3),
                (self.hidden, 3 * self.hidden), ('hidden', 'gates'))
    b = _param(self, 'bias', self.bias_init, (3 * self.hidden,), ('gates',))
    xi = x.astype(self.dtype) @ wi.astype(self.dtype) + b
    hh = carry['h'] @ wh.astype(self.dtype)
    xr, xz, xn = jnp.split(xi, 3, axis=-1)
    hr, hz, hn = jnp.split(hh, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return {'h': (1.0 - z) * n + z * carry['h']}


def _stacked(init: Callable, n: int) -> Callable:
  """Applies a square-matrix initialiser (e.g. orthogonal) to each gate block separately."""
  def wrapped(key, shape, dtype=jnp.float32):
    rows, cols = shape
    if cols % n or cols // n != rows:
      return init(key, shape, dtype)
    keys = jax.random.split(key, n)
    return jnp.concatenate([init(k, (rows, rows), dtype) for k in keys], axis=1)
  return wrapped


def zero_carry(kind: str, batch: int, hidden: int, dtype) -> dict[str, jax.Array]:
  """The all-zero state of a cell: {'c', 'h'} for LSTM, {'h'} for GRU."""
  z = jnp.zeros((batch, hidden), dtype)
  return {'c': z, 'h': z} if kind == 'lstm' else {'h': z}


def make_cell(kind: str, hidden: int, init: Callable | None, dtype) -> nn.Module:
  kw = {} if init is None else dict(kernel_init=init, recurrent_init=init, bias_init=init)
  if kind == 'lstm':
    return LSTMCell(hidden, dtype=dtype, **kw)
  if kind == 'gru':
    return GRUCell(hidden, dtype=dtype, **kw)
  raise ValueError(kind)


class Attention(nn.Module):
  """Scores a query against precomputed keys; returns (context, weights).

  keys: the source-side projections (U h_j for additive, W h_j for general, h_j for dot),
  computed once per sentence by the model.
  """
  kind: str                  # bahdanau | dot | general | concat
  query_dim: int
  attention_dim: int         # hidden size of the additive scorer
  init_fn: Callable | None = None
  dtype: Any = jnp.float32

  def _dense(self, features, names, use_bias, name):
    return layers.dense(features, names, use_bias=use_bias, dtype=self.dtype, init=self.init_fn,
                        name=name)

  @nn.compact
  def __call__(self, query, keys, memory, mask):
    if self.kind in ('bahdanau', 'concat'):
      q = self._dense(self.attention_dim, ('hidden', 'kv'), True, 'query_proj')(query)
      v = _param(self, 'v', self.init_fn or nn.initializers.normal(self.attention_dim ** -0.5),
                 (self.attention_dim,), ('kv',))
      scores = jnp.tanh(keys + q[:, None, :]) @ v.astype(self.dtype)
    else:  # dot, general: s^T h_j or s^T (W h_j)
      scores = jnp.einsum('bd,bsd->bs', query, keys)
    scores = jnp.where(mask, scores.astype(jnp.float32), layers.NEG_INF)
    weights = jax.nn.softmax(scores, axis=-1).astype(memory.dtype)
    return jnp.einsum('bs,bsd->bd', weights, memory), weights
