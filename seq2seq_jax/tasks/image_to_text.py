"""Image to text: a picture in, a character string out (OCR, short captions).

Data (config.data): `train_tsv`, `eval_tsv`, `test_tsv` of `image_path<TAB>text` lines (see
tasks/file_inputs.py), `alphabet`, `target_len`, `image_size` (height, width), `channels`
(1 grey or 3 RGB), `bad_pairs`. Images are decoded with Pillow, converted to the channel
count, resized to image_size (bilinear) and scaled to [-1, 1]; every batch has one shape,
[batch, height, width, channels], which the frontends 'patches' and 'cnn' read.

`data.digit_strips` (a dict of seq2seq_jax/datasets/digit_strips.StripSpec fields, {} for the
defaults) replaces the three TSVs with strips of real handwritten digits, built once into
`data.data_dir` (experiments/digits_ocr.py; the 'digit_strips' entry of data/sources.py).
"""
from typing import Any

import numpy as np

from seq2seq_jax.data import features
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import file_inputs


def load_image(path: str, size: tuple[int, int], channels: int) -> np.ndarray:
  """An image file as float32 [height, width, channels] in [-1, 1].

  Args:
    path: any format Pillow reads.
    size: (height, width) to resize to.
    channels: 1 (grey) or 3 (RGB).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as im:
    im = im.convert('L' if channels == 1 else 'RGB')
    if im.size != (size[1], size[0]):
      im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    x = np.asarray(im, np.float32) / 127.5 - 1.0
  return x.reshape(size[0], size[1], channels)


class Task(file_inputs.FileToTextTask):
  """See the module docstring; the contract is seq2seq_jax/tasks/base.py."""

  input_kind = 'image'
  SOURCES = ('tsv', 'digit_strips')

  def __init__(self, config: Any):
    super().__init__(config)
    size = tuple(self.data.get('image_size', ()))
    if len(size) != 2 or min(size) < 1:
      raise UserError(f'data.image_size must be (height, width), got {size}')
    self.image_size = (int(size[0]), int(size[1]))
    self.channels = int(self.data.get('channels', 3))
    if self.channels not in (1, 3):
      raise UserError(f'data.channels must be 1 or 3, got {self.channels}')

  def load_input(self, path: str) -> np.ndarray:
    return load_image(path, self.image_size, self.channels)

  def dummy_batch(self, rows: int) -> dict[str, np.ndarray]:
    return {'inputs': np.zeros((rows, *self.image_size, self.channels), np.float32),
            'decoder_inputs': np.zeros((rows, 8), np.int32)}

  def make_batcher(self, sources, targets, *, batch_size, seed, shuffle, process_index=0,
                   process_count=1):
    return features.FeatureBatcher(sources, targets, batch_size=batch_size,
                                   target_len=self.target_len, seed=seed, shuffle=shuffle,
                                   process_index=process_index, process_count=process_count)

  def collate_sources(self, sources, rows):
    return features.collate_inputs(sources, rows)
