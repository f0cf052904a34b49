"""Task registry: `config.task` names a module `seq2seq_jax.tasks.<name>` exporting `Task`.

A task owns everything domain-specific: the dataset, the tokenizers, what a prediction
looks like as text, and how predictions are scored. The trainer never looks inside.

  Task(config)                      cheap: must not load data (used by --mode=info)
  .src_vocab_size, .tgt_vocab_size  ints
  .best_metric, .best_mode          e.g. 'wer', 'min': which eval metric picks the best ckpt
  .train_data()  -> (src, tgt)      lists of int32 id arrays, no BOS/EOS
  .eval_loss_data(split) -> (src, tgt)    every pair of the split (for eval loss)
  .eval_set(split) -> EvalSet       unique sources with all their references
  .encode_source(text) -> (ids, n_unknown)
  .decode_target(ids) -> str        stops at EOS, drops padding
  .score(hyps, refs) -> dict        metric name -> value (percent for error rates)
"""
import importlib

from seq2seq_jax.errors import UserError


def get_task(config):
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
