"""'whisper_conv': Whisper's encoder stem (Radford et al. 2022): log-mel, two 1-D convolutions.

Waveforms [B, N] (16 kHz, inputs_mask [B, N]) become Whisper's log-mel window [B, frames,
num_mels] (models/audio.py: whisper_log_mel, faster-whisper's features: the segment then
zeros up to `frames`, 3000 = 30 s); features [B, T, num_mels] given directly (a log-mel
computed elsewhere) are cut or padded with zeros to `frames` likewise. `frames=0` is a shorter
encoder context: the window is the batch's own padded length (with the speech task's
`data.second_buckets`, its bucket: a 4 s bucket reads 400 frames, 200 encoder positions instead
of 1,500), which Whisper was not trained on (docs/whisper.md measures what it costs). Then conv1 (kernel 3,
padding 1) and GELU, conv2 (kernel 3, stride 2, padding 1) and GELU, both with the exact
(erf) GELU: frames / 2 output vectors. The model adds its sinusoidal positions.

Whisper attends to the whole window, zeros included, so every output position is real (the
mask is all true): padding a batch never changes a row's result, because each row's log-mel
reads only its own real samples (its length from inputs_mask) and the rest of its window is
zeros whatever the batch holds.

`spec_augment` = (frequency masks, F, time masks, T, p), () = off (the default): SpecAugment
(Park et al. 2019; models/audio.py) on the log-mel in training only, over the segment's own
frames (n // 160 of a waveform; every given frame of features), masked bins and frames set to
0, the value of the window's padding. A training setting: a pretrained checkpoint's frontend
may take it (pretrained/checkpoints.py). `vtlp` = (lo, hi), () = off (the default): vocal tract
length perturbation in training only (Jaitly and Hinton 2013; models/audio.py: vtlp_warp), each
row's mel filters reading a frequency axis warped by alpha ~ U[lo, hi] (a waveform input only:
a given log-mel is read as it is); a training setting like `spec_augment`. `speed` = (lo, hi),
() = off (the default): speed perturbation in training only (Ko et al. 2015;
models/audio.py: speed_perturb), each row's waveform played at a factor s ~ U[lo, hi] (tempo
and pitch; a waveform input only), before the log-mel. All three draw from the 'dropout' RNG
stream, which the train step folds with the step number, so a resumed run draws the same.

Parameters: conv1/kernel [3, num_mels, D], conv2/kernel [3, D, D] (PyTorch's Conv1d weight
[out, in, k] transposed), each with a bias.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import audio
from seq2seq_jax.models import layers
from seq2seq_jax.models.frontends import FRONTENDS
from seq2seq_jax.models.frontends import audio as audio_frontends


def _lengths(inputs: jax.Array, inputs_mask: jax.Array | None) -> jax.Array:
  """[B] real samples (or frames) of each row: its mask's count, or the whole row."""
  if inputs_mask is None:
    return jnp.full(inputs.shape[:1], inputs.shape[1])
  return jnp.sum(inputs_mask.astype(jnp.int32), axis=1)


class Conv1d(nn.Module):
  """A kernel-3, padding-1 convolution over time (+ bias), as one matmul over the three
  shifted views (im2col); `strides` 2 keeps every other output frame."""
  channels: int
  strides: int = 1
  dtype: Any = jnp.float32
  init_fn: Callable | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    kernel = self.param('kernel', layers.partitioned(
        self.init_fn or nn.initializers.lecun_normal(), (None, None, 'embed')),
                        (3, cin, self.channels), jnp.float32)
    bias = self.param('bias', layers.partitioned(nn.initializers.zeros_init(), ('embed',)),
                      (self.channels,), jnp.float32)
    t = x.shape[1]
    xp = jnp.pad(x.astype(self.dtype), ((0, 0), (1, 1), (0, 0)))
    out_t = (t - 1) // self.strides + 1
    views = [xp[:, k:k + self.strides * (out_t - 1) + 1:self.strides] for k in range(3)]
    y = jnp.einsum('btkc,kcd->btd', jnp.stack(views, axis=2), kernel.astype(self.dtype))
    return y + bias.astype(self.dtype)


@FRONTENDS.register('whisper_conv')
class WhisperConv(nn.Module):
  """Whisper's log-mel and conv stem (see the module docstring)."""
  features: int
  num_mels: int = 80
  frames: int = 3000
  spec_augment: tuple[float, ...] = ()
  vtlp: tuple[float, ...] = ()
  dtype: Any = jnp.float32
  init_fn: Callable | None = None
  speed: tuple[float, ...] = ()

  reads = ('audio', 'features')

  def check(self) -> None:
    if self.num_mels < 1 or self.frames < 0 or self.frames == 1 or self.frames % 2:
      raise UserError('model.frontend whisper_conv needs num_mels >= 1 and frames even: 0 (the '
                      f'batch\'s own length) or >= 2, got {self.num_mels} and {self.frames}')
    if self.spec_augment and len(self.spec_augment) != 5:
      raise UserError('model.frontend.spec_augment must be (freq_masks, F, time_masks, T, p) '
                      f'or (), got {tuple(self.spec_augment)}')
    audio_frontends.check_factor_range('vtlp', self.vtlp, 'warp factors')
    audio_frontends.check_factor_range('speed', self.speed, 'speed factors')

  def window(self, samples_or_frames: int, waveform: bool) -> int:
    """The log-mel frames the encoder reads: `frames`, or with frames=0 the batch's own
    length (its padded samples / 160, rounded up to even: a shorter encoder context)."""
    if self.frames:
      return self.frames
    t = -(-samples_or_frames // audio.WHISPER_HOP) if waveform else samples_or_frames
    return max(2, t + t % 2)

  def log_mel(self, inputs: jax.Array, inputs_mask: jax.Array | None = None,
              warp: jax.Array | None = None) -> jax.Array:
    """The log-mel window [B, frames, num_mels] float32 of waveforms or features (`warp`:
    VTLP factors [B] for waveforms, or None)."""
    if inputs.ndim == 2:
      return audio.whisper_log_mel(inputs, _lengths(inputs, inputs_mask),
                                   num_mels=self.num_mels,
                                   frames=self.window(inputs.shape[1], True), warp=warp)
    if inputs.ndim != 3 or inputs.shape[-1] != self.num_mels:
      raise UserError(f"model.frontend 'whisper_conv' reads waveforms [batch, samples] or "
                      f'log-mel [batch, frames, {self.num_mels}]; got {inputs.shape}')
    x = inputs.astype(jnp.float32)
    if inputs_mask is not None:
      x = x * inputs_mask[..., None].astype(x.dtype)
    t, frames = x.shape[1], self.window(x.shape[1], False)
    return x[:, :frames] if t >= frames else jnp.pad(x, ((0, 0), (0, frames - t), (0, 0)))

  def segment_mask(self, inputs: jax.Array, inputs_mask: jax.Array | None,
                   frames: int) -> jax.Array:
    """[B, frames]: true on the log-mel frames of the segment itself (not the window's
    zeros)."""
    n = _lengths(inputs, inputs_mask)
    if inputs.ndim == 2:
      n = n // audio.WHISPER_HOP
    return jnp.arange(frames)[None] < n[:, None]

  def augment(self, key: jax.Array, log_mel: jax.Array, inputs: jax.Array,
              inputs_mask: jax.Array | None = None) -> jax.Array:
    """SpecAugment (`spec_augment`) of the log-mel window of `inputs`."""
    fm, fw, tm, tw, p = self.spec_augment
    return audio.spec_augment(key, log_mel, self.segment_mask(inputs, inputs_mask,
                                                              log_mel.shape[1]),
                              freq_masks=int(fm), freq_width=int(fw), time_masks=int(tm),
                              time_width=int(tw), time_ratio=float(p))

  @nn.compact
  def __call__(self, inputs, inputs_mask=None, train: bool = False):
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
      raise UserError(f"model.frontend 'whisper_conv' reads float inputs, got {inputs.dtype}")
    if train and self.speed and inputs.ndim == 2:
      inputs, lengths = audio_frontends.perturb_speed(self, inputs, _lengths(inputs, inputs_mask),
                                                      self.speed)
      inputs_mask = jnp.arange(inputs.shape[1])[None] < lengths[:, None]
    warp = None
    if train and self.vtlp and inputs.ndim == 2:
      warp = jax.random.uniform(self.make_rng('dropout'), inputs.shape[:1],
                                minval=self.vtlp[0], maxval=self.vtlp[1])
    x = self.log_mel(inputs, inputs_mask, warp)
    if train and self.spec_augment:
      x = self.augment(self.make_rng('dropout'), x, inputs, inputs_mask)
    gelu = lambda h: nn.gelu(h, approximate=False)
    x = gelu(Conv1d(self.features, dtype=self.dtype, init_fn=self.init_fn, name='conv1')(x))
    x = gelu(Conv1d(self.features, strides=2, dtype=self.dtype, init_fn=self.init_fn,
                    name='conv2')(x))
    return x, jnp.ones(x.shape[:2], bool)
