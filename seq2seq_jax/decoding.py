"""Decoding: beam search, greedy search and sampling, each one `lax.while_loop` under jit.

All three drive a model through one callback,
  tokens_to_logits(last_tokens int32 [N], cache) -> (logits [N, vocab], new_cache),
where every array leaf of `cache` has leading dimension N. Outputs never include BOS,
include EOS where a hypothesis ends, and are padded with 0 after it. Scores are summed
log-probabilities under the model's full softmax; PAD (0) and BOS are never generated.
"""
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

PAD_ID = 0
TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
  """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016, Eq. 14)."""
  return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


def _log_probs(logits: jax.Array, bos_id: int) -> jax.Array:
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return logp.at[..., PAD_ID].set(-jnp.inf).at[..., bos_id].set(-jnp.inf)


def _tile(cache: Any, k: int) -> Any:
  """[B, ...] -> [B * k, ...], item-major (all beams of item 0 first)."""
  return jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), cache)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=(
    'batch_size', 'beam_size', 'max_len', 'bos_id', 'eos_id', 'alpha'))
def beam_search(tokens_to_logits: TokensToLogits, cache: Any, *, batch_size: int,
                beam_size: int, max_len: int, bos_id: int, eos_id: int,
                alpha: float = 0.6) -> tuple[jax.Array, jax.Array]:
  """Beam search with the GNMT length penalty and exact early stopping.

  Args:
    tokens_to_logits: the model callback (see module docstring); called with
      batch_size * beam_size rows, item-major.
    cache: pytree of arrays with leading dim batch_size; tiled to batch * beam here.
    batch_size: number of items.
    beam_size: hypotheses kept per item.
    max_len: maximum output length (tokens, EOS included).
    bos_id: the first input token.
    eos_id: the end token.
    alpha: length-penalty exponent; 0 ranks by plain log-probability.

  Returns:
    (sequences int32 [batch, beam, max_len], scores float32 [batch, beam]), best first.
    A hypothesis that reaches max_len without EOS is scored like a finished one.
  """
  b, k = batch_size, beam_size
  neg_inf = jnp.float32(-jnp.inf)
  best_possible_lp = length_penalty(jnp.int32(max_len), alpha)

  def cond(s):
    i, _, live_lp, _, fin_scores, _ = s
    # Log-probs only fall as a hypothesis grows and the penalty divisor is largest at
    # max_len, so live_lp / lp(max_len) bounds every score a live beam can still reach.
    bound = live_lp[:, 0] / best_possible_lp
    done = jnp.all(fin_scores[:, -1] >= bound)
    return (i < max_len) & ~done

  def body(s):
    i, live_seqs, live_lp, fin_seqs, fin_scores, c = s
    last = jnp.where(i == 0, bos_id, live_seqs[:, :, jnp.maximum(i - 1, 0)]).reshape(b * k)
    old_leaves = jax.tree.leaves(c)
    logits, c = tokens_to_logits(last.astype(jnp.int32), c)
    # A leaf the callback hands back untouched (e.g. the encoder's cross-attention K/V) still
    # holds its tiled initial value, identical across the beams of an item, so reordering
    # beams cannot change it: skip its (large) gather.
    changed = [new is not old for new, old in zip(jax.tree.leaves(c), old_leaves)]
    logp = _log_probs(logits, bos_id).reshape(b, k, -1)
    vocab = logp.shape[-1]
    cand = (live_lp[:, :, None] + logp).reshape(b, k * vocab)
    # 2k candidates: even if k of them end here, k can stay live.
    n = min(2 * k, k * vocab)
    cand_lp, cand_idx = lax.top_k(cand, n)
    src_beam, token = cand_idx // vocab, cand_idx % vocab
    seqs = jnp.take_along_axis(live_seqs, src_beam[:, :, None], axis=1)
    seqs = lax.dynamic_update_slice_in_dim(seqs, token[:, :, None].astype(jnp.int32), i, axis=2)
    ends = (token == eos_id) | (i + 1 == max_len)

    # Finished: merge the new endings into the k best so far.
    new_scores = jnp.where(ends, cand_lp / length_penalty(i + 1, alpha), neg_inf)
    all_scores = jnp.concatenate([fin_scores, new_scores], axis=1)
    all_seqs = jnp.concatenate([fin_seqs, seqs], axis=1)
    fin_scores, top = lax.top_k(all_scores, k)
    fin_seqs = jnp.take_along_axis(all_seqs, top[:, :, None], axis=1)

    # Live: the k best that did not end.
    live_cand = jnp.where(ends, neg_inf, cand_lp)
    live_lp, top = lax.top_k(live_cand, k)
    live_seqs = jnp.take_along_axis(seqs, top[:, :, None], axis=1)
    rows = (jnp.arange(b)[:, None] * k + jnp.take_along_axis(src_beam, top, axis=1)).reshape(-1)
    leaves, treedef = jax.tree.flatten(c)
    c = jax.tree.unflatten(treedef, [jnp.take(x, rows, axis=0) if ch else x
                                     for x, ch in zip(leaves, changed)])
    return i + 1, live_seqs, live_lp, fin_seqs, fin_scores, c

  init_lp = jnp.tile(jnp.array([0.0] + [-jnp.inf] * (k - 1), jnp.float32), (b, 1))
  zeros = jnp.zeros((b, k, max_len), jnp.int32)
  state = (jnp.int32(0), zeros, init_lp, zeros, jnp.full((b, k), neg_inf), _tile(cache, k))
  _, _, _, fin_seqs, fin_scores, _ = lax.while_loop(cond, body, state)
  # Empty slots (fewer than k hypotheses exist) come back as all-zero sequences.
  fin_seqs = jnp.where(jnp.isfinite(fin_scores)[:, :, None], _zero_after_eos(fin_seqs, eos_id), 0)
  return fin_seqs, fin_scores


def _zero_after_eos(seqs: jax.Array, eos_id: int) -> jax.Array:
  ended_before = jnp.cumsum(seqs == eos_id, axis=-1) - (seqs == eos_id)
  return jnp.where(ended_before > 0, 0, seqs)


def _filter_logits(logits: jax.Array, top_k: int, top_p: float) -> jax.Array:
  """Keeps the top_k tokens and/or the smallest set with probability >= top_p."""
  if top_k:
    kth = lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep a token if the mass strictly before it is < top_p (the top token always stays).
    before = jnp.cumsum(probs, axis=-1) - probs
    cutoff_count = jnp.sum(before < top_p, axis=-1, keepdims=True)
    threshold = jnp.take_along_axis(sorted_logits, cutoff_count - 1, axis=-1)
    logits = jnp.where(logits < threshold, -jnp.inf, logits)
  return logits


def _sequential(tokens_to_logits, cache, rng, *, batch_size, max_len, bos_id, eos_id,
                temperature, top_k, top_p):
  """Greedy (temperature 0) or ancestral sampling, one token per row per step."""

  def cond(s):
    i, _, _, finished, _, _ = s
    return (i < max_len) & ~jnp.all(finished)

  def body(s):
    i, seqs, scores, finished, c, key = s
    last = jnp.where(i == 0, bos_id, seqs[:, jnp.maximum(i - 1, 0)])
    logits, c = tokens_to_logits(last.astype(jnp.int32), c)
    logp = _log_probs(logits, bos_id)
    if temperature == 0.0:
      token = jnp.argmax(logp, axis=-1)
    else:
      key, sub = jax.random.split(key)
      scaled = _filter_logits(jnp.where(jnp.isfinite(logp), logp / temperature, -jnp.inf),
                              top_k, top_p)
      token = jax.random.categorical(sub, scaled, axis=-1)
    token = jnp.where(finished, PAD_ID, token).astype(jnp.int32)
    gained = jnp.take_along_axis(logp, token[:, None], axis=-1)[:, 0]
    scores = scores + jnp.where(finished, 0.0, gained)
    seqs = lax.dynamic_update_slice_in_dim(seqs, token[:, None], i, axis=1)
    return i + 1, seqs, scores, finished | (token == eos_id), c, key

  state = (jnp.int32(0), jnp.zeros((batch_size, max_len), jnp.int32),
           jnp.zeros((batch_size,), jnp.float32), jnp.zeros((batch_size,), bool), cache, rng)
  _, seqs, scores, _, _, _ = lax.while_loop(cond, body, state)
  return seqs, scores


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=(
    'batch_size', 'max_len', 'bos_id', 'eos_id'))
def greedy_search(tokens_to_logits: TokensToLogits, cache: Any, *, batch_size: int,
                  max_len: int, bos_id: int, eos_id: int) -> tuple[jax.Array, jax.Array]:
  """The most probable token at every step.

  Returns:
    (sequences int32 [batch, max_len], scores float32 [batch] = summed log-probs).
  """
  return _sequential(tokens_to_logits, cache, jax.random.key(0), batch_size=batch_size,
                     max_len=max_len, bos_id=bos_id, eos_id=eos_id, temperature=0.0,
                     top_k=0, top_p=1.0)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=(
    'batch_size', 'max_len', 'bos_id', 'eos_id', 'temperature', 'top_k', 'top_p'))
def sample(tokens_to_logits: TokensToLogits, cache: Any, rng: jax.Array, *, batch_size: int,
           max_len: int, bos_id: int, eos_id: int, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """Ancestral sampling from softmax(logits / temperature), optionally top-k / nucleus.

  temperature=0 is greedy search exactly. Scores are the summed log-probabilities of the
  sampled tokens under the unmodified model distribution.

  Returns:
    (sequences int32 [batch, max_len], scores float32 [batch]).
  """
  return _sequential(tokens_to_logits, cache, rng, batch_size=batch_size, max_len=max_len,
                     bos_id=bos_id, eos_id=eos_id, temperature=float(temperature),
                     top_k=int(top_k), top_p=float(top_p))
