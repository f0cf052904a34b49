"""Copying and coverage (See et al. 2017), a part any attentive decoder cell can carry.

  copy      the pointer-generator (Sec. 2.2): p_gen = s(w [h*_t; s_t; x_t] + b) mixes the
            vocabulary distribution with the attention over the source positions,
            P(w) = p_gen P_vocab(w) + (1 - p_gen) sum_{i: w_i = w} a_i, over an extended
            vocabulary: source ids >= tgt_vocab_size are a source's OOV words (embedded as
            UNK, copied by id; the task assigns them). The model then returns log P
            [B, T, tgt_vocab_size + max_oovs] as its logits.
  coverage  (Sec. 2.3): c^t = sum of past attention enters every additive score (w_c c_i,
            attention/additive.py), and the loss gains coverage_loss_weight *
            sum_t sum_i min(a_i^t, c_i^t) (Eq. 12).
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp

from seq2seq_jax.data.vocab import UNK_ID
from seq2seq_jax.models import layers


def step_extras(copy: bool, coverage: bool, carry: dict[str, Any], new_carry: dict[str, Any],
                context: jax.Array, weights: jax.Array, y_emb: jax.Array,
                dense: Callable) -> dict[str, jax.Array]:
  """One decoder step's copy and coverage outputs; updates new_carry['coverage'].

  Args:
    copy, coverage: which of the two the model has.
    carry, new_carry: the decoder carry before and after the step.
    context, weights: the step's attention context h*_t and weights a^t [B, S].
    y_emb: the step's input x_t.
    dense: the decoder cell's dense-layer factory (p_gen is its submodule 'p_gen').

  Returns:
    {'coverage_loss': [B]} and/or {'attention': [B, S], 'p_gen_logit': [B]}.
  """
  extras = {}
  if coverage:                               # See et al. 2017, Eq. 10 and 12
    extras['coverage_loss'] = jnp.sum(jnp.minimum(weights, carry['coverage']), axis=-1)
    new_carry['coverage'] = carry['coverage'] + weights
  if copy:                                   # See et al. 2017, Eq. 8: p_gen from h*_t, s_t, x_t
    top = new_carry['layers'][-1]
    gen_in = [context, top['h']] + ([top['c']] if 'c' in top else []) + [y_emb]
    extras['attention'] = weights
    extras['p_gen_logit'] = dense(1, names=('embed', None), name='p_gen')(
        jnp.concatenate([v.astype(jnp.float32) for v in gen_in], -1))[..., 0].astype(
            jnp.float32)
  return extras


def in_vocab(ids: jax.Array, vocab_size: int) -> jax.Array:
  """Temporary copy ids (>= the vocabulary: a source's OOV words) embed as UNK."""
  return jnp.where(ids >= vocab_size, UNK_ID, ids)


def final_log_probs(logits: jax.Array, extras: dict[str, jax.Array], ext_ids: jax.Array,
                    max_oovs: int) -> jax.Array:
  """log P over the extended vocabulary [B, T, V + max_oovs] (Eq. 9)."""
  return layers.copy_log_probs(logits, extras['p_gen_logit'], extras['attention'], ext_ids,
                               max_oovs)


def coverage_loss(extras: dict[str, jax.Array], decoder_inputs: jax.Array,
                  weight: float) -> jax.Array:
  """weight * sum_t sum_i min(a_i^t, c_i^t) over real target steps (Eq. 12), summed over rows."""
  steps = extras['coverage_loss'] * (decoder_inputs > 0)
  return weight * jnp.sum(steps)
