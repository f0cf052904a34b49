"""Datasets built once into a folder of the data dir, safely for readers and racing builders.

A builder writes everything into a temporary folder beside the final one, the marker file
(its spec or info) last, and renames the folder into place: a reader sees all of it or none,
an interrupted build leaves only a temporary folder (removed), and when two processes build the
same dataset at once the first rename wins and the other's identical copy is dropped.
"""
import contextlib
import os
import shutil
import tempfile
from typing import Iterator


def is_built(out: str, marker: str) -> bool:
  """Whether `out` holds a complete dataset (its marker file exists)."""
  return os.path.isfile(os.path.join(out, marker))


@contextlib.contextmanager
def building(out: str, marker: str) -> Iterator[str]:
  """Yields an empty temporary folder to build `out` in; when the block ends, the folder
  (which must now hold `marker`) becomes `out`. On an error nothing is left behind."""
  root = os.path.dirname(out) or '.'
  os.makedirs(root, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(out)}-', dir=root)
  try:
    yield tmp
    if not is_built(tmp, marker):
      raise RuntimeError(f'dataset build for {out} finished without writing {marker}')
    try:
      os.rename(tmp, out)
    except OSError:  # another process finished first: its copy is the same
      if not is_built(out, marker):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
