"""Prepared TFDS datasets read without TensorFlow: one reader (`Split`) for every task.

`Split` opens a split through tfds.data_source (array_record; TFDS's feature classes decode the
records) or, with raw=True, through `RawSource`, checks that the dataset has the features the
task reads, and hands out its records by index or in chunks.

RawSource reads a dataset record by record, without its feature classes. Some TFDS feature
classes cannot be built without TensorFlow (tfds.features.Audio, which LibriSpeech uses, calls
tf.dtypes in its constructor), so tfds.builder / tfds.data_source fail
for those datasets in a TensorFlow-free environment. What is on disk needs none of it: the
dataset's folder holds dataset_info.json (splits, shard counts, file format) and array_record
shards `<name>-<split>.array_record-NNNNN-of-MMMMM`, each record a serialized tf.train.Example,
which TFDS's own proto module parses. A non-lazy Audio feature is stored as a Tensor feature
(int64 samples), so it reads back as an int64 array.
"""
import glob
import json
import os
from typing import Callable, Iterator

import numpy as np

from seq2seq_jax.errors import UserError


def _version_key(v: str) -> tuple[int, ...]:
  try:
    return tuple(int(p) for p in v.split('.'))
  except ValueError:
    return (-1,)


def dataset_dir(name: str, data_dir: str) -> str:
  """DATA_DIR/name[/config]/<newest version>, the folder holding dataset_info.json."""
  name, _, version = name.partition(':')
  root = os.path.join(data_dir, name)
  how = (f'prepare it once where it can be downloaded: `tfds build {name} '
         f'--file_format=array_record --data_dir={data_dir}` (or copy a prepared directory)')
  if not os.path.isdir(root):
    raise UserError(f'TFDS dataset {name!r} is not prepared in {data_dir}; {how}')
  versions = [v for v in os.listdir(root)
              if os.path.isfile(os.path.join(root, v, 'dataset_info.json'))]
  if version:
    versions = [v for v in versions if v == version]
  if not versions:
    raise UserError(f'TFDS dataset {name!r} in {data_dir} has no prepared version'
                    f'{" " + version if version else ""}; {how}')
  return os.path.join(root, max(versions, key=_version_key))


class RawSource:
  """Random access to a prepared split's examples as {feature: numpy value} dicts.

  Args:
    name: 'dataset[/config][:version]' as TFDS names it.
    split: a split name, or several joined by '+' (no slicing).
    data_dir: the TFDS data dir.
  """

  def __init__(self, name: str, split: str, data_dir: str):
    from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
    folder = dataset_dir(name, data_dir)
    with open(os.path.join(folder, 'dataset_info.json'), encoding='utf-8') as f:
      info = json.load(f)
    if info.get('fileFormat', 'tfrecord') != 'array_record':
      raise UserError(f'{name} in {data_dir} is stored as {info.get("fileFormat", "tfrecord")}; '
                      f'reading without TensorFlow needs array_record: `tfds build {name} '
                      f'--file_format=array_record --data_dir={data_dir}`')
    known = {s['name']: s for s in info.get('splits', [])}
    files = []
    for part in split.split('+'):
      part = part.strip()
      if part not in known:
        raise UserError(f'{name}: no split {part!r} (splits: {sorted(known)}; this reader '
                        "takes split names joined by '+', no slices)")
      shards = sorted(glob.glob(os.path.join(
          folder, f'{info["name"]}-{part}.array_record-*')))
      expected = len(known[part].get('shardLengths', shards))
      if len(shards) != expected:
        raise UserError(f'{name}/{part}: {len(shards)} shard files in {folder}, '
                        f'dataset_info.json lists {expected}')
      files += shards
    self.features = self._feature_names(folder)
    self.folder = folder
    self._source = array_record_data_source.ArrayRecordDataSource(files)

  @staticmethod
  def _feature_names(folder: str) -> dict[str, dict]:
    """Top-level feature name -> its features.json entry ({} if the file is missing)."""
    path = os.path.join(folder, 'features.json')
    if not os.path.isfile(path):
      return {}
    with open(path, encoding='utf-8') as f:
      spec = json.load(f)
    return dict(spec.get('featuresDict', {}).get('features', {}))

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    return parse_example(self._source[index])

  def __getitems__(self, indices) -> list[dict]:
    return [parse_example(r) for r in self._source.__getitems__(list(indices))]


def parse_example(record: bytes) -> dict:
  """A serialized tf.train.Example -> {name: int64 array | float32 array | list of bytes}."""
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  example = tf_example_pb2.Example.FromString(record)
  out = {}
  for key, feature in example.features.feature.items():
    kind = feature.WhichOneof('kind')
    if kind == 'int64_list':
      out[key] = np.asarray(feature.int64_list.value, np.int64)
    elif kind == 'float_list':
      out[key] = np.asarray(feature.float_list.value, np.float32)
    elif kind == 'bytes_list':
      out[key] = list(feature.bytes_list.value)
    else:
      out[key] = None
  return out


class Split:
  """A prepared TFDS split: its records by index, its feature names and where it came from.

  Args:
    name: 'dataset[/config][:version]' as TFDS names it.
    split: a TFDS split (raw=False: slices and sums allowed, 'train[:10%]', 'train+restval';
      raw=True: names joined by '+').
    data_dir: the TFDS data dir (resolved already).
    check: called with the dataset's sorted feature names before any record is read; raises a
      UserError naming what the task needs when they do not fit (raw=True: not called when
      the dataset has no features.json).
    raw: read with RawSource, without TFDS's feature classes (those of Audio need TensorFlow).
    decoders: tfds.data_source decoders (raw=False), e.g. to keep images encoded.
  """

  def __init__(self, name: str, split: str, data_dir: str, *,
               check: Callable[[list[str]], None] | None = None, raw: bool = False,
               decoders=None):
    self.name, self.split = name, split
    if raw:
      self._source = RawSource(name, split, data_dir)
      self.features = self._source.features
      if check is not None and self.features:
        check(sorted(self.features))
      self.origin = f'tfds:{name}/{split} ({self._source.folder})'
    else:
      by_builder = None if check is None else (
          lambda builder: check(sorted(builder.info.features.keys())))
      self._source = tfds_source(name, split, data_dir, check=by_builder, decoders=decoders)
      self.features = {}
      self.origin = f'tfds:{name}/{split} ({data_dir})'

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    return self._source[index]

  def records(self, chunk: int = 4096) -> Iterator[tuple[int, dict]]:
    """(index, record) of every record in order, fetched `chunk` at a time."""
    for start in range(0, len(self._source), chunk):
      batch = self._source.__getitems__(list(range(start, min(start + chunk, len(self._source)))))
      yield from enumerate(batch, start)


def tfds_source(name: str, split: str, data_dir: str, *, check=None, decoders=None):
  """A prepared TFDS dataset's split as a random-access source (tfds.data_source: array_record,
  no TensorFlow), or a one-line UserError saying how to prepare it.

  Args:
    name: 'dataset/config' as TFDS names it.
    split: a TFDS split, slices and sums allowed ('train[:10%]', 'train+restval').
    data_dir: TFDS data dir ('' is not resolved here).
    check: called with the builder before reading (raise UserError on a mismatch).
    decoders: tfds.data_source decoders (e.g. skip decoding images).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  how = (f'prepare it once where it can be downloaded: `tfds build {name} '
         f'--file_format=array_record --data_dir={data_dir}` (or copy a prepared directory)')
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'TFDS dataset {name!r} is not prepared in {data_dir} '
                    f'({_first_line(e)}); {how}') from None
  if not builder.is_prepared():
    raise UserError(f'TFDS dataset {name!r} is not prepared in {data_dir}; {how}')
  file_format = getattr(builder.info.file_format, 'value', builder.info.file_format)
  if file_format != 'array_record':
    raise UserError(f'{name} in {data_dir} is stored as {file_format}; reading without '
                    f'TensorFlow needs array_record: {how}')
  if check is not None:
    check(builder)
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                            decoders=decoders)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{name}: cannot read split {split!r} (splits: '
                    f'{sorted(builder.info.splits.keys())}; {_first_line(e)})') from None


def _first_line(e: Exception) -> str:
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__
