"""CIDEr-D and multi-reference BLEU against values computed by hand."""
import math

import pytest

from seq2seq_jax.metrics import captions as cm


def test_tokenize_lowercases_and_drops_punctuation():
  assert cm.tokenize('A dog, running!  On the "beach".') == ['a', 'dog', 'running', 'on',
                                                              'the', 'beach']


def test_cider_d_of_perfect_captions_is_five_with_two_word_references():
  # Two images, one reference each, no n-gram shared: every n-gram's idf is log(2) - log(1).
  # Hypothesis = reference, so the unigram and bigram cosines are 1; there are no 3- and
  # 4-grams (both norms 0: similarity 0). Mean over n = (1 + 1 + 0 + 0) / 4, x 10 = 5.
  assert cm.cider_d(['a b', 'c d'], [['a b'], ['c d']]) == pytest.approx(5.0)


def test_cider_d_clipping_length_penalty_and_idf_by_hand():
  # Image 1: hypothesis 'a' against reference 'a b'. Unigram vectors: hyp {a: w},
  # ref {a: w, b: w} with w = log 2: cosine w^2 / (w * sqrt(2) w) = 1/sqrt(2). No bigram in
  # the hypothesis: 0. Lengths in bigrams: 0 against 1, penalty exp(-1 / 72).
  # Image 2 is perfect: 5 (above).
  one = (1 / math.sqrt(2)) * math.exp(-1 / 72) / 4 * 10
  assert cm.cider_d(['a', 'c d'], [['a b'], ['c d']]) == pytest.approx((one + 5.0) / 2)
  # A word in every image's references has idf log(2) - log(2) = 0: saying it earns nothing.
  assert cm.cider_d(['x', 'x'], [['x a'], ['x c']]) == pytest.approx(0.0)
  # Repeating a reference word does not pay (clipped by the reference's count): 'a a' against
  # 'a b': hyp {a: 2w}, min(2w, w) * w / (2w * sqrt(2) w) = 1/(2 sqrt 2) for unigrams,
  # bigram 'a a' is not in the reference; lengths 1 and 1.
  two = 1 / (2 * math.sqrt(2)) / 4 * 10
  assert cm.cider_d(['a a', 'c d'], [['a b'], ['c d']]) == pytest.approx((two + 5.0) / 2)


def test_cider_d_averages_over_references():
  # Image 1 has references 'a b' (hypothesis matches: 1, 1, 0, 0) and 'e f' (nothing shared).
  # df: a, b, e, f, 'a b', 'e f' once each; image 2 'c d'. Reference 1 gives 1 + 1, reference
  # 2 gives 0, lengths equal: (2 / 4) / 2 references x 10 = 2.5.
  assert cm.cider_d(['a b', 'c d'], [['a b', 'e f'], ['c d']]) == pytest.approx((2.5 + 5.0) / 2)


def test_multi_reference_bleu():
  # Hypothesis 'a b c d' matches reference 2 exactly: every precision is 1, and the closest
  # reference length is 4, so BP = 1 and BLEU-1..4 are 100.
  out = cm.bleu(['a b c d'], [['x y z w', 'a b c d']])
  assert out == pytest.approx({'bleu1': 100.0, 'bleu2': 100.0, 'bleu3': 100.0,
                               'bleu4': 100.0})
  # 'a b x' against 'a b c' (one reference) and, for image 2, 'q r s' against 'q r s t' and
  # 'q r': unigram hits 2 + 3 of 6, bigram 1 + 2 of 4; closest lengths 3 and 2 (ties: the
  # shorter) sum to 5 <= 6, so BP = 1. BLEU-2 = sqrt(5/6 * 3/4).
  out = cm.bleu(['a b x', 'q r s'], [['a b c'], ['q r s t', 'q r']])
  assert out['bleu1'] == pytest.approx(100 * 5 / 6)
  assert out['bleu2'] == pytest.approx(100 * math.sqrt(5 / 6 * 3 / 4))
