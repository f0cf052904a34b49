"""Log-mel filterbanks against an independent numpy implementation of the same definition,
and SpecAugment's masks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax.models import audio

SR = 16_000


def _reference_log_mel(wave: np.ndarray, num_mels: int = 80) -> np.ndarray:
  """Frame by frame, filter by filter, in float64: the module docstring's definition."""
  window, hop, n_fft = 400, 160, 512
  hz_to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
  mel_to_hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
  top = hz_to_mel(SR / 2)
  points = [mel_to_hz(top * i / (num_mels + 1)) for i in range(num_mels + 2)]
  out = []
  for start in range(0, len(wave) - window + 1, hop):
    frame = wave[start:start + window].astype(np.float64)
    frame = frame - frame.mean()
    frame = frame * np.array([0.5 - 0.5 * np.cos(2 * np.pi * i / window) for i in range(window)])
    power = np.abs(np.fft.rfft(frame, n_fft)) ** 2
    energies = []
    for m in range(num_mels):
      lo, mid, hi = points[m], points[m + 1], points[m + 2]
      total = 0.0
      for k, p in enumerate(power):
        f = k * SR / n_fft
        if lo < f < hi:
          total += p * ((f - lo) / (mid - lo) if f <= mid else (hi - f) / (hi - mid))
      energies.append(np.log(max(total, 1e-10)))
    out.append(energies)
  return np.array(out)


def test_log_mel_matches_an_independent_implementation():
  rng = np.random.default_rng(0)
  n = 400 + 160 * 6 + 37                                 # 7 whole frames and a remainder
  waves = np.zeros((2, n + 500), np.float32)
  waves[0, :n] = rng.normal(size=n) * 0.1 + np.sin(np.arange(n) * 2 * np.pi * 440 / SR)
  waves[1, :n - 300] = rng.normal(size=n - 300) * 0.3
  waves[1, n - 300:] = 7.0                               # padding garbage past the length
  feats, mask = jax.jit(audio.log_mel)(jnp.asarray(waves), jnp.array([n, n - 300]))
  assert feats.shape[1] == 1 + (n + 500 - 400) // 160
  assert list(np.sum(mask, 1)) == [7, 5]                 # whole frames within each length
  for b, length in enumerate([n, n - 300]):
    ref = _reference_log_mel(waves[b, :length].astype(np.float64))
    np.testing.assert_allclose(np.asarray(feats[b, :len(ref)]), ref, atol=2e-3, rtol=1e-4)
    assert not np.any(np.asarray(feats[b, len(ref):]))     # padded frames are zeros


def test_a_tone_lights_the_filter_around_its_frequency():
  t = np.arange(SR // 2)
  fb = audio.mel_filterbank(80, 512, SR)
  centres = np.argmax(fb, axis=0) * SR / 512             # each filter's peak bin in Hz
  for hz in (300.0, 1000.0, 3000.0):
    feats, _ = audio.log_mel(jnp.asarray(np.sin(2 * np.pi * hz * t / SR)[None], jnp.float32),
                             jnp.array([len(t)]))
    best = int(np.argmax(np.asarray(feats[0]).mean(0)))
    assert abs(centres[best] - hz) <= 2 * SR / 512 + 0.1 * hz


def test_spec_augment_masks_within_the_policy():
  b, t, f = 8, 300, 80
  feats = jnp.ones((b, t, f))
  mask = jnp.arange(t)[None] < jnp.array([300, 250, 200, 150, 120, 90, 60, 30])[:, None]
  out = np.asarray(audio.spec_augment(jax.random.key(0), feats, mask))
  again = np.asarray(audio.spec_augment(jax.random.key(0), feats, mask))
  other = np.asarray(audio.spec_augment(jax.random.key(1), feats, mask))
  np.testing.assert_array_equal(out, again)              # a pure function of the key
  assert np.any(out != other)
  zero_bins = (out == 0).all(axis=1)                     # [B, F] bins masked at every frame
  zero_frames = (out == 0).all(axis=2)                   # [B, T] frames masked at every bin
  assert zero_bins.sum(1).max() <= 2 * 27
  assert zero_frames.sum(1).max() <= 2 * 100
  lengths = np.asarray(mask.sum(1))
  assert np.all(zero_frames.sum(1) <= np.minimum(2 * 100, 2 * lengths))
  assert zero_bins.any() and zero_frames.any()           # LB masks something in 8 utterances
  # Masked cells are exactly the union of whole bins and whole frames.
  np.testing.assert_array_equal(out == 0, zero_bins[:, None, :] | zero_frames[:, :, None])
  assert audio.frames_for_seconds(1.0) == 98


def test_vtlp_warp_is_jaitly_and_hintons():
  nyq = SR / 2
  freqs = np.linspace(0.0, nyq, 257)
  warped = np.asarray(audio.vtlp_warp(jnp.asarray(freqs), jnp.array([0.9, 1.0, 1.1]), nyq))
  np.testing.assert_allclose(warped[1], freqs, rtol=1e-6)     # alpha 1: identity
  assert np.all(np.diff(warped, axis=1) > 0)                                 # monotone
  np.testing.assert_allclose(warped[:, -1], nyq, rtol=1e-6)                 # Nyquist stays
  for row, a in zip(warped[[0, 2]], (0.9, 1.1)):
    knee = 4800.0 * min(a, 1.0) / a
    low = freqs <= knee
    np.testing.assert_allclose(row[low], a * freqs[low], rtol=1e-5)
    # Continuous at the knee: the linear part starts where alpha f ends.
    first = int(np.argmax(freqs > knee))
    slope = (nyq - 4800.0 * min(a, 1.0)) / (nyq - knee)
    assert row[first] == pytest.approx(a * knee + slope * (freqs[first] - knee), rel=1e-5)


def test_vtlp_moves_a_tone_by_the_warp_factor_and_alpha_one_changes_nothing():
  t = np.arange(SR // 2)
  fb = audio.mel_filterbank(80, 512, SR)
  centres = np.argmax(fb, axis=0) * SR / 512
  hz = 1000.0
  wave = jnp.asarray(np.tile(np.sin(2 * np.pi * hz * t / SR)[None], (3, 1)), jnp.float32)
  lengths = jnp.array([len(t)] * 3)
  plain, _ = audio.log_mel(wave, lengths)
  warped, _ = jax.jit(audio.log_mel)(wave, lengths, warp=jnp.array([1.0, 0.9, 1.1]))
  np.testing.assert_allclose(np.asarray(warped[0]), np.asarray(plain[0]), atol=1e-3)
  peaks = [centres[int(np.argmax(np.asarray(warped[b]).mean(0)))] for b in range(3)]
  assert abs(peaks[1] - 900.0) < abs(peaks[1] - 1000.0)     # formants move down with 0.9
  assert abs(peaks[2] - 1100.0) < abs(peaks[2] - 1000.0)    # and up with 1.1
  assert peaks[1] < peaks[0] < peaks[2]


@pytest.mark.parametrize('n', [399, 400, 559, 560, 561, 1999, 2000])
def test_frames_are_the_windows_at_every_hop(n):
  """The reshape-and-concatenate framing equals indexing the windows one by one."""
  wave = np.random.default_rng(n).normal(size=(2, n)).astype(np.float32)
  t = int(audio.num_frames(n, 400, 160))
  want = np.stack([wave[:, i * 160:i * 160 + 400] for i in range(t)], 1) if t else (
      np.zeros((2, 0, 400), np.float32))
  got = np.asarray(audio._frames(jnp.asarray(wave), t, 400, 160))  # pylint: disable=protected-access
  assert got.shape == (2, t, 400)
  np.testing.assert_array_equal(got, want)
