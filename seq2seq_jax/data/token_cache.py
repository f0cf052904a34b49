"""Tokenized pairs on disk (array_record), read a batch at a time: the input side at WMT scale.

Holding every tokenized pair of WMT14 en-de (4.5M pairs; en-fr has 36M) as Python objects
costs gigabytes in every process, and tokenizing on every start costs minutes. Instead the
training split is tokenized once, streaming, into a cache in the workdir:

  PREFIX.array_record   one record per pair: its source ids then its target ids (uint16 when
                        the vocabulary fits, else int32), without BOS/EOS
  PREFIX.lengths.npy    int32 [N, 2]: each pair's (source, target) length: all that batch
                        planning (buckets, packing) needs, memory-mapped
  PREFIX.json           what the cache was built from (corpus, vocabulary), written last:
                        its presence means the cache is complete

A restart or a later run in the workdir opens these and never re-tokenizes; a cache built
from another corpus or vocabulary is rebuilt. Batchers plan over the lengths and read only
the records of their own process's rows of each batch, so memory per host does not grow with
the corpus or with the number of devices.

`Pairs` is what batchers read from: `ListPairs` over arrays in memory (evaluation splits,
small corpora) or `CachedPairs` over a cache.
"""
import fcntl
import hashlib
import json
import os
import time
from typing import Callable, Iterable, Sequence

import numpy as np

from seq2seq_jax.errors import UserError

FORMAT = 1
_WRITER_OPTIONS = 'group_size:16,snappy'  # measured: small files, fast random reads


class Pairs:
  """(source ids, target ids) pairs with their lengths known up front.

  Attributes:
    src_lens, tgt_lens: int arrays [N]: ids per side (no BOS/EOS).
  """
  src_lens: np.ndarray
  tgt_lens: np.ndarray

  def __len__(self) -> int:
    return len(self.src_lens)

  def get(self, indices: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The int32 id arrays of pairs `indices` (any order, repeats allowed)."""
    raise NotImplementedError


class ListPairs(Pairs):
  """Pairs held in memory as lists of id arrays."""

  def __init__(self, src: Sequence[np.ndarray], tgt: Sequence[np.ndarray]):
    if len(src) != len(tgt):
      raise ValueError(f'{len(src)} sources but {len(tgt)} targets')
    self.src, self.tgt = list(src), list(tgt)
    self.src_lens = np.array([len(s) for s in self.src], np.int64)
    self.tgt_lens = np.array([len(t) for t in self.tgt], np.int64)

  def get(self, indices):
    return [self.src[i] for i in indices], [self.tgt[i] for i in indices]


def as_pairs(src, tgt=None) -> Pairs:
  """`src` if it is Pairs already (then tgt is None), else ListPairs(src, tgt)."""
  if isinstance(src, Pairs):
    if tgt is not None:
      raise ValueError('targets given beside a Pairs object')
    return src
  return ListPairs(src, tgt)


class CachedPairs(Pairs):
  """The pairs of a cache written by build(); records are read on demand."""

  def __init__(self, prefix: str):
    from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
    with open(prefix + '.json') as f:
      self.meta = json.load(f)
    lengths = np.load(prefix + '.lengths.npy', mmap_mode='r')
    self.src_lens, self.tgt_lens = lengths[:, 0], lengths[:, 1]
    self.dtype = np.dtype(self.meta['dtype'])
    self.prefix = prefix
    self._reader = array_record_module.ArrayRecordReader(prefix + '.array_record',
                                                         'readahead_buffer_size:0')
    if self._reader.num_records() != len(lengths):
      raise UserError(f'{prefix}.array_record has {self._reader.num_records()} records but '
                      f'{prefix}.lengths.npy {len(lengths)}: delete {prefix}.* to rebuild')

  def get(self, indices):
    indices = [int(i) for i in indices]
    if not indices:
      return [], []
    records = self._reader.read(indices)
    src, tgt = [], []
    for i, rec in zip(indices, records):
      ids = np.frombuffer(rec, self.dtype).astype(np.int32)
      n = int(self.src_lens[i])
      src.append(ids[:n])
      tgt.append(ids[n:])
    return src, tgt


def file_fingerprint(paths: Iterable[str]) -> list[list]:
  """(path, size, mtime) of files: a corpus changed on disk invalidates its cache."""
  out = []
  for p in paths:
    st = os.stat(p)
    out.append([os.path.abspath(p), st.st_size, int(st.st_mtime)])
  return out


def digest(path: str) -> str:
  """sha256 of a file (a vocabulary model)."""
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


Encode = Callable[[list[tuple[str, str]]], tuple[list, list]]


def build(prefix: str, chunks: Iterable[list[tuple[str, str]]], encode: Encode, *,
          vocab_size: int, source: dict, log: Callable[[str], None] = lambda m: None,
          extra: Callable[[], dict] = dict) -> CachedPairs:
  """Tokenizes text pairs chunk by chunk into PREFIX.* (see the module docstring).

  Files are written under temporary names and renamed when complete, the .json last, so an
  interrupted build leaves no cache that looks complete.

  Args:
    prefix: path prefix of the cache files.
    chunks: lists of (source text, target text) pairs, in corpus order.
    encode: pairs -> (source id lists, target id lists).
    vocab_size: the largest id + 1 (uint16 records when it fits).
    source: what the pairs and vocabulary are (compared on open; see open_or_build).
    log: progress messages.
    extra: called after the last chunk; its keys are stored in the .json (e.g. skipped pairs).
  """
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(prefix) or '.', exist_ok=True)
  log(f'token cache: tokenizing into {prefix}.array_record (once: later starts read it)')
  dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
  tmp = f'{prefix}.tmp{os.getpid()}'
  writer = array_record_module.ArrayRecordWriter(tmp + '.array_record', _WRITER_OPTIONS)
  lengths: list[np.ndarray] = []
  n = 0
  t0 = last = time.perf_counter()
  try:
    for chunk in chunks:
      src, tgt = encode(chunk)
      lens = np.empty((len(src), 2), np.int32)
      for j, (s, t) in enumerate(zip(src, tgt)):
        lens[j] = len(s), len(t)
        writer.write(np.concatenate([np.asarray(s, dtype), np.asarray(t, dtype)]).tobytes())
      lengths.append(lens)
      n += len(src)
      if time.perf_counter() - last > 30:
        last = time.perf_counter()
        log(f'token cache: {n:,} pairs tokenized ({n / (last - t0):,.0f} pairs/s)')
    writer.close()
    np.save(tmp + '.lengths.npy', np.concatenate(lengths) if lengths
            else np.zeros((0, 2), np.int32))
    meta = {'format': FORMAT, 'dtype': np.dtype(dtype).name, 'num_pairs': n,
            'source': source, 'seconds': round(time.perf_counter() - t0, 1), **extra()}
    with open(tmp + '.json', 'w') as f:
      json.dump(meta, f, indent=1)
    os.replace(tmp + '.array_record', prefix + '.array_record')
    os.replace(tmp + '.lengths.npy', prefix + '.lengths.npy')
    os.replace(tmp + '.json', prefix + '.json')  # last: its presence means "complete"
  finally:
    if writer.is_open():
      writer.close()
    for ext in ('.array_record', '.lengths.npy', '.json'):
      if os.path.exists(tmp + ext):
        os.remove(tmp + ext)
  log(f'token cache: {n:,} pairs tokenized in {meta["seconds"]:.0f} s into {prefix}.array_record')
  return CachedPairs(prefix)


def open_or_build(prefix: str, chunks_fn: Callable[[], Iterable[list[tuple[str, str]]]],
                  encode: Encode, *, vocab_size: int, source: dict,
                  log: Callable[[str], None] = lambda m: None,
                  extra: Callable[[], dict] = dict) -> tuple[CachedPairs, bool]:
  """The cache at PREFIX if it was built from `source`, else builds it (see build()).

  Concurrent callers (several processes of one job sharing a workdir) wait on a file lock:
  one builds, the others open what it built.

  Returns:
    (the pairs, whether this call built them).
  """
  os.makedirs(os.path.dirname(prefix) or '.', exist_ok=True)
  with open(prefix + '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even on a crash
    if os.path.isfile(prefix + '.json'):
      with open(prefix + '.json') as f:
        meta = json.load(f)
      if meta.get('format') == FORMAT and meta.get('source') == source:
        return CachedPairs(prefix), False
      log(f'token cache {prefix}: built from another corpus or vocabulary; rebuilding')
      os.remove(prefix + '.json')
    return build(prefix, chunks_fn(), encode, vocab_size=vocab_size, source=source, log=log,
                 extra=extra), True
