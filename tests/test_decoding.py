"""Beam search, greedy search and sampling against brute force and each other."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax import decoding

BOS, EOS = 1, 2
VOCAB = 5          # 0 pad, 1 bos, 2 eos, 3 and 4 real tokens
MAX_LEN = 4
BATCH = 3


def make_lm(seed: int = 0, eos_bias: float = 0.0):
  """A random 'language model': logits depend on (item, position, last token).

  The cache holds the position [B] and a per-item table [B, MAX_LEN, VOCAB, VOCAB], so
  beam search must tile and reorder real per-row state.
  """
  rng = np.random.default_rng(seed)
  table = rng.normal(size=(BATCH, MAX_LEN, VOCAB, VOCAB)).astype(np.float32) * 2
  table[..., EOS] += eos_bias
  cache = {'pos': jnp.zeros((BATCH,), jnp.int32), 'table': jnp.asarray(table),
           'history': jnp.zeros((BATCH, MAX_LEN), jnp.int32)}

  def tokens_to_logits(tokens, c):
    pos = c['pos']
    logits = c['table'][jnp.arange(tokens.shape[0]), pos, tokens]
    history = c['history'].at[jnp.arange(tokens.shape[0]), pos].set(tokens)
    return logits, {'pos': pos + 1, 'table': c['table'], 'history': history}

  return table, cache, tokens_to_logits


def brute_force(table, item: int, alpha: float):
  """Every hypothesis of item `item` with its score, best first."""
  def logp(pos, last):
    row = table[item, pos, last].astype(np.float64)
    return row - np.log(np.sum(np.exp(row)))
  hyps = []
  for length in range(1, MAX_LEN + 1):
    for body in itertools.product((3, 4), repeat=length - 1):
      for end in ((EOS,) if length < MAX_LEN else (EOS, 3, 4)):
        seq = body + (end,)
        lp, last = 0.0, BOS
        for pos, tok in enumerate(seq):
          lp += logp(pos, last)[tok]
          last = tok
        score = lp / ((5 + len(seq)) / 6) ** alpha
        hyps.append((score, seq))
  hyps.sort(key=lambda h: -h[0])
  return hyps


@pytest.mark.parametrize('alpha', [0.0, 0.6, 2.0])
def test_large_beam_equals_exhaustive_search(alpha):
  table, cache, fn = make_lm(0)
  n_hyps = len(brute_force(table, 0, alpha))  # 2^0+..+2^3 with eos, plus 2^4 unfinished = 31
  seqs, scores = decoding.beam_search(fn, cache, batch_size=BATCH, beam_size=n_hyps,
                                      max_len=MAX_LEN, bos_id=BOS, eos_id=EOS, alpha=alpha)
  seqs, scores = np.asarray(seqs), np.asarray(scores)
  for item in range(BATCH):
    expected = brute_force(table, item, alpha)
    assert len(expected) == n_hyps
    for j, (score, seq) in enumerate(expected):
      got = tuple(int(t) for t in seqs[item, j] if t)
      assert got == seq, (item, j)
      assert scores[item, j] == pytest.approx(score, abs=1e-4)


@pytest.mark.parametrize('beam', [2, 4])
def test_small_beam_finds_the_best_when_it_is_clear(beam):
  # With a strong eos bias the best hypotheses are short, so a small beam must find the top.
  table, cache, fn = make_lm(1, eos_bias=3.0)
  seqs, scores = decoding.beam_search(fn, cache, batch_size=BATCH, beam_size=beam,
                                      max_len=MAX_LEN, bos_id=BOS, eos_id=EOS, alpha=0.0)
  for item in range(BATCH):
    best_score, best_seq = brute_force(table, item, 0.0)[0]
    assert tuple(int(t) for t in np.asarray(seqs)[item, 0] if t) == best_seq
    assert float(scores[item, 0]) == pytest.approx(best_score, abs=1e-4)
  assert np.all(np.diff(np.asarray(scores), axis=1) <= 1e-6)  # sorted best first


def test_beam_one_equals_greedy():
  _, cache, fn = make_lm(2)
  beam, beam_scores = decoding.beam_search(fn, cache, batch_size=BATCH, beam_size=1,
                                           max_len=MAX_LEN, bos_id=BOS, eos_id=EOS, alpha=0.0)
  greedy, greedy_scores = decoding.greedy_search(fn, cache, batch_size=BATCH, max_len=MAX_LEN,
                                                 bos_id=BOS, eos_id=EOS)
  np.testing.assert_array_equal(np.asarray(beam)[:, 0], np.asarray(greedy))
  np.testing.assert_allclose(np.asarray(beam_scores)[:, 0], np.asarray(greedy_scores), atol=1e-5)


def test_eos_ends_hypotheses_and_zero_pads_after():
  _, cache, fn = make_lm(3, eos_bias=1.0)
  seqs, scores = decoding.beam_search(fn, cache, batch_size=BATCH, beam_size=6,
                                      max_len=MAX_LEN, bos_id=BOS, eos_id=EOS, alpha=0.6)
  seqs = np.asarray(seqs)
  assert np.isfinite(np.asarray(scores)).all()
  for row in seqs.reshape(-1, MAX_LEN):
    assert BOS not in row and row[0] != 0
    if EOS in row:
      end = list(row).index(EOS)
      assert (row[end + 1:] == 0).all()       # nothing after eos
      assert (row[:end] != 0).all() and EOS not in row[:end]
    else:
      assert (row != 0).all()                 # ran to max_len


def test_length_penalty_changes_the_winner_as_predicted():
  # One item, two hypotheses: a short one and a longer one with a slightly lower log-prob.
  # alpha = 0 prefers the short one; a large alpha rewards the longer one.
  table = np.full((1, MAX_LEN, VOCAB, VOCAB), -30.0, np.float32)
  table[0, 0, BOS, EOS] = 0.0     # "eos" right away: log p ~ log 1/2
  table[0, 0, BOS, 3] = 0.0       # or "3 3 3 eos"
  table[0, 1, 3, 3] = 0.0
  table[0, 2, 3, 3] = 0.0
  table[0, 3, 3, EOS] = 0.0
  table[0, 1:, 3, EOS] = np.where(np.arange(1, MAX_LEN) == 3, 0.0, -1.0)
  cache = {'pos': jnp.zeros((1,), jnp.int32), 'table': jnp.asarray(table)}

  def fn(tokens, c):
    return c['table'][jnp.arange(tokens.shape[0]), c['pos'], tokens], {**c, 'pos': c['pos'] + 1}

  def best(alpha):
    seqs, _ = decoding.beam_search(fn, cache, batch_size=1, beam_size=4, max_len=MAX_LEN,
                                   bos_id=BOS, eos_id=EOS, alpha=alpha)
    return tuple(int(t) for t in np.asarray(seqs)[0, 0] if t)
  assert best(0.0) == (EOS,)
  assert best(3.0) == (3, 3, 3, EOS)


def test_cache_rows_follow_their_beams():
  """Logits depend on the whole prefix only through a recurrent state kept in the cache.

  If beam search reordered cache rows wrongly, a beam would continue from another beam's
  state and the results would differ from the brute-force scores computed from the
  sequences themselves.
  """
  mod = 97
  rng = np.random.default_rng(4)
  table = rng.normal(size=(BATCH, mod, VOCAB)).astype(np.float32) * 2

  def step_state(state, token):
    return (state * 7 + token) % mod

  def fn(tokens, c):
    state = step_state(c['state'], tokens)
    return c['table'][jnp.arange(tokens.shape[0]), state], {**c, 'state': state}

  cache = {'state': jnp.zeros((BATCH,), jnp.int32), 'table': jnp.asarray(table)}
  seqs, scores = decoding.beam_search(fn, cache, batch_size=BATCH, beam_size=4,
                                      max_len=MAX_LEN, bos_id=BOS, eos_id=EOS, alpha=0.0)
  for item in range(BATCH):
    for j in range(4):
      seq = [int(t) for t in np.asarray(seqs)[item, j] if t]
      state, lp, last = 0, 0.0, BOS
      for tok in seq:
        state = step_state(state, last)
        row = table[item, state].astype(np.float64)
        lp += row[tok] - np.log(np.sum(np.exp(row)))
        last = tok
      assert float(scores[item, j]) == pytest.approx(lp, abs=1e-4), (item, j)


def test_sampling_temperature_zero_and_top_k_one_equal_greedy():
  _, cache, fn = make_lm(5)
  greedy, gs = decoding.greedy_search(fn, cache, batch_size=BATCH, max_len=MAX_LEN, bos_id=BOS,
                                      eos_id=EOS)
  for kwargs in ({'temperature': 0.0}, {'temperature': 1.0, 'top_k': 1}):
    seqs, scores = decoding.sample(fn, cache, jax.random.key(7), batch_size=BATCH,
                                   max_len=MAX_LEN, bos_id=BOS, eos_id=EOS, **kwargs)
    np.testing.assert_array_equal(np.asarray(seqs), np.asarray(greedy))
    np.testing.assert_allclose(np.asarray(scores), np.asarray(gs), atol=1e-5)


def test_sampling_respects_top_k_and_top_p():
  table, cache, fn = make_lm(6)
  first_logits = table[:, 0, BOS]
  allowed_top2 = [set(np.argsort(-np.where(np.arange(VOCAB) > 1, first_logits[i], -np.inf))[:2])
                  for i in range(BATCH)]
  seen = [set() for _ in range(BATCH)]
  for s in range(40):
    seqs, _ = decoding.sample(fn, cache, jax.random.key(s), batch_size=BATCH, max_len=MAX_LEN,
                              bos_id=BOS, eos_id=EOS, temperature=1.0, top_k=2)
    for i in range(BATCH):
      seen[i].add(int(np.asarray(seqs)[i, 0]))
  for i in range(BATCH):
    assert seen[i] <= allowed_top2[i] and len(seen[i]) == 2
  # top_p tiny: only the single most likely token survives -> greedy.
  greedy, _ = decoding.greedy_search(fn, cache, batch_size=BATCH, max_len=MAX_LEN, bos_id=BOS,
                                     eos_id=EOS)
  seqs, _ = decoding.sample(fn, cache, jax.random.key(0), batch_size=BATCH, max_len=MAX_LEN,
                            bos_id=BOS, eos_id=EOS, temperature=1.0, top_p=1e-6)
  np.testing.assert_array_equal(np.asarray(seqs), np.asarray(greedy))


def test_beam_search_on_a_sharded_batch_matches_unsharded():
  devices = jax.devices()
  if len(devices) < 4:
    pytest.skip('needs the simulated devices of conftest.py')
  big_batch = 4
  rng = np.random.default_rng(8)
  table = jnp.asarray(rng.normal(size=(big_batch, MAX_LEN, VOCAB, VOCAB)).astype(np.float32))
  cache = {'pos': jnp.zeros((big_batch,), jnp.int32), 'table': table}

  def fn(tokens, c):
    return c['table'][jnp.arange(tokens.shape[0]), c['pos'], tokens], {**c, 'pos': c['pos'] + 1}
  kwargs = dict(batch_size=big_batch, beam_size=3, max_len=MAX_LEN, bos_id=BOS, eos_id=EOS)
  ref = decoding.beam_search(fn, cache, **kwargs)
  mesh = jax.sharding.Mesh(np.array(devices[:4]), ('data',))
  sharded = jax.device_put(cache, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')))
  assert len(sharded['table'].sharding.device_set) == 4
  out = decoding.beam_search(fn, sharded, **kwargs)
  np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(ref[0]))
  np.testing.assert_allclose(np.asarray(out[1]), np.asarray(ref[1]), atol=1e-5)
