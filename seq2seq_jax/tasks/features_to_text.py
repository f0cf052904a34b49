"""Feature sequences to text: e.g. filterbank frames of speech in, characters out.

Data (config.data): `train_tsv`, `eval_tsv`, `test_tsv` of `features_path<TAB>text` lines
(see tasks/file_inputs.py), each file a numpy `.npy` array float [frames, num_bins];
`num_bins`, `frame_buckets` (padded frame counts: utterances are bucketed by length, longer
ones dropped), `alphabet`, `target_len`, `bad_pairs`. Batches carry 'inputs' [batch, frames,
num_bins] and 'inputs_mask' [batch, frames] (true on real frames), which
model.frontend 'audio_conv' reads.
"""
from typing import Any

import numpy as np

from seq2seq_jax.data import features
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import file_inputs


class Task(file_inputs.FileToTextTask):
  """See the module docstring; the contract is seq2seq_jax/tasks/base.py."""

  input_kind = 'features'

  def __init__(self, config: Any):
    super().__init__(config)
    self.num_bins = int(self.data.get('num_bins', 0))
    if self.num_bins < 1:
      raise UserError(f'data.num_bins must be the feature size (>= 1), got {self.num_bins}')
    self.frame_buckets = tuple(int(b) for b in self.data.get('frame_buckets', ()))
    if not self.frame_buckets or min(self.frame_buckets) < 1:
      raise UserError(f'data.frame_buckets must be positive frame counts, got '
                      f'{self.frame_buckets}')

  def load_input(self, path: str) -> np.ndarray:
    x = np.load(path, allow_pickle=False)
    if x.ndim != 2 or x.shape[1] != self.num_bins or not len(x):
      raise ValueError(f'expected float [frames, {self.num_bins}], got {x.dtype} {x.shape}')
    return x.astype(np.float32)

  def dummy_batch(self, rows: int) -> dict[str, np.ndarray]:
    return {'inputs': np.zeros((rows, self.frame_buckets[0], self.num_bins), np.float32),
            'inputs_mask': np.ones((rows, self.frame_buckets[0]), bool),
            'decoder_inputs': np.zeros((rows, 8), np.int32)}

  def make_batcher(self, sources, targets, *, batch_size, seed, shuffle, process_index=0,
                   process_count=1):
    return features.FeatureBatcher(sources, targets, batch_size=batch_size,
                                   target_len=self.target_len, seed=seed, shuffle=shuffle,
                                   frame_buckets=self.frame_buckets,
                                   process_index=process_index, process_count=process_count)

  def collate_sources(self, sources, rows):
    return features.collate_inputs(sources, rows, self.frame_buckets)
