"""Decoding: beam search, greedy search and sampling, each one `lax.while_loop` under jit.

All three drive a model through one callback,
  tokens_to_logits(last_tokens int32 [N], cache) -> (logits [N, vocab], new_cache),
where every array leaf of `cache` has leading dimension N (N = batch * beam for beam search,
item-major: all beams of item 0 first). Outputs never include BOS, include EOS where a
hypothesis ends, and are padded with 0 after it.

Scores are log-probabilities under the model's softmax over the full vocabulary, except that
PAD (id 0) and `bos_id` are never generated: their log-probability is forced to -inf after
the log_softmax (the other tokens keep their log-probabilities, which then sum to slightly less
than 1). A trained model gives both ~zero mass, since neither ever appears as a target, and
emitting PAD would end a sequence silently. This is fixed behaviour, not an option.

Only jnp operations act on the batch axis, so every search works unchanged when the cache is
sharded over devices along it. Beams are reordered within an item by a gather batched over
items, which the partitioner keeps local; `lax.top_k` however is replicated by XLA (jax 0.10,
CPU), i.e. each step all-gathers the [batch, beam * vocab] candidate scores. A sort-based
top-k would stay sharded but is two orders of magnitude slower on CPU at vocab 32k.
An `eos_id` outside the vocabulary is allowed: it never ends a hypothesis, so every search
runs exactly `max_len` steps (the decode benchmark uses this).

Per-item cache entries (`PerItem`): by default beam search tiles every cache leaf to
batch * beam rows and gathers the rows each step as beams are reselected. For large buffers
(a Transformer's self-attention K/V) that gather, and the copy back into the loop state,
cost more memory traffic than the model step itself. A model may instead wrap an entry in
`PerItem(value, beam_size)`: one [batch, ...] value shared by all beams of an item, which
beam search neither tiles nor reorders. The model then owns the beam bookkeeping, e.g. it
keeps every beam's K/V in a slot of its own and a small (reordered) ancestry mask saying
which slot holds each hypothesis's past (see models/transformer/).
"""
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from seq2seq_jax.errors import UserError

PAD_ID = 0
TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def length_penalty(length: jax.Array | int, alpha: float) -> jax.Array:
  """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016, Eq. 14)."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _log_probs(logits: jax.Array, bos_id: int) -> jax.Array:
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  # Out-of-range ids are dropped by the scatter, so a bos_id beyond the vocabulary is fine.
  return logp.at[..., PAD_ID].set(-jnp.inf).at[..., bos_id].set(-jnp.inf)


def _gather_beams(x: jax.Array, beam_idx: jax.Array) -> jax.Array:
  """x [B, K, ...], beam_idx int [B, J] -> [B, J, ...]: x[b, beam_idx[b, j]].

  A gather batched over items: with B sharded over devices each device only reads its own
  rows, so reordering beams needs no communication.
  """
  return jax.vmap(lambda xb, ib: xb[ib])(x, beam_idx)


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise UserError(message)


@jax.tree_util.register_pytree_node_class
class PerItem:
  """A cache entry held once per item ([batch, ...]) for all `beam_size` beams of it.

  Beam search neither tiles nor reorders it; greedy search and sampling need beam_size 1.
  """

  def __init__(self, value: Any, beam_size: int):
    self.value = value
    self.beam_size = beam_size

  def tree_flatten(self):
    return (self.value,), self.beam_size

  @classmethod
  def tree_unflatten(cls, beam_size, children):
    return cls(children[0], beam_size)

  def __repr__(self):
    return f'PerItem({self.value!r}, beam_size={self.beam_size})'


def _is_per_item(x: Any) -> bool:
  return isinstance(x, PerItem)


def _check_per_item(cache: Any, beam_size: int, search: str) -> None:
  for x in jax.tree.leaves(cache, is_leaf=_is_per_item):
    if _is_per_item(x):
      _check(x.beam_size == beam_size,
             f'the decoding cache was built for beam_size={x.beam_size} but {search} runs '
             f'beam_size={beam_size}: pass beam_size={beam_size} to init_cache')


LENGTH_NORMS = ('gnmt', 'length', 'length_eos')


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=(
    'batch_size', 'beam_size', 'max_len', 'bos_id', 'eos_id', 'alpha', 'length_norm',
    'patience', 'prefix_len'))
def beam_search(tokens_to_logits: TokensToLogits, cache: Any, *, batch_size: int,
                beam_size: int, max_len: int, bos_id: int, eos_id: int,
                alpha: float = 0.6, length_norm: str = 'gnmt', patience: float = 0.0,
                prefix_len: int = 0) -> tuple[jax.Array, jax.Array]:
  """Beam search with the GNMT length penalty and exact early stopping (by default), or
  with CTranslate2's conventions (length_norm='length', patience > 0).

  Keeps two sets per item, as in flax examples/wmt: k = `beam_size` live hypotheses (no
  EOS yet) and the k best finished ones. At each step the k most probable extensions of
  the live hypotheses form the beam; those that end in EOS become finished candidates, and
  the live set is refilled with the next most probable non-EOS extensions so that k stay
  live (the 2k-candidate scheme of tensor2tensor/flax). At step `max_len` the live set is
  finished too (length max_len, no EOS). With beam_size=1 and alpha=0 this is exactly
  greedy search; with beam_size >= the number of possible hypotheses it is exhaustive.

  Args:
    tokens_to_logits: the model callback (see module docstring); called with
      batch_size * beam_size rows, item-major.
    cache: pytree of arrays with leading dim batch_size; tiled to batch * beam here and
      reordered along dim 0 as beams are reselected, except `PerItem` entries (built for
      this beam_size), which are passed through as they are.
    batch_size: number of items.
    beam_size: hypotheses kept per item (live and finished each).
    max_len: maximum output length in tokens, EOS included.
    bos_id: the first input token.
    eos_id: the end token.
    alpha: length-penalty exponent (>= 0); 0 ranks by plain log-probability.
    length_norm: 'gnmt': a finished hypothesis scores its summed log-probs over
      ((5 + length incl. EOS) / 6) ** alpha (Wu et al. 2016, Eq. 14); 'length': over
      length ** alpha, the length counting the tokens after the first `prefix_len` and
      not EOS (CTranslate2's finalize_hypothesis_score, as faster-whisper uses it with
      alpha 1; the summed log-probs include EOS's); 'length_eos': the same with EOS
      counted in the length (CTranslate2's Translator and Generator, whose hypotheses keep
      their EOS until after the ranking: include_eos_in_hypotheses).
    patience: 0: exact early stopping (below). > 0: an item stops once round(beam_size *
      patience) hypotheses have finished, counting every EOS extension among the k best
      candidates of each step (CTranslate2's BeamSearch; Kasai et al. 2022, "Beam Decoding
      with Controlled Patience"), and its answer is the best of those by score.
    prefix_len: tokens at the start of every output that the callback forces (Rules.prefix);
      only length_norm='length' and 'length_eos' read it.

  Returns:
    (sequences int32 [batch, beam, max_len], scores float32 [batch, beam]), best first;
    score = summed log-probs / the length penalty. Slots for which no hypothesis exists
    (tiny vocabularies) have score -inf and an all-zero sequence.

  Raises:
    UserError: beam_size or max_len below 1, alpha < 0, or a PerItem cache entry built for
      another beam_size.
  """
  _check(beam_size >= 1, f'beam_size must be >= 1, got {beam_size}')
  _check(max_len >= 1, f'max_len must be >= 1, got {max_len}')
  # The early-stopping bound below is only valid for a penalty that grows with length.
  _check(alpha >= 0, f'alpha must be >= 0, got {alpha}')
  _check(length_norm in LENGTH_NORMS,
         f'length_norm must be one of {LENGTH_NORMS}, got {length_norm!r}')
  _check(patience >= 0, f'patience must be >= 0, got {patience}')
  b, k = batch_size, beam_size
  neg_inf = jnp.float32(-jnp.inf)
  max_candidates = max(int(round(beam_size * patience)), 1)

  def penalty(ended_at, eos):
    """The length penalty of hypotheses whose last token is at step `ended_at`."""
    if length_norm == 'gnmt':
      return length_penalty(ended_at + 1, alpha)
    n = ended_at + 1 - prefix_len
    if length_norm == 'length':
      n = n - jnp.asarray(eos, jnp.int32)
    return jnp.maximum(n, 1).astype(jnp.float32) ** alpha

  max_len_lp = penalty(max_len - 1, False)

  def cond(s):
    i, _, live_lp, _, fin_scores, _, found = s
    if patience:
      return (i < max_len) & ~jnp.all(found >= max_candidates)
    # A live hypothesis with log-prob x <= 0 can only reach log-probs y <= x, at a length L
    # <= max_len, so its final score y / lp(L) <= x / lp(L) <= x / lp(max_len) (alpha >= 0
    # makes lp increasing and >= 1). Once no item's best live beam can reach that item's
    # k-th best finished score, further steps cannot change the result: stop.
    bound = live_lp[:, 0] / max_len_lp
    done = jnp.all(fin_scores[:, -1] >= bound)
    return (i < max_len) & ~done

  def body(s):
    i, live_seqs, live_lp, fin_seqs, fin_scores, c, found = s
    last = jnp.where(i == 0, bos_id, live_seqs[:, :, jnp.maximum(i - 1, 0)])
    old_leaves = jax.tree.leaves(c, is_leaf=_is_per_item)
    logits, c = tokens_to_logits(last.reshape(b * k).astype(jnp.int32), c)
    # A leaf the callback hands back untouched (e.g. the encoder's cross-attention K/V) still
    # holds its tiled initial value, identical across the beams of an item, so reordering
    # beams cannot change it: skip its (large) gather. PerItem entries are never reordered.
    changed = [not _is_per_item(new) and new is not old
               for new, old in zip(jax.tree.leaves(c, is_leaf=_is_per_item), old_leaves)]
    logp = _log_probs(logits, bos_id).reshape(b, k, -1)
    vocab = logp.shape[-1]
    cand = (live_lp[:, :, None] + logp).reshape(b, k * vocab)
    # At most k of the 2k best are EOS extensions (one per live beam), so at least k are not.
    n = min(2 * k, k * vocab)
    top_lp, idx = lax.top_k(cand, n)
    src_beam, token = idx // vocab, idx % vocab
    seqs = lax.dynamic_update_slice_in_dim(
        _gather_beams(live_seqs, src_beam), token[:, :, None].astype(jnp.int32), i, axis=2)
    is_eos = token == eos_id

    # Finished candidates: EOS extensions among the k best, length i + 1.
    in_beam = jnp.arange(n) < k
    ended = is_eos & in_beam & jnp.isfinite(top_lp)
    open_item = (found < max_candidates)[:, None] if patience else True
    ended = ended & open_item
    found = found + jnp.sum(ended, axis=1)
    eos_scores = jnp.where(ended, top_lp / penalty(i, True), neg_inf)
    # Live: the k best that did not end (top_k keeps the order, so these are the first k).
    live_lp, keep = lax.top_k(jnp.where(is_eos, neg_inf, top_lp), k)
    live_seqs = _gather_beams(seqs, keep)
    src_beam = jnp.take_along_axis(src_beam, keep, axis=1)

    # Merge into the k best finished; at max_len the live set counts as finished too.
    last_step = (i + 1 == max_len) & open_item
    all_scores = jnp.concatenate([
        fin_scores, eos_scores, jnp.where(last_step, live_lp / max_len_lp, neg_inf)], axis=1)
    fin_scores, top = lax.top_k(all_scores, k)
    fin_seqs = _gather_beams(jnp.concatenate([fin_seqs, seqs, live_seqs], axis=1), top)

    def reorder(x):
      x = x.reshape(b, k, *x.shape[1:])
      return _gather_beams(x, src_beam).reshape(b * k, *x.shape[2:])
    leaves, treedef = jax.tree.flatten(c, is_leaf=_is_per_item)
    c = jax.tree.unflatten(treedef, [reorder(x) if ch else x for x, ch in zip(leaves, changed)])
    return i + 1, live_seqs, live_lp, fin_seqs, fin_scores, c, found

  # Only beam 0 starts live, so the first step does not pick k copies of one hypothesis.
  init_lp = jnp.tile(jnp.array([0.0] + [-jnp.inf] * (k - 1), jnp.float32), (b, 1))
  zeros = jnp.zeros((b, k, max_len), jnp.int32)
  _check_per_item(cache, k, 'beam search')
  tiled = jax.tree.map(lambda x: x if _is_per_item(x) else jnp.repeat(x, k, axis=0),
                       cache, is_leaf=_is_per_item)                       # item-major
  state = (jnp.int32(0), zeros, init_lp, zeros, jnp.full((b, k), neg_inf), tiled,
           jnp.zeros((b,), jnp.int32))
  _, _, _, fin_seqs, fin_scores, _, _ = lax.while_loop(cond, body, state)
  # Empty slots may hold a -inf candidate's tokens: blank them.
  fin_seqs = jnp.where(jnp.isfinite(fin_scores)[:, :, None], fin_seqs, 0)
  return fin_seqs, fin_scores


@dataclasses.dataclass(frozen=True)
class Rules:
  """Constraints a task puts on every output (Whisper's decoding conventions,
  pretrained/whisper_tokens.py), applied to the logits before the search sees them.

  Attributes:
    prefix: tokens forced first, one per step (Whisper's <|lang|> <|task|> <|notimestamps|>):
      their log-probability is 0, so they add nothing to a score.
    never: tokens never emitted (Whisper's suppressed tokens); their probability mass goes
      to the others (the softmax runs without them, as CTranslate2 disables tokens).
    never_first: tokens not emitted at the first step after the prefix (suppress_blank).
    max_new: (per_input, extra), () = no limit: a row emits at most floor(per_input x its
      real inputs + extra) tokens after the prefix, then EOS is forced (a length limit by the
      input's length, ESPnet's maxlenratio: it cuts a hypothesis that runs away, repeating
      itself, short); needs the rows' input lengths (with_rules' input_lengths).
  """
  prefix: tuple[int, ...] = ()
  never: tuple[int, ...] = ()
  never_first: tuple[int, ...] = ()
  max_new: tuple[float, ...] = ()


def with_rules(tokens_to_logits: TokensToLogits, cache: Any, rules: Rules | None,
               input_lengths: jax.Array | None = None,
               eos_id: int | None = None) -> tuple[TokensToLogits, Any]:
  """A callback and cache that apply `rules` (None: the callback and cache as they are).

  The wrapped cache is {'step': int32 [N], 'model': cache} (and 'limit' int32 [N] with
  rules.max_new, from input_lengths [N] and eos_id): the step travels with each row, so every
  search tiles and reorders it like the rest.
  """
  if rules is None or rules == Rules():
    return tokens_to_logits, cache
  prefix = jnp.asarray(rules.prefix or (0,), jnp.int32)
  p = len(rules.prefix)
  if rules.max_new and (input_lengths is None or eos_id is None or len(rules.max_new) != 2):
    raise UserError('Rules.max_new = (per_input, extra) needs the rows\' input_lengths and '
                    'eos_id')

  def mask_of(ids, vocab):
    m = jnp.zeros((vocab,), bool)
    return m.at[jnp.asarray(ids, jnp.int32)].set(True) if ids else m

  def wrapped(tokens, c):
    logits, inner = tokens_to_logits(tokens, c['model'])
    vocab = logits.shape[-1]
    step = c['step'][:, None]
    never = mask_of(rules.never, vocab)
    first = never | mask_of(rules.never_first, vocab)
    logits = jnp.where(jnp.where(step == p, first, never), -jnp.inf, logits)
    if p:
      forced = prefix[jnp.minimum(step, p - 1)] == jnp.arange(vocab)
      logits = jnp.where(step < p, jnp.where(forced, 0.0, -jnp.inf), logits)
    out = {'step': c['step'] + 1, 'model': inner}
    if 'limit' in c:
      over = step - p >= c['limit'][:, None]
      logits = jnp.where(over, jnp.where(jnp.arange(vocab) == eos_id, 0.0, -jnp.inf), logits)
      out['limit'] = c['limit']
    return logits, out

  rows = jax.tree.leaves(cache, is_leaf=_is_per_item)[0]
  rows = (rows.value if _is_per_item(rows) else rows).shape[0]
  wrapped_cache = {'step': jnp.zeros((rows,), jnp.int32), 'model': cache}
  if rules.max_new:
    per_input, extra = (float(x) for x in rules.max_new)
    n = jnp.asarray(input_lengths, jnp.float32)
    wrapped_cache['limit'] = jnp.maximum(jnp.floor(per_input * n + extra), 0).astype(jnp.int32)
  return wrapped, wrapped_cache


def _filter_logits(logits: jax.Array, top_k: int, top_p: float) -> jax.Array:
  """Keeps the top_k tokens and/or the smallest set with probability >= top_p.

  Top-p is nucleus sampling (Holtzman et al. 2020, Eq. 3), applied after top-k. Tokens tied
  with the last kept one are kept too.
  """
  if 0 < top_k < logits.shape[-1]:
    kth = lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep a token if the mass strictly before it is < top_p (the top token always stays).
    before = jnp.cumsum(probs, axis=-1) - probs
    keep = jnp.sum(before < top_p, axis=-1, keepdims=True)
    threshold = jnp.take_along_axis(sorted_logits, keep - 1, axis=-1)
    logits = jnp.where(logits < threshold, -jnp.inf, logits)
  return logits


def _sequential(tokens_to_logits, cache, rng, *, batch_size, max_len, bos_id, eos_id,
                temperature, top_k, top_p):
  """Greedy (temperature 0) or ancestral sampling, one token per row per step."""
  _check(max_len >= 1, f'max_len must be >= 1, got {max_len}')
  _check_per_item(cache, 1, 'greedy search or sampling')

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
      scaled = _filter_logits(logp / temperature, top_k, top_p)
      token = jax.random.categorical(sub, scaled, axis=-1)
    # Ended rows still run through the model (the batch is processed as a whole) but
    # their outputs are PAD and add nothing to the score.
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
  """The most probable token at every step; stops once every row has emitted EOS.

  Args:
    tokens_to_logits: the model callback (see module docstring), called with batch_size rows.
    cache: pytree of arrays with leading dim batch_size.
    batch_size: number of items.
    max_len: maximum output length in tokens, EOS included.
    bos_id: the first input token.
    eos_id: the end token.

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
  """Ancestral sampling from softmax(logits / temperature), optionally top-k and/or nucleus.

  Args:
    tokens_to_logits: the model callback (see module docstring), called with batch_size rows.
    cache: pytree of arrays with leading dim batch_size.
    rng: a PRNG key; one split per step.
    batch_size: number of items.
    max_len: maximum output length in tokens, EOS included.
    bos_id: the first input token.
    eos_id: the end token.
    temperature: 0 is greedy search exactly (argmax); otherwise > 0.
    top_k: sample only among the top_k most probable tokens (0 = all).
    top_p: then only among the smallest set holding probability >= top_p (1 = all).

  Returns:
    (sequences int32 [batch, max_len], scores float32 [batch]): scores are the summed
    log-probabilities of the sampled tokens under the unmodified model distribution.

  Raises:
    UserError: temperature < 0, top_k < 0 or top_p outside (0, 1].
  """
  _check(temperature >= 0, f'temperature must be >= 0, got {temperature}')
  _check(top_k >= 0, f'top_k must be >= 0, got {top_k}')
  _check(0 < top_p <= 1, f'top_p must be in (0, 1], got {top_p}')
  return _sequential(tokens_to_logits, cache, rng, batch_size=batch_size, max_len=max_len,
                     bos_id=bos_id, eos_id=eos_id, temperature=float(temperature),
                     top_k=int(top_k), top_p=float(top_p))
