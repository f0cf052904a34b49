"""The Task contract (`Task`, a Protocol) and its default implementation (`BaseTask`).

A task owns everything domain-specific: the dataset (one of data/sources.py's named sources),
how an input is read and batched (token ids, feature sequences, images, waveforms), the
target vocabulary, what a prediction looks like as text, and how predictions are scored. The
trainer reads what `Task` declares and nothing else; it never reads `config.data` itself. A
new task subclasses `BaseTask`, whose defaults suit token-to-token tasks, and overrides what
differs: `Task` is the one place that lists what a task must provide.

The trainer calls, in this order:
  Task(config)          cheap: reads no data (--mode=info builds the model from it)
  setup(workdir)        once per run, before any data (e.g. train a tokenizer into workdir)
  dummy_batch(rows)     a batch of the right kinds and shapes to initialise the model
  train_data()          (sources, targets) of the training split
  make_batcher(...)     a data.pipeline.Batcher over (sources, targets)
  eval_loss_data(split), eval_set(split), collate_sources(...), decode_prediction(ids, text),
  score()               at every evaluation, and encode_source(line) in --mode=predict;
  decode_rules()        constraints on every decoded output (Whisper's prompt), or None;
  target_tokens(ids)    labels of the attention maps (--attention_maps)

Sources are whatever the model's frontend reads, one per example: id arrays without EOS
('tokens'), float feature sequences [T, F] ('features'), float images [H, W, C] ('image'),
waveforms [N] ('audio'). Targets are id arrays without BOS/EOS.
"""
import sys
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from seq2seq_jax.data import pipeline
from seq2seq_jax.data.vocab import EOS_ID

Examples = tuple[list[Any], list[np.ndarray]]


def log(msg: str) -> None:
  """Process 0 reports on stderr: stdout carries only results (eval JSON, predictions)."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    print(msg, file=sys.stderr, flush=True)


@runtime_checkable
class Task(Protocol):
  """Everything the trainer, the evaluation and prediction read of a task.

  Attributes:
    src_vocab_size, tgt_vocab_size: the model's table sizes (src_vocab_size is unused by
      non-token frontends).
    input_kind: what sources are: 'tokens' | 'features' | 'image' | 'audio'; the model's
      frontend must read it (models/frontends.py INPUT_KIND).
    best_metric, best_mode: the evaluation metric that picks the best checkpoint, and 'min'
      or 'max'.
    eval_batch_size: rows per evaluation / decoding batch (data.eval_batch_size).
  """
  src_vocab_size: int
  tgt_vocab_size: int
  input_kind: str
  best_metric: str
  best_mode: str
  eval_batch_size: int

  def setup(self, workdir: str) -> None:
    """Prepares what the run needs in `workdir` (a tokenizer, a vocabulary file)."""

  def dummy_batch(self, rows: int) -> dict[str, np.ndarray]:
    """Inputs of the kind and shape the model reads (values do not matter), for init."""

  def train_data(self) -> Examples:
    """(sources, targets) of every training example."""

  def make_batcher(self, sources: Any, targets: Any, *, batch_size: int, seed: int,
                   shuffle: bool, process_index: int = 0,
                   process_count: int = 1) -> pipeline.Batcher:
    """A batcher over the examples of train_data() or eval_loss_data()."""

  def eval_loss_data(self, split: str) -> Examples:
    """(sources, targets) of every example whose source eval_set(split) scores."""

  def eval_set(self, split: str) -> pipeline.EvalSet:
    """Unique sources of the split with all their references."""

  def collate_sources(self, sources: Sequence[Any], rows: int) -> dict[str, np.ndarray]:
    """Sources as one decoding batch of `rows` rows: {'inputs': ..., maybe 'inputs_mask'}."""

  def decode_prediction(self, ids: Sequence[int], source_text: str) -> str:
    """A prediction for the source given as `source_text` -> text."""

  def target_tokens(self, ids: Sequence[int]) -> list[str]:
    """Output ids -> one string per output position before EOS (attention-map labels)."""

  def score(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    """Metric name -> value for hypotheses against each source's references."""

  def encode_source(self, line: str) -> tuple[Any, int]:
    """One --mode=predict input line -> (source, how many of its symbols are unknown)."""

  def decode_rules(self) -> Any:
    """decoding.Rules every output obeys (a forced prefix, suppressed tokens), or None."""


class BaseTask:
  """The default implementation of `Task`: defaults suit a token-to-token task with length
  buckets (`data.buckets`).

  Attributes every task sets:
    src_vocab_size, tgt_vocab_size: ints (src_vocab_size is unused by non-token frontends).
    best_metric, best_mode: the eval metric that picks the best checkpoint, 'min' or 'max'.
    eval_batch_size: rows per evaluation / decoding batch (config data.eval_batch_size).
    eval_max_examples: > 0: evaluate on that many examples of a split, spread evenly over it
      (see `eval_subset`); 0: the whole split. The same in every task.
  """
  best_metric = 'loss'
  best_mode = 'min'
  input_kind = 'tokens'   # what sources are: 'tokens' | 'features' | 'image' (models/frontends/)
  src_vocab_size = 0
  tgt_vocab_size = 0

  def __init__(self, config: Any):
    self.config = config
    self.data = config.data
    self.seed = int(config.get('seed', 0))
    self.eval_batch_size = int(self.data.get('eval_batch_size', 64))
    self.eval_max_examples = int(self.data.get('eval_max_examples', 0))
    self.buckets = tuple(self.data.get('buckets', ()))

  # --- set-up and training data ----------------------------------------------------------
  def setup(self, workdir: str) -> None:
    """Prepares what the run needs in `workdir` (default: nothing)."""
    del workdir

  def dummy_batch(self, rows: int) -> dict[str, np.ndarray]:
    """Inputs of the kind and shape the model reads (values do not matter), for init."""
    z = np.zeros((rows, 8), np.int32)
    return {'inputs': z, 'decoder_inputs': z}

  def train_data(self) -> Examples:
    """(sources, targets) of every training example."""
    raise NotImplementedError

  def make_batcher(self, sources: Sequence[Any], targets: Sequence[np.ndarray], *,
                   batch_size: int, seed: int, shuffle: bool, process_index: int = 0,
                   process_count: int = 1) -> pipeline.Batcher:
    """A batcher over the examples (default: token length buckets of data.buckets).

    Args:
      sources, targets: from train_data() or eval_loss_data().
      batch_size: GLOBAL rows per batch.
      seed: shuffling seed.
      shuffle: True for training, False for an evaluation pass.
      process_index, process_count: which slice of each global batch this process loads.
    """
    return pipeline.TokenBatcher(sources, targets, batch_size=batch_size, buckets=self.buckets,
                                 seed=seed, shuffle=shuffle, process_index=process_index,
                                 process_count=process_count)

  # --- evaluation --------------------------------------------------------------------------
  def eval_subset(self, items: Sequence[Any]) -> list[Any]:
    """The items an evaluation uses: all, or data.eval_max_examples spread evenly.

    Spread rather than the first n: a split in some order (alphabetical, by document, by
    number) is then still represented as a whole.
    """
    n = self.eval_max_examples
    if 0 < n < len(items):
      return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]
    return list(items)

  def eval_loss_data(self, split: str) -> Examples:
    """(sources, targets) of every example whose source eval_set(split) scores."""
    raise NotImplementedError

  def eval_set(self, split: str) -> pipeline.EvalSet:
    """Unique sources of the split (after eval_subset) with all their references."""
    raise NotImplementedError

  def collate_sources(self, sources: Sequence[Any], rows: int) -> dict[str, np.ndarray]:
    """Sources as one decoding batch of `rows` rows: {'inputs': ..., maybe 'inputs_mask'}.

    Default: id arrays + EOS, padded to a length from data.buckets.
    """
    return pipeline.collate_tokens(sources, rows, self.buckets)

  def decode_target(self, ids: Sequence[int]) -> str:
    """Output ids -> text; stops at EOS, skips padding."""
    raise NotImplementedError

  def decode_prediction(self, ids: Sequence[int], source_text: str) -> str:
    """A prediction for the source given as `source_text` -> text (default: decode_target).

    Tasks whose outputs can point into their source (copying: temporary ids for the source's
    out-of-vocabulary words) override it to map those ids back.
    """
    del source_text
    return self.decode_target(ids)

  def target_tokens(self, ids: Sequence[int]) -> list[str]:
    """Output ids -> one string per output position before EOS (attention-map labels)."""
    out = []
    for i in ids:
      if int(i) == EOS_ID:
        break
      out.append(self.decode_target([int(i)]) or '?')
    return out

  def score(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    """Metric name -> value for hypotheses against each source's references."""
    raise NotImplementedError

  def decode_rules(self) -> Any:
    """decoding.Rules every output obeys (a forced prefix, suppressed tokens; a pretrained
    model's conventions), or None (default: none)."""
    return None

  # --- prediction ----------------------------------------------------------------------------
  def encode_source(self, line: str) -> tuple[Any, int]:
    """One --mode=predict input line -> (source, how many of its symbols are unknown)."""
    raise NotImplementedError
