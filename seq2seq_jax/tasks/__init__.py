"""Task registry: `config.task` names a module `seq2seq_jax.tasks.<name>` exporting `Task`.

A task owns everything domain-specific: the dataset, how inputs are read and batched, the
target vocabulary, what a prediction looks like as text, and how predictions are scored. The
trainer never looks inside: `seq2seq_jax/tasks/base.py` declares every method and attribute it
reads (the `Task` Protocol; `BaseTask` holds the defaults a new task inherits). Where a task's
examples come from is one of the named sources of `seq2seq_jax/data/sources.py`.
"""
import importlib

from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks.base import Task


def get_task(config) -> Task:
  """Returns the Task for `config.task`; UserError if there is no such task."""
  name = config.get('task', None)
  if not name or not isinstance(name, str) or not name.isidentifier():
    raise UserError(f'config.task must be a task module name, got {name!r}')
  try:
    module = importlib.import_module(f'seq2seq_jax.tasks.{name}')
  except ModuleNotFoundError as e:
    if e.name == f'seq2seq_jax.tasks.{name}':
      raise UserError(f'unknown task {name!r} (no seq2seq_jax/tasks/{name}.py)') from None
    raise
  return module.Task(config)
