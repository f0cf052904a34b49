"""Beam search, greedy search and sampling against brute force, a reference and each other.

The "language model" is a fixed random table: logits = table[item, position, last token],
with the position and the per-item table in the cache, so every search has to tile, carry
and reorder real per-row state to get the numbers right.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax.decoding import search as decoding
from seq2seq_jax.errors import UserError

PAD, BOS, EOS = 0, 1, 2
REAL = (3, 4, 5)  # the tokens a hypothesis may hold besides EOS (PAD and BOS are forbidden)
VOCAB = 6
BATCH = 3


class TableLM:
  """logits = table[item, position, last token]; position and table live in the cache."""

  def __init__(self, seed: int, max_len: int = 4, batch: int = BATCH, eos_bias: float = 0.0):
    rng = np.random.default_rng(seed)
    self.table = (rng.normal(size=(batch, max_len, VOCAB, VOCAB)) * 2).astype(np.float32)
    self.table[..., EOS] += eos_bias
    self.cache = {'pos': jnp.zeros((batch,), jnp.int32), 'table': jnp.asarray(self.table)}

  @staticmethod
  def fn(tokens, c):
    # One function object for every test, so jit reuses compilations across tests.
    logits = c['table'][jnp.arange(tokens.shape[0]), c['pos'], tokens]
    return logits, {**c, 'pos': c['pos'] + 1}

  def logp(self, item: int, pos: int, last: int) -> np.ndarray:
    row = self.table[item, pos, last].astype(np.float64)
    lp = row - np.log(np.sum(np.exp(row)))
    lp[[PAD, BOS]] = -np.inf
    return lp

  def score(self, item: int, seq, alpha: float) -> float:
    lp, last = 0.0, BOS
    for pos, tok in enumerate(seq):
      lp += self.logp(item, pos, last)[tok]
      last = tok
    return lp / ((5 + len(seq)) / 6) ** alpha


def strip(row) -> tuple:
  return tuple(int(t) for t in np.asarray(row) if t)


def all_hypotheses(max_len: int):
  for length in range(1, max_len + 1):
    for body in itertools.product(REAL, repeat=length - 1):
      yield body + (EOS,)
  yield from itertools.product(REAL, repeat=max_len)  # reached max_len without EOS


def reference_beam_search(lm: TableLM, item: int, k: int, alpha: float, max_len: int):
  """Plain-Python beam search with the same rule, running every step (no early stopping)."""
  live, finished = [((), 0.0)], []
  for i in range(max_len):
    cands = []
    for seq, lp in live:
      logp = lm.logp(item, i, seq[-1] if seq else BOS)
      cands += [(lp + logp[t], seq + (t,)) for t in REAL + (EOS,)]
    cands.sort(key=lambda c: -c[0])
    penalty = ((5 + i + 1) / 6) ** alpha
    finished += [(lp / penalty, s) for lp, s in cands[:k] if s[-1] == EOS]
    live = [(s, lp) for lp, s in cands if s[-1] != EOS][:k]
    if i + 1 == max_len:
      finished += [(lp / penalty, s) for s, lp in live]
    finished = sorted(finished, key=lambda f: -f[0])[:k]
  return finished


def assert_hypotheses(lm, item, seqs, scores, alpha, expected_scores):
  """Each returned sequence has the returned score, and the scores are the expected ones."""
  got = [strip(s) for s in seqs]
  assert len(set(got)) == len(got)
  for seq, score in zip(got, scores):
    assert float(score) == pytest.approx(lm.score(item, seq, alpha), abs=1e-4), seq
  np.testing.assert_allclose(np.asarray(scores), expected_scores, atol=1e-4)


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_beam_as_wide_as_all_hypotheses_is_exhaustive_search(alpha):
  lm = TableLM(0)
  hyps = list(all_hypotheses(4))
  assert len(hyps) == 1 + 3 + 9 + 27 + 81
  seqs, scores = decoding.beam_search(lm.fn, lm.cache, batch_size=BATCH, beam_size=len(hyps),
                                      max_len=4, bos_id=BOS, eos_id=EOS, alpha=alpha)
  assert seqs.shape == (BATCH, len(hyps), 4) and seqs.dtype == jnp.int32
  assert scores.shape == (BATCH, len(hyps)) and scores.dtype == jnp.float32
  for item in range(BATCH):
    expected = sorted((lm.score(item, h, alpha) for h in hyps), reverse=True)
    assert_hypotheses(lm, item, seqs[item], scores[item], alpha, expected)
    # In order: the best few are the brute-force best (their gaps are far above float error).
    best = sorted(hyps, key=lambda h: -lm.score(item, h, alpha))[:3]
    assert [strip(s) for s in seqs[item, :3]] == best


calls = []


def counting_fn(tokens, c):
  jax.debug.callback(lambda pos: calls.append(int(pos[0])), c['pos'])
  return TableLM.fn(tokens, c)


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_small_beam_matches_reference_and_stops_early(alpha):
  # EOS is likely, so hypotheses finish early and the search can stop before max_len; the
  # reference runs all max_len steps, so equal results mean early stopping changed nothing.
  max_len, k = 8, 3
  lm = TableLM(2, max_len=max_len, eos_bias=3.0)
  calls.clear()
  seqs, scores = decoding.beam_search(counting_fn, lm.cache, batch_size=BATCH, beam_size=k,
                                      max_len=max_len, bos_id=BOS, eos_id=EOS, alpha=alpha)
  jax.effects_barrier()
  assert 1 < len(calls) < max_len
  for item in range(BATCH):
    ref = reference_beam_search(lm, item, k, alpha, max_len)
    assert [strip(s) for s in seqs[item]] == [s for _, s in ref]
    np.testing.assert_allclose(np.asarray(scores[item]), [sc for sc, _ in ref], atol=1e-4)


def per_item_fn(tokens, c):
  """TableLM with the table held once per item (decoding.PerItem): row r is item r // k."""
  table = c['table'].value
  assert table.shape[0] == BATCH  # not tiled to batch * beam (checked while tracing)
  item = jnp.arange(tokens.shape[0]) // (tokens.shape[0] // table.shape[0])
  return table[item, c['pos'], tokens], {**c, 'pos': c['pos'] + 1}


def test_per_item_entries_are_neither_tiled_nor_reordered():
  max_len, k = 6, 3
  lm = TableLM(3, max_len=max_len, eos_bias=1.0)
  cache = {'pos': lm.cache['pos'], 'table': decoding.PerItem(lm.cache['table'], k)}
  kwargs = dict(batch_size=BATCH, max_len=max_len, bos_id=BOS, eos_id=EOS)
  seqs, scores = decoding.beam_search(per_item_fn, cache, beam_size=k, alpha=0.6, **kwargs)
  ref_seqs, ref_scores = decoding.beam_search(lm.fn, lm.cache, beam_size=k, alpha=0.6, **kwargs)
  np.testing.assert_array_equal(seqs, ref_seqs)
  np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
  with pytest.raises(UserError, match='built for beam_size=3 but beam search runs beam_size=2'):
    decoding.beam_search(per_item_fn, cache, beam_size=2, **kwargs)
  with pytest.raises(UserError, match='built for beam_size=3 but greedy search'):
    decoding.greedy_search(per_item_fn, cache, **kwargs)
  one = {'pos': lm.cache['pos'], 'table': decoding.PerItem(lm.cache['table'], 1)}
  np.testing.assert_array_equal(decoding.greedy_search(per_item_fn, one, **kwargs)[0],
                                decoding.greedy_search(lm.fn, lm.cache, **kwargs)[0])


def test_small_beam_matches_reference_on_many_models():
  # No EOS bias: long hypotheses compete with short ones under the length penalty.
  lm = TableLM(2, max_len=6, batch=16)
  seqs, scores = decoding.beam_search(lm.fn, lm.cache, batch_size=16, beam_size=2, max_len=6,
                                      bos_id=BOS, eos_id=EOS, alpha=0.6)
  for item in range(16):
    ref = reference_beam_search(lm, item, 2, 0.6, 6)
    assert [strip(s) for s in seqs[item]] == [s for _, s in ref], item
    np.testing.assert_allclose(np.asarray(scores[item]), [sc for sc, _ in ref], atol=1e-4)


def test_beam_one_sampling_at_zero_temperature_and_top_k_one_equal_greedy():
  lm = TableLM(3, max_len=6, batch=8, eos_bias=0.5)
  kwargs = dict(batch_size=8, max_len=6, bos_id=BOS, eos_id=EOS)
  greedy, greedy_scores = decoding.greedy_search(lm.fn, lm.cache, **kwargs)
  assert len({strip(r) for r in greedy}) > 1  # the items really differ
  for item in range(8):
    assert float(greedy_scores[item]) == pytest.approx(lm.score(item, strip(greedy[item]), 0),
                                                        abs=1e-4)
  beam, beam_scores = decoding.beam_search(lm.fn, lm.cache, beam_size=1, alpha=0.0, **kwargs)
  np.testing.assert_array_equal(beam[:, 0], greedy)
  np.testing.assert_allclose(beam_scores[:, 0], greedy_scores, atol=1e-5)
  for extra in ({'temperature': 0.0}, {'temperature': 1.0, 'top_k': 1}):
    seqs, scores = decoding.sample(lm.fn, lm.cache, jax.random.key(7), **kwargs, **extra)
    np.testing.assert_array_equal(seqs, greedy)
    np.testing.assert_allclose(scores, greedy_scores, atol=1e-5)


def check_layout(seqs):
  """No PAD or BOS before the end, EOS included, nothing after it."""
  ended = 0
  for row in np.asarray(seqs).reshape(-1, seqs.shape[-1]):
    assert BOS not in row and row[0] != PAD
    if EOS in row:
      end = list(row).index(EOS)
      ended += 1
      assert (row[end + 1:] == PAD).all() and (row[:end] != PAD).all()
    else:
      assert (row != PAD).all()  # ran to max_len
  return ended


def test_eos_ends_hypotheses_and_zero_pads_after():
  lm = TableLM(4, max_len=6, eos_bias=1.0)
  kwargs = dict(batch_size=BATCH, max_len=6, bos_id=BOS, eos_id=EOS)
  seqs, scores = decoding.beam_search(lm.fn, lm.cache, beam_size=5, alpha=0.6, **kwargs)
  assert np.isfinite(scores).all()
  assert 0 < check_layout(seqs) < seqs.shape[0] * seqs.shape[1]  # both kinds occur
  # A finished hypothesis is never extended: its score is that of the tokens up to EOS.
  for item in range(BATCH):
    for j in range(5):
      assert float(scores[item, j]) == pytest.approx(lm.score(item, strip(seqs[item, j]), 0.6),
                                                     abs=1e-4)
  greedy, _ = decoding.greedy_search(lm.fn, lm.cache, **kwargs)
  assert check_layout(greedy) > 0
  # PAD and BOS are the two most likely tokens everywhere, yet never generated.
  lm.table[..., PAD] += 20
  lm.table[..., BOS] += 20
  lm.cache['table'] = jnp.asarray(lm.table)
  seqs, _ = decoding.beam_search(lm.fn, lm.cache, beam_size=5, alpha=0.6, **kwargs)
  check_layout(seqs)


@pytest.mark.parametrize('beam_size', [1, 2])
def test_length_penalty_switches_the_winner_where_predicted(beam_size):
  # One item, two competing hypotheses: "EOS" now, or "3 3 3 EOS" with a lower log-prob.
  # With beam_size 1 the short one finishes at step 1 while "3" is still live, and only the
  # correct early-stopping bound (live log-prob / lp(max_len)) keeps the search going.
  table = np.full((1, 4, VOCAB, VOCAB), -30.0, np.float32)
  table[0, 0, BOS, EOS] = 0.1
  table[0, 0, BOS, 3] = 0.0
  table[0, 1:3, 3, 3] = 0.0
  table[0, 1:3, 3, EOS] = -1.0
  table[0, 3, 3, EOS] = 0.0
  lm = TableLM(0, batch=1)
  lm.table, lm.cache = table, {'pos': jnp.zeros((1,), jnp.int32), 'table': jnp.asarray(table)}
  short, long_ = (EOS,), (3, 3, 3, EOS)
  lp_short, lp_long = lm.score(0, short, 0.0), lm.score(0, long_, 0.0)
  assert lp_long < lp_short
  # lp_short / 1 == lp_long / (9/6)^alpha  at the crossover.
  crossover = np.log(lp_long / lp_short) / np.log(9 / 6)

  def best(alpha):
    seqs, _ = decoding.beam_search(lm.fn, lm.cache, batch_size=1, beam_size=beam_size,
                                   max_len=4, bos_id=BOS, eos_id=EOS, alpha=float(alpha))
    return strip(seqs[0, 0])
  assert best(0.0) == short and best(crossover - 0.05) == short
  assert best(crossover + 0.05) == long_


def test_cache_rows_follow_their_beams():
  """The cache records each row's token history and the logits depend on all of it.

  If beam search reordered cache rows wrongly, a beam would continue from another beam's
  history and its score would not be the one computed from its own sequence.
  """
  max_len, mod = 5, 101
  rng = np.random.default_rng(5)
  table = (rng.normal(size=(BATCH, mod, VOCAB)) * 2).astype(np.float32)
  weights = np.array([1, 7, 31, 57, 83])

  def fn(tokens, c):
    rows = jnp.arange(tokens.shape[0])
    history = c['history'].at[rows, c['pos']].set(tokens)
    state = jnp.sum(history * weights, axis=1) % mod
    return c['table'][rows, state], {**c, 'history': history, 'pos': c['pos'] + 1}

  def score(item, seq):
    lp, history = 0.0, np.zeros(max_len, np.int64)
    for pos, tok in enumerate(seq):
      history[pos] = ([BOS] + list(seq))[pos]
      row = table[item, int(np.sum(history * weights) % mod)].astype(np.float64)
      lp += row[tok] - np.log(np.sum(np.exp(row)))
    return lp

  cache = {'pos': jnp.zeros((BATCH,), jnp.int32), 'table': jnp.asarray(table),
           'history': jnp.zeros((BATCH, max_len), jnp.int32)}
  seqs, scores = decoding.beam_search(fn, cache, batch_size=BATCH, beam_size=4,
                                      max_len=max_len, bos_id=BOS, eos_id=EOS, alpha=0.0)
  assert any(len(strip(s)) > 2 for s in seqs.reshape(-1, max_len))  # histories matter
  for item in range(BATCH):
    for j in range(4):
      assert float(scores[item, j]) == pytest.approx(score(item, strip(seqs[item, j])),
                                                     abs=1e-4), (item, j)


def allowed_tokens(logp: np.ndarray, temperature: float, top_k: int, top_p: float) -> set:
  """The tokens top-k then top-p sampling may pick from log-probs `logp`."""
  order = [t for t in np.argsort(-logp) if np.isfinite(logp[t])]
  if top_k:
    order = order[:top_k]
  probs = np.exp(logp[order] / temperature)
  probs /= probs.sum()
  before = np.cumsum(probs) - probs
  return {int(t) for t, b in zip(order, before) if b < top_p}


@pytest.mark.parametrize('top_k,top_p', [(2, 1.0), (0, 0.6)])
def test_sampled_tokens_stay_within_top_k_and_top_p(top_k, top_p):
  batch, max_len, temperature = 64, 4, 0.8
  lm = TableLM(6, max_len=max_len, batch=batch)
  seqs, scores = decoding.sample(lm.fn, lm.cache, jax.random.key(0), batch_size=batch,
                                 max_len=max_len, bos_id=BOS, eos_id=EOS,
                                 temperature=temperature, top_k=top_k, top_p=top_p)
  check_layout(seqs)
  excluded = 0  # positions where the filter removed a token the model allows
  for item in range(batch):
    seq = strip(seqs[item])
    assert float(scores[item]) == pytest.approx(lm.score(item, seq, 0.0), abs=1e-4)
    for pos, tok in enumerate(seq):
      logp = lm.logp(item, pos, ([BOS] + list(seq))[pos])
      allowed = allowed_tokens(logp, temperature, top_k, top_p)
      assert tok in allowed, (item, pos)
      excluded += len(allowed) < len(REAL) + 1
  assert excluded > batch  # the filter was really active
  assert len({s[0] for s in map(strip, seqs)}) > 1  # and it still samples


@pytest.mark.parametrize('temperature,top_k,top_p', [(1.0, 0, 1.0), (0.5, 3, 1.0),
                                                     (1.0, 0, 0.7)])
def test_sampling_frequencies_match_the_distribution(temperature, top_k, top_p):
  n = 4000
  lm = TableLM(7, max_len=1, batch=1)
  cache = jax.tree.map(lambda x: jnp.repeat(x, n, axis=0), lm.cache)  # n copies of one item
  seqs, _ = decoding.sample(lm.fn, cache, jax.random.key(1), batch_size=n, max_len=1,
                            bos_id=BOS, eos_id=EOS, temperature=temperature, top_k=top_k,
                            top_p=top_p)
  logp = lm.logp(0, 0, BOS)
  allowed = sorted(allowed_tokens(logp, temperature, top_k, top_p))
  assert len(allowed) > 1
  p = np.zeros(VOCAB)
  p[allowed] = np.exp(logp[allowed] / temperature)
  p /= p.sum()
  freq = np.bincount(np.asarray(seqs[:, 0]), minlength=VOCAB) / n
  np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-9)


def test_one_while_loop_and_jit_over_traced_model_state():
  lm = TableLM(8, max_len=4)
  kwargs = dict(batch_size=BATCH, max_len=4, bos_id=BOS, eos_id=EOS)

  def searches(table):
    # The callback closes over a traced array, as a model's params are inside predict_step.
    fn = lambda t, c: (c['emb'][jnp.arange(t.shape[0]), c['pos'], t] + 0 * table[0, 0, 0],
                       {**c, 'pos': c['pos'] + 1})
    cache = {'pos': jnp.zeros((BATCH,), jnp.int32), 'emb': table}
    return (decoding.beam_search(fn, cache, beam_size=3, alpha=0.6, **kwargs),
            decoding.greedy_search(fn, cache, **kwargs),
            decoding.sample(fn, cache, jax.random.key(0), **kwargs))

  jaxpr = jax.make_jaxpr(searches)(lm.cache['table'])
  text = str(jaxpr)
  assert text.count('while[') == 3  # one loop per search, no unrolled Python steps
  out = jax.jit(searches)(lm.cache['table'])
  direct = (decoding.beam_search(lm.fn, lm.cache, beam_size=3, alpha=0.6, **kwargs),
            decoding.greedy_search(lm.fn, lm.cache, **kwargs),
            decoding.sample(lm.fn, lm.cache, jax.random.key(0), **kwargs))
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(direct)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_settings_are_user_errors():
  lm = TableLM(0)
  kwargs = dict(batch_size=BATCH, max_len=4, bos_id=BOS, eos_id=EOS)
  with pytest.raises(UserError, match='beam_size'):
    decoding.beam_search(lm.fn, lm.cache, beam_size=0, **kwargs)
  with pytest.raises(UserError, match='alpha'):
    decoding.beam_search(lm.fn, lm.cache, beam_size=2, alpha=-0.5, **kwargs)
  with pytest.raises(UserError, match='top_p'):
    decoding.sample(lm.fn, lm.cache, jax.random.key(0), top_p=0.0, **kwargs)
  with pytest.raises(UserError, match='temperature'):
    decoding.sample(lm.fn, lm.cache, jax.random.key(0), temperature=-1.0, **kwargs)


def test_search_on_a_batch_sharded_over_8_devices_matches_unsharded():
  # conftest.py asks for 8 CPU devices before jax is first imported.
  assert jax.device_count() >= 8, 'conftest.py must set up 8 simulated devices'
  batch = 16
  lm = TableLM(9, max_len=5, batch=batch, eos_bias=0.5)
  kwargs = dict(batch_size=batch, max_len=5, bos_id=BOS, eos_id=EOS)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ('data',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  sharded = jax.device_put(lm.cache, sharding)
  assert len(sharded['table'].sharding.device_set) == 8

  def run_all(cache):
    return (decoding.beam_search(lm.fn, cache, beam_size=3, alpha=0.6, **kwargs),
            decoding.greedy_search(lm.fn, cache, **kwargs),
            decoding.sample(lm.fn, cache, jax.random.key(3), **kwargs))
  ref, out = run_all(lm.cache), run_all(sharded)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  for item in range(batch):
    expected = reference_beam_search(lm, item, 3, 0.6, 5)
    assert [strip(s) for s in ref[0][0][item]] == [s for _, s in expected]


def ctranslate2_beam_search(lm: TableLM, item: int, k: int, max_len: int, prefix: tuple,
                            patience: float, never: tuple = (), include_eos: bool = False):
  """CTranslate2's BeamSearch (src/decoding.cc) in plain Python, with a forced prefix and
  suppressed tokens: the 2k best candidates per step, the EOS ones among the first k
  registered, the live set refilled from the rest; the item stops once round(k * patience)
  hypotheses are registered; each scores its summed log-probs over its length after the
  prefix (length_penalty 1), EOS counted only with `include_eos` (include_eos_in_hypotheses:
  false for Whisper, true for the Translator)."""
  live, found = [((), 0.0)], []
  for i in range(max_len):
    cands = []
    for seq, lp in live:
      row = lm.table[item, i, seq[-1] if seq else BOS].astype(np.float64)
      row[[*never]] = -np.inf
      if i < len(prefix):
        row = np.where(np.arange(VOCAB) == prefix[i], 0.0, -np.inf)
      logp = row - np.log(np.sum(np.exp(row[np.isfinite(row)])))
      cands += [(lp + logp[t], seq + (t,)) for t in range(VOCAB) if np.isfinite(logp[t])]
    cands.sort(key=lambda c: -c[0])
    cands = cands[:2 * k]
    for lp, s in cands[:k]:
      if s[-1] == EOS or i + 1 == max_len:
        n = len(s) - len(prefix) - (s[-1] == EOS and not include_eos)
        found.append((lp / max(n, 1), s))
    live = [(s, lp) for lp, s in cands if s[-1] != EOS][:k]
    if len(found) >= max(round(k * patience), 1):
      break
  return max(found, key=lambda f: f[0])


# Seeds where exact early stopping (8, 11) or the GNMT penalty (10) would pick another
# hypothesis than CTranslate2's rules.
@pytest.mark.parametrize('seed', [8, 10, 11])
def test_beam_search_with_ctranslate2s_ranking_and_patience_matches_its_rules(seed):
  max_len, k = 6, 2
  # PAD and BOS among the suppressed, as Whisper's rules have them (pretrained/whisper_tokens.py):
  # the softmax then runs without them, as CTranslate2's does.
  prefix, never = (4,), (PAD, BOS, 3)
  lm = TableLM(seed, max_len=max_len, eos_bias=0.5)
  rules = decoding.Rules(prefix=prefix, never=never)
  fn, cache = decoding.with_rules(TableLM.fn, lm.cache, rules)
  seqs, scores = decoding.beam_search(fn, cache, batch_size=BATCH, beam_size=k,
                                      max_len=max_len, bos_id=BOS, eos_id=EOS, alpha=1.0,
                                      length_norm='length', patience=1.0, prefix_len=1)
  for item in range(BATCH):
    want_score, want = ctranslate2_beam_search(lm, item, k, max_len, prefix, 1.0, never)
    assert strip(seqs[item, 0]) == want, item
    assert float(scores[item, 0]) == pytest.approx(want_score, rel=1e-5)
    assert strip(seqs[item, 0])[0] == 4 and 3 not in strip(seqs[item, 0])


# Seeds where counting EOS in the length changes the answer of some item.
SEEDS_WHERE_EOS_COUNTS = (5, 20)


def test_counting_eos_in_the_length_ranks_as_ctranslate2s_translator():
  """length_norm='length_eos' is CTranslate2's Translator (EOS kept in the hypothesis until
  after the ranking); on these seeds it picks another hypothesis than Whisper's 'length' for
  some items, so the two rules are told apart."""
  max_len, k = 6, 2
  never = (PAD, BOS)
  changed = 0
  for seed in SEEDS_WHERE_EOS_COUNTS:
    lm = TableLM(seed, max_len=max_len, eos_bias=0.5)
    fn, cache = decoding.with_rules(TableLM.fn, lm.cache, decoding.Rules(never=never))
    seqs, scores = decoding.beam_search(fn, cache, batch_size=BATCH, beam_size=k,
                                        max_len=max_len, bos_id=BOS, eos_id=EOS, alpha=1.0,
                                        length_norm='length_eos', patience=1.0)
    for item in range(BATCH):
      want_score, want = ctranslate2_beam_search(lm, item, k, max_len, (), 1.0, never,
                                                 include_eos=True)
      assert strip(seqs[item, 0]) == want, (seed, item)
      assert float(scores[item, 0]) == pytest.approx(want_score, rel=1e-5)
      changed += want != ctranslate2_beam_search(lm, item, k, max_len, (), 1.0, never)[1]
  assert changed >= 1


def test_a_length_limit_by_input_length_forces_eos_in_every_search():
  """Rules.max_new = (per_input, extra): a row emits at most floor(per_input x its input
  length + extra) tokens after the prefix, then EOS, in greedy and beam search alike; before
  the limit the search is the unlimited one (greedy: its first tokens), and a row whose limit
  lies beyond max_len is not touched."""
  max_len, prefix, never = 9, (4,), (PAD, BOS)
  lm = TableLM(2, max_len=max_len, eos_bias=-30.0)     # never ends by itself
  lengths = jnp.array([2, 6, 40], jnp.int32)            # limits 2, 4 and 21 (> max_len)
  rules = decoding.Rules(prefix=prefix, never=never, max_new=(0.5, 1.0))
  fn, cache = decoding.with_rules(TableLM.fn, lm.cache, rules, lengths, EOS)
  free_fn, free_cache = decoding.with_rules(TableLM.fn, lm.cache,
                                            decoding.Rules(prefix=prefix, never=never))
  kw = dict(batch_size=BATCH, max_len=max_len, bos_id=BOS, eos_id=EOS)
  free = np.asarray(decoding.greedy_search(free_fn, free_cache, **kw)[0])
  greedy = np.asarray(decoding.greedy_search(fn, cache, **kw)[0])
  beam = np.asarray(decoding.beam_search(fn, cache, beam_size=2, alpha=1.0,
                                         length_norm='length', patience=1.0, prefix_len=1,
                                         **kw)[0][:, 0])
  for item, limit in enumerate((2, 4)):
    want = tuple(free[item, :1 + limit]) + (EOS,)
    assert strip(greedy[item]) == want, item
    assert len(strip(beam[item])) == 1 + limit + 1 and strip(beam[item])[-1] == EOS, item
  assert EOS not in strip(free[0]) and strip(greedy[2]) == strip(free[2])
  assert len(strip(beam[2])) == max_len and EOS not in strip(beam[2])
  with pytest.raises(UserError, match='input_lengths'):
    decoding.with_rules(TableLM.fn, lm.cache, rules)
