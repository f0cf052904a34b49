"""A run's own files: reading them (DIR/metrics.jsonl, summary.json, config.json) so that a
torn write never blocks the run, and writing them so that an OS error is one line.

A crash or a full disk in the middle of a write leaves a cut-off last line in an appended file
(metrics.jsonl) or, where a file is not replaced atomically, a cut-off JSON file. Readers drop
what does not parse, with one warning on stderr naming the file and line, and go on with the
rest: the run resumes from its checkpoints, whatever its logs hold. A write that fails (a full
disk, a read-only workdir) is one UserError line naming the path and what was being written
(`io_errors`).
"""
import contextlib
import json
import os
import sys
from typing import Any, Iterator

from seq2seq_jax import paths
from seq2seq_jax.errors import UserError


# What an out-of-space or read-only filesystem looks like when it reaches us through orbax
# and tensorstore (not always as an OSError).
_IO_FAILURES = ('RESOURCE_EXHAUSTED', 'No space left', 'Read-only file system',
                'Permission denied', 'Disk quota exceeded')


@contextlib.contextmanager
def io_errors(what: str, path: str) -> Iterator[None]:
  """Turns an OS error on the workdir (a full disk, a read-only filesystem) while `what` into
  one UserError line naming the path; what was saved before is left as it was."""
  try:
    yield
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    text = str(e)
    if not isinstance(e, OSError) and not any(k in text for k in _IO_FAILURES):
      raise
    if isinstance(e, OSError):
      why, where = e.strerror or text, e.filename or path
    else:
      why = next(k for k in _IO_FAILURES if k in text)
      why, where = ('No space left on device' if why == 'RESOURCE_EXHAUSTED' else why), path
    raise UserError(f'cannot write {where} ({what}): {why}; what was saved before is '
                    'unchanged') from None


def warn(msg: str) -> None:
  """A message for the user: stderr, never stdout (predict's stdout is predictions only)."""
  print(f'warning: {msg}', file=sys.stderr, flush=True)


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """The JSON objects of a JSON-lines file, one per line; a line that does not parse (the
  torn last line of a crash, or such a line that later appends left in the middle) is
  dropped with a warning. A missing file reads as no rows."""
  if not paths.exists(path):
    return []
  rows = []
  data = paths.read_bytes(path)
  for n, raw in enumerate(data.split(b'\n'), 1):
    if not raw.strip():
      continue
    try:
      row = json.loads(raw.decode('utf-8'))
      if not isinstance(row, dict):
        raise ValueError('not an object')
    except ValueError:
      warn(f'{path}:{n} is cut off or not JSON ({len(raw)} bytes); dropped')
      continue
    rows.append(row)
  return rows


def read_json(path: str) -> dict[str, Any] | None:
  """A JSON file's object, or None (with a warning) if it is cut off or not JSON; None
  without a warning if it does not exist."""
  if not paths.exists(path):
    return None
  try:
    obj = json.loads(paths.read_bytes(path).decode('utf-8'))
    if not isinstance(obj, dict):
      raise ValueError('not an object')
    return obj
  except ValueError:
    warn(f'{path} is cut off or not JSON; ignored')
    return None


def end_with_newline(path: str) -> None:
  """Before appending to a JSON-lines file: a torn last line (no newline) is ended, so the
  next row starts on a line of its own (readers drop the torn one). (An object store's
  object is written whole: never torn.)"""
  if paths.is_remote(path) or not os.path.exists(path) or os.path.getsize(path) == 0:
    return
  with open(path, 'rb') as f:
    f.seek(-1, os.SEEK_END)
    last = f.read(1)
  if last != b'\n':
    warn(f'{path} ends in a cut-off line (a crash or a full disk while writing); it is '
         'kept and new rows start after it')
    with open(path, 'ab') as f:
      f.write(b'\n')
