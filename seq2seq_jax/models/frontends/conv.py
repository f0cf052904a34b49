"""The convolutions the conv frontends share (cnn.py, audio.py), written for XLA:CPU speed."""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.models import layers


class Conv3x3(nn.Module):
  """A 3x3 convolution (+ bias) computed as one matmul over shifted views (im2col).

  The kernel [3, 3, in, out] and bias are nn.Conv's, so it is the same function with the same
  parameters; what differs is the computation: the input is padded once, its 9 shifted (and,
  with stride 2, subsampled) views are concatenated along the channels, and one
  [pixels, 9 in] x [9 in, out] matmul gives every output. On XLA:CPU the training step of the
  digit-strip cnn frontend runs 3.6x faster this way than with lax.conv_general_dilated and
  reduce_window pooling (benchmarks/frontend_conv.py); the backward pass of a slice is a pad,
  which is cheap everywhere. Kernel and bias carry no split axis: the small conv stacks here are
  cheaper replicated; the projection to the model width carries 'embed'.
  """
  channels: int
  strides: int = 1
  padding: tuple[tuple[int, int], tuple[int, int]] = ((1, 1), (1, 1))  # 'SAME' for stride 1
  dtype: Any = jnp.float32
  init_fn: Callable | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    kernel = self.param('kernel', layers.partitioned(
        self.init_fn or nn.initializers.lecun_normal(), (None, None, None, None)),
                        (3, 3, cin, self.channels), jnp.float32)
    bias = self.param('bias', layers.partitioned(nn.initializers.zeros_init(), (None,)),
                      (self.channels,), jnp.float32)
    s = self.strides
    (top, bottom), (left, right) = self.padding
    xp = jnp.pad(x.astype(self.dtype), ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh = (xp.shape[1] - 3) // s + 1
    ow = (xp.shape[2] - 3) // s + 1
    views = [xp[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s, :]
             for i in range(3) for j in range(3)]
    cols = jnp.concatenate(views, axis=-1)                    # [B, oh, ow, 9 in]
    y = jnp.dot(cols, kernel.reshape(9 * cin, self.channels).astype(self.dtype),
                preferred_element_type=jnp.float32)
    return (y + bias).astype(self.dtype)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max pooling, stride 2, 'VALID' (an odd last row or column is dropped), as a reshape
  and a max: the same values as nn.max_pool, and a backward pass XLA:CPU runs far faster
  than reduce_window's select-and-scatter."""
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
