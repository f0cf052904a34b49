"""Batches of non-token inputs: images (one fixed shape) and feature sequences (bucketed).

  images    [H, W, C] float32, all of one shape: every batch is [rows, H, W, C].
  features  [T, F] float32 (e.g. filterbank frames): bucketed by frame count T, padded with
            zero frames to the bucket, with 'inputs_mask' [rows, bucket] true on real frames.
  waveforms [N] (anything np.asarray makes float32 samples of, with len() and .shape, e.g.
            tasks/speech.Waveform): bucketed by sample count N like features.

Targets are padded (BOS + target for 'decoder_inputs', target + EOS for 'targets') to
`target_len` for images, and for features to their frame bucket's target length: the bucket's
longest target + EOS rounded up to a multiple of 8, at most `target_len` (short utterances
carry short transcripts, so their decoder runs over fewer padded positions: one shape per
bucket still, as the padding is fixed by the data, not the batch). An example whose target
does not fit `target_len`, or whose frames exceed the largest bucket, is dropped and counted
in `num_dropped`. As for every Batcher, batch `step` is a pure
function of (data, seed, step).
"""
from typing import Sequence

import numpy as np

from seq2seq_jax.data.pipeline import BucketBatcher, bucket_length, pad_targets
from seq2seq_jax.errors import UserError


def _padded_frames(longest: int, frame_buckets: Sequence[int]) -> int:
  return bucket_length(longest, frame_buckets) or int(np.ceil(max(longest, 1) / 32) * 32)


def collate_inputs(sources: Sequence[np.ndarray], rows: int,
                   frame_buckets: Sequence[int] = ()) -> dict[str, np.ndarray]:
  """Images or feature sequences as one input batch of `rows` rows (padding rows are zeros).

  Args:
    sources: images [H, W, C] (frame_buckets empty) or features [T, F].
    rows: the batch's row count (>= len(sources)).
    frame_buckets: features: the padded frame counts (longer: a multiple of 32).

  Returns:
    {'inputs': [rows, H, W, C]} for images; {'inputs': [rows, T', F], 'inputs_mask':
    bool [rows, T']} for features.
  """
  if not sources or len(sources) > rows:
    raise ValueError(f'{len(sources)} sources for {rows} rows')
  if not frame_buckets:
    out = np.zeros((rows,) + sources[0].shape, np.float32)
    out[:len(sources)] = np.stack(sources)
    return {'inputs': out}
  length = _padded_frames(max(len(s) for s in sources), frame_buckets)
  out = np.zeros((rows, length) + tuple(sources[0].shape[1:]), np.float32)
  mask = np.zeros((rows, length), bool)
  for i, s in enumerate(sources):
    out[i, :len(s)] = s
    mask[i, :len(s)] = True
  return {'inputs': out, 'inputs_mask': mask}


class FeatureBatcher(BucketBatcher):
  """Batches of (image or feature sequence, target ids); the interface of pipeline.Batcher."""

  def __init__(self, src: Sequence[np.ndarray], tgt: Sequence[np.ndarray], *, batch_size: int,
               target_len: int, seed: int, frame_buckets: Sequence[int] = (),
               shuffle: bool = True, process_index: int = 0, process_count: int = 1):
    """Groups examples by frame count (features) or keeps one group (images).

    Args:
      src: images [H, W, C] of one shape (frame_buckets empty), or features [T, F].
      tgt: target id arrays without BOS/EOS.
      batch_size: GLOBAL batch size (all processes together).
      target_len: padded target length (features: at most; see the module docstring); a
        target of target_len or more ids is dropped.
      seed: shuffling seed.
      frame_buckets: features: padded frame counts; longer sequences are dropped.
      shuffle: False: batches in data order.
      process_index: which contiguous slice of each global batch this process loads.
      process_count: number of slices.
    """
    super().__init__(len(src), len(tgt), batch_size=batch_size, seed=seed, shuffle=shuffle,
                     process_index=process_index, process_count=process_count)
    if target_len < 2:
      raise UserError(f'the target length must be >= 2, got {target_len}')
    self.src, self.tgt = list(src), list(tgt)
    self.target_len = target_len
    self.frame_buckets = tuple(sorted(frame_buckets))
    fits = np.array([len(t) + 1 <= target_len for t in tgt], bool)
    if self.frame_buckets:
      frames = np.array([len(s) for s in src], np.int64)
      which = np.searchsorted(np.asarray(self.frame_buckets), frames, side='left')
      num = len(self.frame_buckets)
    else:
      shapes = {s.shape for s in self.src}
      if len(shapes) > 1:
        raise ValueError(f'images of several shapes: {sorted(shapes)[:3]}')
      which, num = np.zeros(len(src), np.int64), 1
    which = np.where(fits, which, num)
    self._set_buckets(which, num)
    self.bucket_target_len = [target_len] * num
    if self.frame_buckets:
      lens = np.array([len(t) + 1 for t in tgt], np.int64)
      for b in range(num):
        if np.any(which == b):
          self.bucket_target_len[b] = min(target_len, int(-(-lens[which == b].max() // 8) * 8))

  def _describe_buckets(self) -> str:
    if self.frame_buckets:
      return f'frame buckets {self.frame_buckets}, target length at most {self.target_len}'
    return f'target length {self.target_len}'

  def _make(self, bucket: int, idx):
    rows = self._local(idx)
    if self.frame_buckets:
      frames = self.frame_buckets[bucket]
      out = {'inputs': np.zeros((len(rows), frames) + tuple(self.src[0].shape[1:]), np.float32),
             'inputs_mask': np.zeros((len(rows), frames), bool)}
      for r, i in enumerate(rows):
        out['inputs'][r, :len(self.src[i])] = self.src[i]
        out['inputs_mask'][r, :len(self.src[i])] = True
    else:
      out = {'inputs': np.stack([self.src[i] for i in rows]).astype(np.float32) if len(rows)
                       else np.zeros((0,) + self.src[0].shape, np.float32)}
    out.update(pad_targets([self.tgt[i] for i in rows], self.bucket_target_len[bucket]))
    return self._pad_rows(out)
