"""Encoder frontends: every input becomes a sequence of vectors with a mask.

`model.frontend` picks one; both the Transformer and the RNN run their encoder on its output,
so the encoder-decoder, the steps, decoding and sharding are the same code for text, pixels and
audio. Every frontend is called as

  frontend(inputs, inputs_mask=None, train=False) -> (x [B, S', D] compute dtype, mask [B, S'])

  'tokens'      int32 ids [B, S] (0 = padding) -> the embedding table's rows; mask ids > 0.
  'patches'     images [B, H, W, C] -> non-overlapping P x P patches, each projected to D,
                plus a learned position per patch (Dosovitskiy et al. 2021, ViT, Eq. 1);
                S' = (H / P) (W / P), no padding.
  'cnn'         images [B, H, W, C] -> a small conv net (3x3 conv + ReLU, 2x2 max pool per
                stage); its last feature grid, flattened row by row, is the sequence of
                annotation vectors (Xu et al. 2015, Show, Attend and Tell, Sec. 3.1.1:
                L = 14 x 14 vectors of a conv layer), projected to D. With
                `cnn_columns=True` each column of the last grid is one vector (its rows'
                features concatenated, as CRNN reads text lines: Shi et al. 2017), so a
                line of text or digits becomes a left-to-right sequence W / 2^stages long.
  'log_mel'     waveforms [B, N] (16 kHz, float, inputs_mask [B, N] true on real samples) ->
                audio features (below) projected to D, one vector per 10 ms frame: the input
                of an RNN listener (Listen, Attend and Spell reads filterbanks directly; the
                projection is a linear map before its first BLSTM).
  'audio_conv'  features [B, T, F] with inputs_mask [B, T], or waveforms [B, N] (their audio
                features, below) -> two 3x3 convolutions over
                (time, frequency) with stride 2 (4x subsampling in both), channels and the
                remaining frequencies flattened and projected to D; the mask is subsampled
                with the frames (the conv subsampler of fairseq's speech-to-text Transformer,
                Wang et al. 2020, whose output lengths are floor((T - 1) / 2) + 1 per layer).

Audio features of waveforms, computed inside the jitted step (models/audio.py): num_mels-bin
log-mel filterbanks (25 ms windows, 10 ms hop), normalised per utterance (each bin to zero
mean and unit variance over the utterance's real frames), then in training SpecAugment with
the policy `spec_augment` = (frequency masks, F, time masks, T, p) (() = off; default the
LibriSpeech basic policy (2, 27, 2, 100, 1.0)), drawn from the 'dropout' RNG stream, which the
train step folds with the step number, so a resumed run draws the same masks. `vtlp` = (lo, hi)
adds vocal tract length perturbation in training (Jaitly and Hinton 2013; () = off, the
default): each utterance's log-mel filters read a frequency axis warped by alpha ~ U[lo, hi]
(models/audio.py), drawn from the same stream.

Padding never changes results: masked frames are zeroed before every convolution and the
convolutions pad explicitly on both sides, so a real output frame sees exactly what it would
see in an unpadded batch; nothing normalises over the batch. Parameters carry logical axis
names ('embed' for the model width, None for spatial/frequency/channel axes that no rule
splits), so sharding rules apply to them as to everything else.
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import layers

FRONTENDS = ('tokens', 'patches', 'cnn', 'audio_conv', 'log_mel')
# Which inputs each frontend reads: 'tokens' int32 [B, S]; 'image' float [B, H, W, C];
# 'features' float [B, T, F] with inputs_mask; 'audio' float waveforms [B, N] with inputs_mask.
INPUT_KIND = {'tokens': ('tokens',), 'patches': ('image',), 'cnn': ('image',),
              'audio_conv': ('features', 'audio'), 'log_mel': ('audio',)}
LIBRISPEECH_BASIC = (2, 27, 2, 100, 1.0)   # SpecAugment LB (Park et al. 2019, Table 1)


class Tokens(layers.Embed):
  """The token embedding as a frontend; `embed` looks ids up, `attend` gives tied logits."""

  def __call__(self, inputs: jax.Array, inputs_mask: jax.Array | None = None,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    del inputs_mask, train  # the ids carry their own padding (0)
    return self.embed(inputs), inputs > 0


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


def _check_image(inputs: jax.Array, name: str) -> None:
  if inputs.ndim != 4 or not jnp.issubdtype(inputs.dtype, jnp.floating):
    raise UserError(f"model.frontend='{name}' reads float images [batch, height, width, "
                    f'channels]; got {inputs.dtype} {inputs.shape}')


class Patches(nn.Module):
  """ViT patchify: a P x P stride-P convolution (one dense map per patch) + learned positions."""
  features: int
  patch_size: int = 16
  dtype: Any = jnp.float32
  init_fn: Callable | None = None

  @nn.compact
  def __call__(self, inputs, inputs_mask=None, train: bool = False):
    del inputs_mask, train
    _check_image(inputs, 'patches')
    p = self.patch_size
    b, h, w, c = inputs.shape
    if h % p or w % p:
      raise UserError(f'images of {h} x {w} pixels do not divide into patches of '
                      f'model.patch_size={p}')
    patches = inputs.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(b, (h // p) * (w // p), p * p * c)
    x = layers.dense(self.features, (None, 'embed'), dtype=self.dtype, init=self.init_fn,
                     name='embedding')(patches)
    pos = self.param('pos_embedding', layers.partitioned(
        self.init_fn or nn.initializers.normal(0.02), (None, 'embed')),
                     (x.shape[1], self.features), jnp.float32)
    x = x + pos.astype(x.dtype)
    return x, jnp.ones(x.shape[:2], bool)


class Cnn(nn.Module):
  """Conv stages (3x3 conv + ReLU, then 2x2 max pool); the last grid is the annotation set,
  by cell (row-major) or, with `columns`, by column."""
  features: int
  channels: Sequence[int] = (32, 64, 128)
  dtype: Any = jnp.float32
  init_fn: Callable | None = None
  columns: bool = False

  @nn.compact
  def __call__(self, inputs, inputs_mask=None, train: bool = False):
    del inputs_mask, train
    _check_image(inputs, 'cnn')
    x = inputs.astype(self.dtype)
    for i, ch in enumerate(self.channels):
      x = Conv3x3(ch, dtype=self.dtype, init_fn=self.init_fn, name=f'conv_{i}')(x)
      x = max_pool_2x2(nn.relu(x))
    b, gh, gw, ch = x.shape
    if gh * gw == 0:
      raise UserError(f'images of {inputs.shape[1]} x {inputs.shape[2]} pixels are too small '
                      f'for {len(self.channels)} pooling stages of model.cnn_channels')
    if self.columns:   # [B, gw, gh * ch]: column j is rows 0..gh-1 of grid column j
      x = x.transpose(0, 2, 1, 3).reshape(b, gw, gh * ch)
    else:
      x = x.reshape(b, gh * gw, ch)
    x = layers.dense(self.features, (None, 'embed'), dtype=self.dtype, init=self.init_fn,
                     name='project')(x)
    return x, jnp.ones(x.shape[:2], bool)


def subsampled_mask(mask: jax.Array) -> jax.Array:
  """The frame mask after one stride-2, kernel-3, pad-1 convolution: floor((T - 1) / 2) + 1
  frames out, and an output frame is real iff its centre input frame (2 t) is."""
  return mask[:, ::2]


def audio_features(module: nn.Module, waveforms: jax.Array, mask: jax.Array | None, *,
                   num_mels: int, spec_augment: Sequence[float], train: bool,
                   vtlp: Sequence[float] = ()) -> tuple[jax.Array, jax.Array]:
  """Waveforms [B, N] (mask [B, N]) -> normalised log-mel frames [B, T, num_mels] float32
  (SpecAugment in training) and the frame mask [B, T]; see the module docstring."""
  from seq2seq_jax.models import audio  # pylint: disable=g-import-not-at-top
  if waveforms.ndim != 2 or not jnp.issubdtype(waveforms.dtype, jnp.floating):
    raise UserError('audio frontends read float waveforms [batch, samples] with inputs_mask; '
                    f'got {waveforms.dtype} {waveforms.shape}')
  lengths = (jnp.full(waveforms.shape[:1], waveforms.shape[1]) if mask is None
             else jnp.sum(mask, axis=1))
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
    if len(spec_augment) != 5:
      raise UserError('model.spec_augment must be (freq_masks, F, time_masks, T, p) or (), '
                      f'got {tuple(spec_augment)}')
    fm, fw, tm, tw, p = spec_augment
    feats = audio.spec_augment(module.make_rng('dropout'), feats, fmask, freq_masks=int(fm),
                               freq_width=int(fw), time_masks=int(tm), time_width=int(tw),
                               time_ratio=float(p))
  return feats, fmask


class LogMel(nn.Module):
  """Audio features of waveforms, one D-wide vector per frame (a linear projection)."""
  features: int
  num_mels: int = 80
  spec_augment: tuple[float, ...] = LIBRISPEECH_BASIC
  dtype: Any = jnp.float32
  init_fn: Callable | None = None
  vtlp: tuple[float, ...] = ()

  @nn.compact
  def __call__(self, inputs, inputs_mask=None, train: bool = False):
    feats, mask = audio_features(self, inputs, inputs_mask, num_mels=self.num_mels,
                                 spec_augment=self.spec_augment, train=train, vtlp=self.vtlp)
    x = layers.dense(self.features, (None, 'embed'), dtype=self.dtype, init=self.init_fn,
                     name='project')(feats)
    return x * mask[..., None].astype(x.dtype), mask


class AudioConv(nn.Module):
  """Two stride-2 3x3 convolutions over (time, frequency): 4x fewer frames, then to D."""
  features: int
  channels: int = 64
  dtype: Any = jnp.float32
  init_fn: Callable | None = None
  num_mels: int = 80
  spec_augment: tuple[float, ...] = LIBRISPEECH_BASIC
  vtlp: tuple[float, ...] = ()

  @nn.compact
  def __call__(self, inputs, inputs_mask=None, train: bool = False):
    if inputs.ndim == 2:   # waveforms: their audio features first
      inputs, inputs_mask = audio_features(self, inputs, inputs_mask, num_mels=self.num_mels,
                                           spec_augment=self.spec_augment, train=train,
                                           vtlp=self.vtlp)
    if inputs.ndim != 3 or not jnp.issubdtype(inputs.dtype, jnp.floating):
      raise UserError("model.frontend='audio_conv' reads float features [batch, frames, "
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


# The model fields that size the frontends; every model declares them (see sizes()).
SIZE_FIELDS = ('patch_size', 'cnn_channels', 'cnn_columns', 'audio_channels', 'num_mels',
               'spec_augment', 'vtlp')


def sizes(model: Any) -> dict[str, Any]:
  """The frontend size fields of a model (or config) as keyword arguments of build() and
  grid_shape()."""
  return {f: getattr(model, f) for f in SIZE_FIELDS}


def build(name: str, *, vocab_size: int, features: int, dtype: Any,
          init_fn: Callable | None = None, patch_size: int = 16,
          cnn_channels: Sequence[int] = (32, 64, 128), cnn_columns: bool = False,
          audio_channels: int = 64, num_mels: int = 80,
          spec_augment: Sequence[float] = LIBRISPEECH_BASIC, vtlp: Sequence[float] = (),
          module_name: str = 'frontend') -> nn.Module:
  """The frontend named by `model.frontend`, producing `features`-wide vectors.

  Args:
    name: one of FRONTENDS.
    vocab_size: the source vocabulary ('tokens' only).
    features: the model width D.
    dtype: compute dtype (parameters are float32).
    init_fn: overrides every initialiser (e.g. the RNN's uniform init_scale).
    patch_size, cnn_channels, cnn_columns, audio_channels, num_mels, spec_augment, vtlp: the
      'patches', 'cnn', 'audio_conv' and 'log_mel' settings (SIZE_FIELDS).
    module_name: the submodule name ('tokens' keeps the models' historical 'src_embed').

  Returns:
    An unbound module.
  """
  if name == 'tokens':
    return Tokens(vocab_size, features, dtype=dtype, init_fn=init_fn, name=module_name)
  if name == 'patches':
    if patch_size < 1:
      raise UserError(f'model.patch_size must be >= 1, got {patch_size}')
    return Patches(features, patch_size, dtype, init_fn, name=module_name)
  if name == 'cnn':
    if not cnn_channels or min(cnn_channels) < 1:
      raise UserError(f'model.cnn_channels must be positive sizes, got {cnn_channels}')
    return Cnn(features, tuple(cnn_channels), dtype, init_fn, bool(cnn_columns),
               name=module_name)
  if name in ('audio_conv', 'log_mel') and vtlp and (len(vtlp) != 2 or
                                                    not 0 < vtlp[0] <= vtlp[1]):
    raise UserError(f'model.vtlp must be (low, high) warp factors, 0 < low <= high, or (), '
                    f'got {tuple(vtlp)}')
  if name == 'audio_conv':
    if audio_channels < 1:
      raise UserError(f'model.audio_channels must be >= 1, got {audio_channels}')
    return AudioConv(features, audio_channels, dtype, init_fn, int(num_mels),
                     tuple(spec_augment), tuple(vtlp), name=module_name)
  if name == 'log_mel':
    if num_mels < 1:
      raise UserError(f'model.num_mels must be >= 1, got {num_mels}')
    return LogMel(features, int(num_mels), tuple(spec_augment), dtype, init_fn, tuple(vtlp),
                  name=module_name)
  raise UserError(f'model.frontend must be one of {FRONTENDS}, got {name!r}')


def grid_shape(name: str, height: int, width: int, *, patch_size: int = 16,
               cnn_channels: Sequence[int] = (32, 64, 128), cnn_columns: bool = False,
               **unused) -> tuple[int, int]:
  """(rows, columns) of the annotation grid an image frontend gives for height x width
  images, in the order of its output sequence (row-major); one row of columns for
  cnn_columns."""
  del unused
  if name == 'patches':
    return height // patch_size, width // patch_size
  if name == 'cnn':
    for _ in cnn_channels:
      height, width = height // 2, width // 2
    return (1 if cnn_columns else height), width
  raise UserError(f"attention maps are drawn over images: model.frontend must be 'cnn' or "
                  f"'patches', got {name!r}")
