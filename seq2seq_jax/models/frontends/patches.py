"""'patches': ViT's patchify (Dosovitskiy et al. 2021, Eq. 1)."""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import layers
from seq2seq_jax.models.frontends import FRONTENDS


def check_image(inputs: jax.Array, name: str) -> None:
  if inputs.ndim != 4 or not jnp.issubdtype(inputs.dtype, jnp.floating):
    raise UserError(f"model.frontend '{name}' reads float images [batch, height, width, "
                    f'channels]; got {inputs.dtype} {inputs.shape}')


@FRONTENDS.register('patches')
class Patches(nn.Module):
  """Images [B, H, W, C] -> non-overlapping P x P patches, each projected to D (one dense map
  per patch: a P x P stride-P convolution), plus a learned position per patch;
  S' = (H / P) (W / P), no padding. The model adds no positions of its own (own_positions)."""
  features: int
  patch_size: int = 16
  dtype: Any = jnp.float32
  init_fn: Callable | None = None

  reads = ('image',)
  own_positions = True

  def check(self) -> None:
    if self.patch_size < 1:
      raise UserError(f'model.frontend.patch_size must be >= 1, got {self.patch_size}')

  def grid(self, height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of patches for height x width images, in output order."""
    return height // self.patch_size, width // self.patch_size

  @nn.compact
  def __call__(self, inputs, inputs_mask=None, train: bool = False):
    del inputs_mask, train
    check_image(inputs, 'patches')
    p = self.patch_size
    b, h, w, c = inputs.shape
    if h % p or w % p:
      raise UserError(f'images of {h} x {w} pixels do not divide into patches of '
                      f'model.frontend.patch_size={p}')
    patches = inputs.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(b, (h // p) * (w // p), p * p * c)
    x = layers.dense(self.features, (None, 'embed'), dtype=self.dtype, init=self.init_fn,
                     name='embedding')(patches)
    pos = self.param('pos_embedding', layers.partitioned(
        self.init_fn or nn.initializers.normal(0.02), (None, 'embed')),
                     (x.shape[1], self.features), jnp.float32)
    x = x + pos.astype(x.dtype)
    return x, jnp.ones(x.shape[:2], bool)
