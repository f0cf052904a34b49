"""ROUGE through rouge-score and CodeXGLUE's smoothed BLEU-4, against values by hand."""
import math

import pytest

from seq2seq_jax.metrics import summaries as sm
from seq2seq_jax.errors import UserError


def test_rouge_against_hand_counts():
  # 5 of 6 unigrams shared, 3 of 5 bigrams, longest common subsequence 5 ("the cat on the mat").
  got = sm.rouge(['the cat sat on the mat'], ['the cat is on the mat'])
  assert got['rouge1'] == pytest.approx(100 * 5 / 6)
  assert got['rouge2'] == pytest.approx(60.0)
  assert got['rougeL'] == pytest.approx(100 * 5 / 6)
  # Porter stemming: 'running dogs' matches 'run dog' only with it; means over pairs.
  assert sm.rouge(['running dogs'], ['run dog'])['rouge1'] == pytest.approx(100.0)
  assert sm.rouge(['running dogs'], ['run dog'], stem=False)['rouge1'] == 0.0
  two = sm.rouge(['running dogs', 'a b'], ['run dog', 'c d'])
  assert two['rouge1'] == pytest.approx(50.0)


def test_smoothed_bleu_against_hand_computation():
  # hyp: return the sum .  (4 tokens)   ref: return the sum of values .  (6 tokens)
  # precisions 4/4, (2+1)/(3+1), (1+1)/(2+1), (0+1)/(1+1); brevity 1 - (6+1)/(4+1)
  want = math.exp((math.log(1) + math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2)) / 4
                  + (1 - 7 / 5))
  assert sm.sentence_bleu_smoothed('Return the sum.', 'Return the sum of values.') == (
      pytest.approx(want))
  assert sm.smoothed_bleu(['Return the sum.', 'a b c d'], ['Return the sum of values.',
                                                             'A b c d']) == pytest.approx(
                                                                 100 * (want + 1) / 2)
  # No shared word: the unsmoothed unigram precision is 0, so the score is (almost) 0.
  assert sm.sentence_bleu_smoothed('x y z', 'a b c') < 1e-70
  with pytest.raises(UserError, match='2 hypotheses for 1 references'):
    sm.smoothed_bleu(['a', 'b'], ['a'])
