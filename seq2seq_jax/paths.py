"""Paths on any filesystem that etils.epath reaches: local ones, gs:// (and s3://, az:// for
data files), with the operations a run needs and what each one means on an object store.

A local path keeps the os module's semantics (an atomic rename, appends, flock). An object
store has none of them, and each operation here has its remote equivalent:

  write_atomic  local: a temporary file renamed over the old one. Remote: one object upload,
                which readers see whole or not at all (the old object until it completes).
  append        local: an append. Remote: the object is rewritten with the bytes added at its
                end (objects cannot grow in place); one writer per file (the run's process 0).
  rename        local: os.replace, atomic. Remote: copy, then delete (not atomic; a crash
                between the two leaves both, and the copy is what later runs see).

Checkpoints go through orbax, which writes arrays with TensorStore: locally, and to gs:// with
TensorStore's GCS driver. orbax-checkpoint 0.12.8 builds TensorStore specs for no other
object store, so a workdir must be local (or a mounted bucket) or gs://; s3:// and the others
are refused with one line (`check`). Data files may be on any scheme whose package is there.
"""
import importlib.util
import os
import re
from typing import Iterator

from seq2seq_jax.errors import UserError

_URI = re.compile(r'^([a-zA-Z][a-zA-Z0-9+.-]*)://')
# The fsspec package that etils.epath uses for each scheme it knows (with TensorFlow
# installed it uses tf.io.gfile for gs:// instead), and the pinned version to suggest.
_PACKAGES = {'gs': ('gcsfs', 'gcsfs==2026.10.1'), 's3': ('s3fs', 's3fs'),
             'az': ('adlfs', 'adlfs'), 'hf': ('huggingface_hub', 'huggingface_hub')}
WORKDIR_SCHEMES = ('gs',)   # where orbax (TensorStore) can write checkpoints


def scheme(path: str) -> str | None:
  """'gs' for gs://bucket/x, None for a local path."""
  m = _URI.match(str(path))
  return m.group(1).lower() if m else None


def is_remote(path: str) -> bool:
  return scheme(path) is not None


def resolve(path: str) -> str:
  """A local path made absolute; a remote one as given, without a trailing slash."""
  path = str(path)
  if is_remote(path):
    return path.rstrip('/') if len(path.rstrip('/')) > len(scheme(path)) + 3 else path
  return os.path.abspath(path)


def check(path: str, what: str, workdir: bool = False) -> str:
  """`path` resolved, or one UserError line: a remote scheme that etils.epath does not know,
  whose filesystem package is not installed, or (workdir=True) where checkpoints cannot go."""
  s = scheme(path)
  if s is None:
    return resolve(path)
  if s == 'file':
    return resolve(str(path)[len('file://'):])
  if s not in _PACKAGES:
    raise UserError(f'{what} {path}: unknown filesystem {s}:// (local paths, gs://, s3://, '
                    'az:// and hf:// are understood)')
  if workdir and s not in WORKDIR_SCHEMES:
    raise UserError(f'{what} {path}: checkpoints cannot be written to {s}:// (orbax-checkpoint '
                    'writes arrays through TensorStore to local paths and gs:// only); use a '
                    'gs:// bucket or a local or mounted directory')
  module, pin = _PACKAGES[s]
  if importlib.util.find_spec(module) is None and not (
      s == 'gs' and importlib.util.find_spec('tensorflow') is not None):
    raise UserError(f'{what} {path}: reading and writing {s}:// needs the {module} package '
                    f'(pip install {pin})')
  if not re.match(r'^[a-zA-Z0-9+.-]+://[^/]+', str(path)):
    raise UserError(f'{what} {path}: no bucket name')
  return resolve(path)


def _epath(path: str):
  from etils import epath  # pylint: disable=g-import-not-at-top
  return epath.Path(path)


def join(*parts: str) -> str:
  return os.path.join(*parts)   # '/'-separated on POSIX, also for gs://bucket/...


def exists(path: str) -> bool:
  return os.path.exists(path) if not is_remote(path) else _epath(path).exists()


def isdir(path: str) -> bool:
  return os.path.isdir(path) if not is_remote(path) else _epath(path).is_dir()


def listdir(path: str) -> list[str]:
  """Names in a directory; [] if it does not exist."""
  if not is_remote(path):
    return os.listdir(path) if os.path.isdir(path) else []
  p = _epath(path)
  return [c.name for c in p.iterdir()] if p.is_dir() else []


def makedirs(path: str) -> None:
  if is_remote(path):
    _epath(path).mkdir(parents=True, exist_ok=True)   # (object stores: nothing to make)
  else:
    os.makedirs(path, exist_ok=True)


def open_file(path: str, mode: str = 'r'):
  """open() for a path on any filesystem ('r', 'rb', 'w', 'wb'; 'a' only locally)."""
  return open(path, mode) if not is_remote(path) else _epath(path).open(mode)


def read_bytes(path: str) -> bytes:
  with open_file(path, 'rb') as f:
    return f.read()


def read_text(path: str) -> str:
  return read_bytes(path).decode('utf-8')


def write_atomic(path: str, data: bytes | str) -> None:
  """Replaces `path` with `data`; a failed write leaves the old file (see the module doc)."""
  data = data.encode('utf-8') if isinstance(data, str) else data
  if is_remote(path):
    with _epath(path).open('wb') as f:
      f.write(data)
    return
  tmp = path + '.tmp'
  try:
    with open(tmp, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def append(path: str, data: bytes) -> None:
  """Adds `data` at the end of `path` (remote: the object is rewritten, see the module doc)."""
  if not is_remote(path):
    with open(path, 'ab') as f:
      f.write(data)
    return
  p = _epath(path)
  old = p.read_bytes() if p.exists() else b''
  with p.open('wb') as f:
    f.write(old + data)


def getsize(path: str) -> int:
  return os.path.getsize(path) if not is_remote(path) else _epath(path).stat().length


def remove(path: str) -> None:
  if is_remote(path):
    _epath(path).unlink()
  else:
    os.remove(path)


def rename(src: str, dst: str) -> None:
  """Moves a file or directory to a new name (remote: copy, then delete; not atomic)."""
  if is_remote(src):
    _epath(src).rename(dst)
  else:
    os.replace(src, dst)


def walk_files(top: str) -> Iterator[tuple[str, str]]:
  """(path relative to top, full path) of every file under `top`."""
  if not is_remote(top):
    for root, _, names in os.walk(top):
      for name in names:
        full = os.path.join(root, name)
        yield os.path.relpath(full, top), full
    return
  prefix = scheme(top) + '://'
  for root, _, names in _epath(top).walk():
    root = str(root)
    root = root if is_remote(root) else prefix + root.lstrip('/')
    for name in names:
      full = os.path.join(root, name)
      yield os.path.relpath(full[len(prefix):], top[len(prefix):]), full


def copy_tree(src: str, dst: str) -> None:
  """Copies a file, or a directory's files (not its *.lock files), from any filesystem to
  any other; what dst already holds is overwritten only file by file."""
  if not isdir(src):
    parent = os.path.dirname(dst)
    if parent:
      makedirs(parent)
    write_atomic(dst, read_bytes(src))
    return
  for rel, full in walk_files(src):
    if not rel.endswith('.lock'):
      copy_tree(full, join(dst, rel))


def local_mirror(path: str) -> str:
  """A local directory standing for a remote one, for files that only local code can write
  (SentencePiece models, token caches): $S2S_REMOTE_CACHE (default ~/.cache/seq2seq_jax)
  /<scheme>/<bucket>/<path>."""
  root = os.environ.get('S2S_REMOTE_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'seq2seq_jax')
  return os.path.join(root, scheme(path), resolve(path).split('://', 1)[1])


def glob(pattern: str) -> list[str]:
  """Paths matching a glob pattern, local or remote."""
  if not is_remote(pattern):
    import glob as glob_lib  # pylint: disable=g-import-not-at-top
    return glob_lib.glob(pattern)
  s = scheme(pattern)
  bucket, _, rest = resolve(pattern).split('://', 1)[1].partition('/')
  return [str(x) for x in _epath(f'{s}://{bucket}').glob(rest)]


def isfile(path: str) -> bool:
  return os.path.isfile(path) if not is_remote(path) else _epath(path).is_file()
