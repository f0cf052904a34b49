"""Speech features inside the jitted step: log-mel filterbanks and SpecAugment.

`log_mel` turns padded waveforms into log-mel frames on the accelerator, so the input
pipeline ships raw audio. The definition (a test checks it against an independent numpy
implementation):

  frames       window 25 ms (400 samples at 16 kHz), hop 10 ms (160); frame t covers samples
               [t hop, t hop + window); only whole frames (Kaldi's snip_edges): a waveform of
               n samples gives 1 + (n - window) // hop frames, and frame t is real iff
               t hop + window <= n
  window       periodic Hann, after removing each frame's mean (DC offset)
  spectrum     power |rfft(frame, n_fft)|^2, n_fft = the next power of two >= window (512)
  mel          num_mels (80) triangular filters equally spaced on the HTK mel scale
               m = 2595 log10(1 + f / 700) between fmin (0) and fmax (sample_rate / 2),
               unnormalised (peak 1)
  log          log(max(mel energy, 1e-10))

`spec_augment` is SpecAugment (Park et al. 2019): `freq_masks` masks of width ~ U[0, F] over
mel bins and `time_masks` masks of width ~ U[0, T] (at most p times the utterance's real
frames) over time, each at a uniform start, set to zero (after normalisation, i.e. the mean);
the LibriSpeech basic policy (LB) is two of each with F = 27, T = 100, p = 1.0. It draws from
the key it is given, so a step-folded key keeps resume exact.

`vtlp_warp` is vocal tract length perturbation (Jaitly and Hinton 2013, Eq. 1): each
utterance's frequency axis is warped by a factor alpha (drawn per utterance, e.g. U[0.9, 1.1])
as a different speaker's vocal tract would shift its formants: f -> alpha f up to a boundary
frequency F_hi min(alpha, 1) / alpha (F_hi = 4,800 Hz), linear from there to the Nyquist
frequency, which stays fixed. `log_mel(warp=alpha)` applies it by evaluating the mel filters at
the warped frequencies of the FFT bins, so the energy at frequency f is counted where alpha f
would be (alpha = 1: the unwarped features).

`speed_perturb` is speed perturbation (Ko et al. 2015): each utterance is played at a factor s
(drawn per utterance, e.g. U[0.9, 1.1]), tempo and pitch together, by reading the waveform at
positions j s (linear interpolation between neighbouring samples, no anti-aliasing filter:
Kaldi resamples with sox, band-limited), so n samples become floor(n / s). The padded buffer
holds N samples: a row that would grow beyond it is slowed down only as far as N allows
(s >= n / N), so no real sample is cut.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np


def mel_edges(num_mels: int, sample_rate: int, fmin: float = 0.0,
              fmax: float | None = None) -> np.ndarray:
  """The num_mels + 2 filter edges (Hz), equally spaced on the HTK mel scale."""
  fmax = sample_rate / 2 if fmax is None else fmax
  to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
  to_hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
  return to_hz(np.linspace(to_mel(fmin), to_mel(fmax), num_mels + 2))


def mel_filterbank(num_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
  """[n_fft // 2 + 1, num_mels] triangular HTK-mel filters (peak 1, unnormalised)."""
  freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
  return _triangles(np, freqs, mel_edges(num_mels, sample_rate, fmin, fmax)).astype(np.float32)


VTLP_BOUNDARY_HZ = 4800.0   # Jaitly and Hinton's F_hi


def vtlp_warp(freqs: jax.Array, alpha: jax.Array, nyquist: float,
              boundary_hz: float = VTLP_BOUNDARY_HZ) -> jax.Array:
  """Warped frequencies [B, K] of freqs [K] (Hz) for factors alpha [B] (Jaitly and Hinton
  2013, Eq. 1): alpha f below F_hi min(alpha, 1) / alpha, then linear to nyquist -> nyquist."""
  alpha = alpha[:, None]
  f = freqs[None]
  knee = boundary_hz * jnp.minimum(alpha, 1.0) / alpha
  above = nyquist - (nyquist - boundary_hz * jnp.minimum(alpha, 1.0)) / (nyquist - knee) * (
      nyquist - f)
  return jnp.where(f <= knee, alpha * f, above)


def speed_perturb(waveforms: jax.Array, lengths: jax.Array, factors: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
  """Waveforms [B, N] with real lengths [B], played at `factors` [B] (> 1 faster and higher,
  < 1 slower and lower; the module docstring) -> (waveforms [B, N], lengths [B] int32); the
  samples past a row's new length are zeros."""
  b, n = waveforms.shape
  lengths = jnp.asarray(lengths, jnp.int32)
  s = jnp.maximum(factors.astype(jnp.float32), lengths.astype(jnp.float32) / n)   # fits in N
  new_lengths = jnp.minimum(jnp.floor(lengths / s).astype(jnp.int32), n)
  pos = jnp.arange(n, dtype=jnp.float32)[None] * s[:, None]                       # [B, N]
  i0 = jnp.floor(pos).astype(jnp.int32)
  frac = pos - i0
  w = waveforms.astype(jnp.float32)
  x0 = jnp.take_along_axis(w, jnp.clip(i0, 0, n - 1), axis=1)
  x1 = jnp.take_along_axis(w, jnp.clip(i0 + 1, 0, n - 1), axis=1)
  x1 = jnp.where(i0 + 1 < lengths[:, None], x1, 0.0)       # past the row's end: silence
  out = x0 + (x1 - x0) * frac
  out = jnp.where(jnp.arange(n)[None] < new_lengths[:, None], out, 0.0)
  return out.astype(waveforms.dtype), new_lengths


def _triangles(xp, freqs, edges):
  """Triangular filter responses [..., K, M] at freqs [..., K] for M + 2 edges (Hz); xp is
  numpy or jax.numpy."""
  lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
  up = (freqs[..., None] - lower) / (centre - lower)
  down = (upper - freqs[..., None]) / (upper - centre)
  return xp.maximum(0.0, xp.minimum(up, down))


def num_frames(num_samples, window: int, hop: int):
  """Whole frames in num_samples samples (0 if shorter than one window)."""
  return np.maximum(0, (np.asarray(num_samples) - window) // hop + 1)


def _frames(waveforms: jax.Array, t: int, window: int, hop: int) -> jax.Array:
  """[B, N] -> the first t frames [B, t, window] (frame i: samples [i hop, i hop + window)).

  Cut from hop-sized chunks: frame i is chunks i..i+k-1 joined (k = ceil(window / hop)) and cut
  to the window. Reshapes, slices and one concatenation, not a gather: on CPU the gather and
  its layout change took about 6% of the speech Transformer's training step."""
  k = -(-window // hop)
  length = (t + k - 1) * hop
  b, n = waveforms.shape
  w = (jnp.pad(waveforms, ((0, 0), (0, length - n))) if length > n
       else waveforms[:, :length])
  chunks = w.reshape(b, t + k - 1, hop)
  return jnp.concatenate([chunks[:, j:j + t] for j in range(k)], axis=-1)[..., :window]


def log_mel(waveforms: jax.Array, lengths: jax.Array, *, sample_rate: int = 16_000,
            num_mels: int = 80, window_ms: float = 25.0, hop_ms: float = 10.0,
            fmin: float = 0.0, fmax: float | None = None, warp: jax.Array | None = None
            ) -> tuple[jax.Array, jax.Array]:
  """Padded waveforms [B, N] with real lengths [B] -> (log-mel [B, T, num_mels] float32,
  frame mask [B, T]); T = 1 + (N - window) // hop. Padded frames are zeros. `warp`: VTLP
  factors [B] (vtlp_warp), or None."""
  window = int(round(sample_rate * window_ms / 1000))
  hop = int(round(sample_rate * hop_ms / 1000))
  n_fft = 1 << (window - 1).bit_length()
  n = waveforms.shape[1]
  t = int(num_frames(n, window, hop))
  frames = _frames(waveforms.astype(jnp.float32), t, window, hop)      # [B, T, window]
  frames = frames - jnp.mean(frames, axis=-1, keepdims=True)
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)     # periodic
  spec = jnp.fft.rfft(frames * hann.astype(np.float32), n=n_fft)
  power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
  if warp is None:
    mel = power @ jnp.asarray(mel_filterbank(num_mels, n_fft, sample_rate, fmin, fmax))
  else:
    edges = mel_edges(num_mels, sample_rate, fmin, fmax)
    freqs = vtlp_warp(jnp.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=jnp.float32),
                      warp.astype(jnp.float32), sample_rate / 2)
    bank = _triangles(jnp, freqs, jnp.asarray(edges, jnp.float32))             # [B, K, M]
    mel = jnp.einsum('btk,bkm->btm', power, bank)
  feats = jnp.log(jnp.maximum(mel, 1e-10))
  mask = (np.arange(t)[None] * hop + window) <= lengths[:, None]
  return jnp.where(mask[..., None], feats, 0.0), mask


def spec_augment(key: jax.Array, feats: jax.Array, mask: jax.Array, *, freq_masks: int = 2,
                 freq_width: int = 27, time_masks: int = 2, time_width: int = 100,
                 time_ratio: float = 1.0) -> jax.Array:
  """SpecAugment of feats [B, T, F] (mask [B, T] true on real frames), per utterance."""
  b, t, f = feats.shape
  lengths = jnp.sum(mask, axis=1)
  k_fw, k_fs, k_tw, k_ts = jax.random.split(key, 4)
  keep = jnp.ones((b, t, f), bool)
  bins = jnp.arange(f)[None, None]
  if freq_masks:
    w = jax.random.randint(k_fw, (b, freq_masks), 0, freq_width + 1)
    start = jnp.floor(jax.random.uniform(k_fs, (b, freq_masks)) * (f - w + 1)).astype(jnp.int32)
    hit = (bins >= start[..., None]) & (bins < (start + w)[..., None])   # [B, M, F]
    keep &= ~jnp.any(hit, axis=1)[:, None, :]
  if time_masks:
    cap = jnp.minimum(time_width, jnp.floor(time_ratio * lengths).astype(jnp.int32))
    w = jnp.floor(jax.random.uniform(k_tw, (b, time_masks)) * (cap[:, None] + 1)
                  ).astype(jnp.int32)
    start = jnp.floor(jax.random.uniform(k_ts, (b, time_masks))
                      * jnp.maximum(lengths[:, None] - w + 1, 1)).astype(jnp.int32)
    steps = jnp.arange(t)[None, None]
    hit = (steps >= start[..., None]) & (steps < (start + w)[..., None])  # [B, M, T]
    keep &= ~jnp.any(hit, axis=1)[:, :, None]
  return jnp.where(keep, feats, 0.0)


def frames_for_seconds(seconds: float, sample_rate: int = 16_000, window_ms: float = 25.0,
                       hop_ms: float = 10.0) -> int:
  """How many frames `seconds` of audio give (for sizing frame buckets)."""
  n = int(math.floor(seconds * sample_rate))
  return int(num_frames(n, int(round(sample_rate * window_ms / 1000)),
                        int(round(sample_rate * hop_ms / 1000))))


# --- Whisper's log-mel (as faster-whisper computes it) -------------------------------------
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_SAMPLE_RATE = 16_000


def slaney_mel_filterbank(num_mels: int, n_fft: int = WHISPER_N_FFT,
                          sample_rate: int = 16_000) -> np.ndarray:
  """[n_fft // 2 + 1, num_mels] Slaney-style mel filters (librosa's default, norm='slaney'):
  linear below 1 kHz, logarithmic above, each filter scaled to constant energy; the filters
  Whisper was trained with (faster-whisper's FeatureExtractor.get_mel_filters)."""
  fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
  return _slaney_filters(np, fftfreqs, num_mels).astype(np.float32)


def _slaney_edges(num_mels: int) -> np.ndarray:
  """The num_mels + 2 filter edges (Hz) of the Slaney mel filters up to 8 kHz."""
  mels = np.linspace(0.0, 45.245640471924965, num_mels + 2)   # mel(8 kHz) on Slaney's scale
  f_sp = 200.0 / 3
  freqs = f_sp * mels
  min_log_hz = 1000.0
  min_log_mel = min_log_hz / f_sp
  logstep = np.log(6.4) / 27.0
  log_t = mels >= min_log_mel
  freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
  return freqs


def _slaney_filters(xp, fftfreqs, num_mels: int):
  """Slaney filter responses [..., K, num_mels] at the frequencies fftfreqs [..., K] (Hz);
  xp is numpy or jax.numpy (a warped frequency axis per row: VTLP)."""
  freqs = _slaney_edges(num_mels)
  fdiff = np.diff(freqs)
  ramps = freqs - fftfreqs[..., None]                    # [..., K, M + 2]
  lower = -ramps[..., :-2] / fdiff[:-1]
  upper = ramps[..., 2:] / fdiff[1:]
  weights = xp.maximum(0.0, xp.minimum(lower, upper))
  return weights * (2.0 / (freqs[2:num_mels + 2] - freqs[:num_mels]))


def whisper_log_mel(waveforms: jax.Array, lengths: jax.Array, *, num_mels: int = 80,
                    frames: int = 3000, warp: jax.Array | None = None) -> jax.Array:
  """Whisper's input as faster-whisper computes it, inside jit: [B, N] 16 kHz waveforms with
  real lengths [B] -> float32 [B, frames, num_mels].

  Per row of n real samples (faster-whisper's FeatureExtractor + transcribe): the audio is
  followed by 160 zeros; a centred STFT (400-sample periodic Hann window, hop 160, the ends
  padded by reflection over 200 samples) gives n // 160 + 2 frames, the last dropped; power
  spectrum -> Slaney mel filters -> log10(max(., 1e-10)), floored at the row's maximum - 8,
  then (x + 4) / 4. The first n // 160 frames are the segment; the rest of the `frames`
  (30 s) window is zeros (faster-whisper pads the log-mel with zeros, not the audio: openai's
  whisper pads the audio instead, so its padding frames sit at the floor). Rows longer than
  `frames` hops are cut to the first window. `warp`: VTLP factors [B] (vtlp_warp, over
  0-8 kHz: each row's mel filters read its warped frequency axis), or None.
  """
  b, n = waveforms.shape
  hop, n_fft = WHISPER_HOP, WHISPER_N_FFT
  t = n // hop + 1                                    # frames of the longest row
  lengths = jnp.asarray(lengths, jnp.int32)
  padded = lengths + hop                              # with faster-whisper's 160 zeros
  idx = (np.arange(t)[:, None] * hop + np.arange(n_fft)[None, :] - n_fft // 2)  # [t, n_fft]
  idx = jnp.asarray(idx, jnp.int32)[None]                                       # [1, t, W]
  last = (padded - 1)[:, None, None]
  idx = jnp.abs(idx)                                  # reflect at the start
  idx = jnp.where(idx > last, 2 * last - idx, idx)    # reflect at the end
  w = waveforms.astype(jnp.float32)
  take = jnp.clip(idx, 0, n - 1).reshape(b, -1)
  x = jnp.take_along_axis(w, take, axis=1).reshape(b, t, n_fft)
  x = jnp.where(idx < lengths[:, None, None], x, 0.0)  # the appended zeros
  hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
  spec = jnp.fft.rfft(x * hann, n=n_fft)
  power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
  if warp is None:
    mel = jnp.einsum('btk,km->btm', power, jnp.asarray(slaney_mel_filterbank(num_mels, n_fft)),
                     precision=jax.lax.Precision.HIGHEST)
  else:
    nyquist = WHISPER_SAMPLE_RATE / 2
    freqs = vtlp_warp(jnp.asarray(np.fft.rfftfreq(n_fft, 1.0 / WHISPER_SAMPLE_RATE),
                                  jnp.float32), warp.astype(jnp.float32), nyquist)
    bank = _slaney_filters(jnp, freqs, num_mels).astype(jnp.float32)      # [B, K, M]
    mel = jnp.einsum('btk,bkm->btm', power, bank, precision=jax.lax.Precision.HIGHEST)
  logmel = jnp.log10(jnp.maximum(mel, 1e-10))
  stft_frames = (lengths // hop + 1)[:, None]         # frames faster-whisper keeps
  valid = jnp.arange(t)[None] < stft_frames
  row_max = jnp.max(jnp.where(valid[..., None], logmel, -jnp.inf), axis=(1, 2), keepdims=True)
  logmel = (jnp.maximum(logmel, row_max - 8.0) + 4.0) / 4.0
  content = jnp.arange(t)[None] < (lengths // hop)[:, None]
  logmel = jnp.where(content[..., None], logmel, 0.0)
  if t >= frames:
    return logmel[:, :frames]
  return jnp.pad(logmel, ((0, 0), (0, frames - t), (0, 0)))
