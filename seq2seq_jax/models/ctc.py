"""The CTC head every model shares (joint CTC-attention: Kim, Hori and Watanabe 2017).

A linear map from the encoder outputs to the target vocabulary (blank = the padding id 0). With
`model.ctc_weight` > 0 the loss is ctc_weight * CTC + (1 - ctc_weight) * attention cross
entropy (the CTC part sown into 'losses' as 'ctc'), and the head also decodes alone
(decode.method='ctc_greedy') or rescores a beam (decode.ctc_weight). A model builds it as its
submodule `ctc_proj` (the parameter path checkpoints hold) and calls `sow_loss` in __call__.
"""
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import layers


def check_weight(weight: float) -> None:
  if not 0.0 <= weight < 1.0:
    raise UserError(f'model.ctc_weight must be in [0, 1), got {weight}')


def head(weight: float, vocab_size: int, dtype, init: Callable | None = None) -> nn.Module | None:
  """The head (a dense layer [embed, vocab]) when weight > 0, else None."""
  check_weight(weight)
  if weight <= 0:
    return None
  return layers.dense(vocab_size, ('embed', 'vocab'), dtype=dtype, init=init)


def logits(proj: nn.Module | None, memory: jax.Array) -> jax.Array:
  """CTC logits float32 [B, S', V] of encoder outputs memory [B, S', D]."""
  if proj is None:
    raise UserError("model.ctc_weight is 0: the model has no CTC head (decode.method="
                    "'ctc_greedy' and decode.ctc_weight need one)")
  return layers.constrain(proj(memory).astype(jnp.float32), ('batch', 'length', 'vocab'))


def sow_loss(model: nn.Module, weight: float, ctc_logits: jax.Array, mask: jax.Array,
             batch: dict[str, jax.Array]) -> None:
  """Sows weight * the CTC loss summed over rows into model's 'losses' (when the batch has
  targets: decoding calls __call__ without)."""
  if 'targets' in batch:
    model.sow('losses', 'ctc', weight * layers.ctc_loss_sum(ctc_logits, mask, batch['targets']))
