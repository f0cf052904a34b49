"""Audio frontends: 'log_mel' (an RNN listener's input) and 'audio_conv' (the conv subsampler).

Audio features of waveforms, computed inside the jitted step (models/audio.py): num_mels-bin
log-mel filterbanks (25 ms windows, 10 ms hop), normalised per utterance (each bin to zero
mean and unit variance over the utterance's real frames), then in training SpecAugment with
the policy `spec_augment` = (frequency masks, F, time masks, T, p) (() = off; default the
LibriSpeech basic policy (2, 27, 2, 100, 1.0)), drawn from the 'dropout' RNG stream, which the
train step folds with the step number, so a resumed run draws the same masks. `vtlp` = (lo, hi)
adds vocal tract length perturbation in training (Jaitly and Hinton 2013; () = off, the
default): each utterance's log-mel filters read a frequency axis warped by alpha ~ U[lo, hi]
(models/audio.py), drawn from the same stream. `speed` = (lo, hi) adds speed perturbation in
training (Ko et al. 2015; () = off, the default): each utterance's waveform is played at a
factor s ~ U[lo, hi] before its features (models/audio.py: speed_perturb), from the same stream.

Padding never changes results: masked frames are zeroed before every convolution and the
convolutions pad explicitly on both sides, so a real output frame sees exactly what it would
see in an unpadded batch.
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import audio
from seq2seq_jax.models import layers
from seq2seq_jax.models.frontends import FRONTENDS
from seq2seq_jax.models.frontends.conv import Conv3x3

LIBRISPEECH_BASIC = (2, 27, 2, 100, 1.0)   # SpecAugment LB (Park et al. 2019, Table 1)


def subsampled_mask(mask: jax.Array) -> jax.Array:
  """The frame mask after one stride-2, kernel-3, pad-1 convolution: floor((T - 1) / 2) + 1
  frames out, and an output frame is real iff its centre input frame (2 t) is."""
  return mask[:, ::2]


def check_factor_range(name: str, value, what: str) -> None:
  """A training setting (lo, hi) of factors drawn per row, or () for off; UserError naming
  `model.frontend.NAME` otherwise."""
  if value and (len(value) != 2 or not 0 < value[0] <= value[1]):
    raise UserError(f'model.frontend.{name} must be (low, high) {what}, 0 < low <= high, '
                    f'or (), got {tuple(value)}')


def perturb_speed(module: nn.Module, waveforms: jax.Array, lengths: jax.Array,
                  speed: Sequence[float]) -> tuple[jax.Array, jax.Array]:
  """Each row played at a factor ~ U[speed] from `module`'s 'dropout' stream
  (models/audio.py: speed_perturb): (waveforms, lengths)."""
  factors = jax.random.uniform(module.make_rng('dropout'), waveforms.shape[:1],
                               minval=speed[0], maxval=speed[1])
  return audio.speed_perturb(waveforms, lengths, factors)

def audio_features(module: nn.Module, waveforms: jax.Array, mask: jax.Array | None, *,
                   num_mels: int, spec_augment: Sequence[float], train: bool,
                   vtlp: Sequence[float] = (), speed: Sequence[float] = ()
                   ) -> tuple[jax.Array, jax.Array]:
  """Waveforms [B, N] (mask [B, N]) -> normalised log-mel frames [B, T, num_mels] float32
  (SpecAugment in training) and the frame mask [B, T]; see the module docstring."""
  if waveforms.ndim != 2 or not jnp.issubdtype(waveforms.dtype, jnp.floating):
    raise UserError('audio frontends read float waveforms [batch, samples] with inputs_mask; '
                    f'got {waveforms.dtype} {waveforms.shape}')
  lengths = (jnp.full(waveforms.shape[:1], waveforms.shape[1]) if mask is None
             else jnp.sum(mask, axis=1))
  if train and speed:
    waveforms, lengths = perturb_speed(module, waveforms, lengths, speed)
  warp = None
  if train and vtlp:
    warp = jax.random.uniform(module.make_rng('dropout'), waveforms.shape[:1],
                              minval=vtlp[0], maxval=vtlp[1])
  feats, fmask = audio.log_mel(waveforms, lengths, num_mels=num_mels, warp=warp)
  real = fmask[..., None].astype(jnp.float32)
  count = jnp.maximum(jnp.sum(real, axis=1, keepdims=True), 1.0)
  mean = jnp.sum(feats * real, axis=1, keepdims=True) / count
  var = jnp.sum(jnp.square(feats - mean) * real, axis=1, keepdims=True) / count
  feats = (feats - mean) * jax.lax.rsqrt(var + 1e-5) * real
  if train and spec_augment:
    fm, fw, tm, tw, p = spec_augment
    feats = audio.spec_augment(module.make_rng('dropout'), feats, fmask, freq_masks=int(fm),
                               freq_width=int(fw), time_masks=int(tm), time_width=int(tw),
                               time_ratio=float(p))
  return feats, fmask


class _AudioSettings:
  """The checks of the log-mel settings both audio frontends have."""

  def check(self) -> None:
    if self.num_mels < 1:
      raise UserError(f'model.frontend.num_mels must be >= 1, got {self.num_mels}')
    if self.spec_augment and len(self.spec_augment) != 5:
      raise UserError('model.frontend.spec_augment must be (freq_masks, F, time_masks, T, p) '
                      f'or (), got {tuple(self.spec_augment)}')
    check_factor_range('vtlp', self.vtlp, 'warp factors')
    check_factor_range('speed', self.speed, 'speed factors')

  def features_of(self, waveforms, mask, train: bool):
    return audio_features(self, waveforms, mask, num_mels=self.num_mels,
                          spec_augment=self.spec_augment, train=train, vtlp=self.vtlp,
                          speed=self.speed)


@FRONTENDS.register('log_mel')
class LogMel(_AudioSettings, nn.Module):
  """Waveforms [B, N] (16 kHz, float, inputs_mask [B, N] true on real samples) -> audio
  features projected to D, one vector per 10 ms frame: the input of an RNN listener (Listen,
  Attend and Spell reads filterbanks directly; the projection is a linear map before its first
  BLSTM)."""
  features: int
  num_mels: int = 80
  spec_augment: tuple[float, ...] = LIBRISPEECH_BASIC
  dtype: Any = jnp.float32
  init_fn: Callable | None = None
  vtlp: tuple[float, ...] = ()
  speed: tuple[float, ...] = ()

  reads = ('audio',)

  @nn.compact
  def __call__(self, inputs, inputs_mask=None, train: bool = False):
    feats, mask = self.features_of(inputs, inputs_mask, train)
    x = layers.dense(self.features, (None, 'embed'), dtype=self.dtype, init=self.init_fn,
                     name='project')(feats)
    return x * mask[..., None].astype(x.dtype), mask


@FRONTENDS.register('audio_conv')
class AudioConv(_AudioSettings, nn.Module):
  """Features [B, T, F] with inputs_mask [B, T], or waveforms [B, N] (their audio features
  first) -> two 3x3 convolutions over (time, frequency) with stride 2 (4x subsampling in
  both), channels and the remaining frequencies flattened and projected to D; the mask is
  subsampled with the frames (the conv subsampler of fairseq's speech-to-text Transformer,
  Wang et al. 2020, whose output lengths are floor((T - 1) / 2) + 1 per layer)."""
  features: int
  channels: int = 64
  dtype: Any = jnp.float32
  init_fn: Callable | None = None
  num_mels: int = 80
  spec_augment: tuple[float, ...] = LIBRISPEECH_BASIC
  vtlp: tuple[float, ...] = ()
  speed: tuple[float, ...] = ()

  reads = ('features', 'audio')

  def check(self) -> None:
    if self.channels < 1:
      raise UserError(f'model.frontend.channels must be >= 1, got {self.channels}')
    super().check()

  @nn.compact
  def __call__(self, inputs, inputs_mask=None, train: bool = False):
    if inputs.ndim == 2:   # waveforms: their audio features first
      inputs, inputs_mask = self.features_of(inputs, inputs_mask, train)
    if inputs.ndim != 3 or not jnp.issubdtype(inputs.dtype, jnp.floating):
      raise UserError("model.frontend 'audio_conv' reads float features [batch, frames, "
                      f'bins] or waveforms [batch, samples], with inputs_mask; got '
                      f'{inputs.dtype} {inputs.shape}')
    mask = (jnp.ones(inputs.shape[:2], bool) if inputs_mask is None
            else inputs_mask.astype(bool))
    x = inputs.astype(self.dtype)[..., None]                  # [B, T, F, 1]
    for i in range(2):
      # Zero the padded frames, then pad 1 on both sides explicitly: a real output frame t
      # reads input frames 2t-1..2t+1, which are real frames or zeros in any batch.
      x = x * mask[:, :, None, None].astype(x.dtype)
      x = Conv3x3(self.channels, strides=2, dtype=self.dtype, init_fn=self.init_fn,
                  name=f'conv_{i}')(x)
      x = nn.relu(x)
      mask = subsampled_mask(mask)
    b, t, f, c = x.shape
    x = x * mask[:, :, None, None].astype(x.dtype)
    x = layers.dense(self.features, (None, 'embed'), dtype=self.dtype, init=self.init_fn,
                     name='project')(x.reshape(b, t, f * c))
    return x, mask
