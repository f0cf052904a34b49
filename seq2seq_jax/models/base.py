"""The Model contract (`Model`, a Protocol) and the defaults of its optional parts.

The trainer, the steps and decoding read what `Model` declares and nothing else; the
meaning of each method's arguments is in models/__init__.py's docstring. A model is a Flax
Linen module; one without a CTC head inherits `ModelDefaults` for the optional part:

  class Model(base.ModelDefaults, nn.Module):
    ...
"""
from typing import Any, Protocol, runtime_checkable

import jax

from seq2seq_jax.errors import UserError


@runtime_checkable
class Model(Protocol):
  """What the trainer, the steps and decoding read of a model (models/__init__.py says what
  each argument holds).

  Attributes:
    src_vocab_size, tgt_vocab_size: the table sizes the task gave.
    frontend: what the encoder reads (models/frontends.py); the trainer checks it against the
      task's input_kind.
    ctc_weight: > 0: the model has a CTC head on its encoder and sows ctc_weight * CTC into
      'losses'; the train step weights the attention cross entropy by 1 - ctc_weight, and
      decode.method='ctc_greedy' / decode.ctc_weight read ctc_logits.
  """
  src_vocab_size: int
  tgt_vocab_size: int
  frontend: Any
  ctc_weight: float

  def init(self, rngs: Any, *args: Any, **kwargs: Any) -> Any:
    """Flax: the variables of the module."""

  def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any:
    """Flax: runs a method (default __call__) with the variables."""

  def __call__(self, batch: dict[str, jax.Array], *, train: bool = False) -> jax.Array:
    """Teacher-forced logits float32 [B, T, tgt_vocab]."""

  def init_cache(self, inputs: jax.Array, max_len: int, beam_size: int = 1,
                 inputs_mask: jax.Array | None = None) -> Any:
    """Runs the frontend and the encoder: the decoding cache (leaves with leading dim B)."""

  def decode_step(self, last_tokens: jax.Array, cache: Any) -> tuple[jax.Array, Any]:
    """One incremental decoder step: (logits float32 [N, tgt_vocab], new cache)."""

  def ctc_logits(self, inputs: jax.Array,
                 inputs_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """The CTC head's (log-probabilities [B, T', tgt_vocab], mask [B, T']) (ctc_weight > 0)."""


class ModelDefaults:
  """The optional parts of `Model` for a model that has none of them: no CTC head.

  Plain class attributes, not module fields: a config cannot set them on such a model.
  """
  ctc_weight = 0.0

  def ctc_logits(self, inputs, inputs_mask=None):
    del inputs, inputs_mask
    raise UserError(f'model {type(self).__module__.rpartition(".")[2]!r} has no CTC head '
                    "(decode.method='ctc_greedy' and decode.ctc_weight need one)")
