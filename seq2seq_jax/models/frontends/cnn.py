"""'cnn': a small conv net's feature grid as the annotation vectors."""
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import layers
from seq2seq_jax.models.frontends import FRONTENDS
from seq2seq_jax.models.frontends.conv import Conv3x3, max_pool_2x2
from seq2seq_jax.models.frontends.patches import check_image


@FRONTENDS.register('cnn')
class Cnn(nn.Module):
  """Images [B, H, W, C] -> conv stages (3x3 conv + ReLU, then 2x2 max pool), one per entry of
  `channels`; the last feature grid, flattened row by row, is the sequence of annotation
  vectors (Xu et al. 2015, Show, Attend and Tell, Sec. 3.1.1: L = 14 x 14 vectors of a conv
  layer), projected to D. With `columns=True` each column of the last grid is one vector (its
  rows' features concatenated, as CRNN reads text lines: Shi et al. 2017), so a line of text
  or digits becomes a left-to-right sequence W / 2^stages long. No padding."""
  features: int
  channels: tuple[int, ...] = (32, 64, 128)
  dtype: Any = jnp.float32
  init_fn: Callable | None = None
  columns: bool = False

  reads = ('image',)

  def check(self) -> None:
    if not self.channels or min(self.channels) < 1:
      raise UserError(f'model.frontend.channels must be positive sizes, got {self.channels}')

  def grid(self, height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of the annotation grid for height x width images, in output order
    (one row of columns with `columns`)."""
    for _ in self.channels:
      height, width = height // 2, width // 2
    return (1 if self.columns else height), width

  @nn.compact
  def __call__(self, inputs, inputs_mask=None, train: bool = False):
    del inputs_mask, train
    check_image(inputs, 'cnn')
    x = inputs.astype(self.dtype)
    for i, ch in enumerate(self.channels):
      x = Conv3x3(ch, dtype=self.dtype, init_fn=self.init_fn, name=f'conv_{i}')(x)
      x = max_pool_2x2(nn.relu(x))
    b, gh, gw, ch = x.shape
    if gh * gw == 0:
      raise UserError(f'images of {inputs.shape[1]} x {inputs.shape[2]} pixels are too small '
                      f'for {len(self.channels)} pooling stages of model.frontend.channels')
    if self.columns:   # [B, gw, gh * ch]: column j is rows 0..gh-1 of grid column j
      x = x.transpose(0, 2, 1, 3).reshape(b, gw, gh * ch)
    else:
      x = x.reshape(b, gh * gw, ch)
    x = layers.dense(self.features, (None, 'embed'), dtype=self.dtype, init=self.init_fn,
                     name='project')(x)
    return x, jnp.ones(x.shape[:2], bool)
