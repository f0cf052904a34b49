"""Grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary.

Source: the word's characters (lowercased). Target: ARPAbet phonemes with stress digits, or
without them (`data.stress=False`: the 39-phoneme setting of most published CMUdict results;
pronunciations that then coincide count once). A prediction is correct if it matches any of
the word's pronunciations; PER uses the closest one (see text_metrics.g2p_scores).
"""
import collections
from typing import Any, Sequence

import numpy as np

from seq2seq_jax.metrics import error_rates as text_metrics
from seq2seq_jax.data import sources
from seq2seq_jax.data.pipeline import EvalSet
from seq2seq_jax.data.vocab import SymbolVocab
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import base

# Every character in the dictionary's words (' - . a-z), plus digits. The digits never
# occur in cmudict; they stay because trained checkpoints have this 43-symbol shape.
GRAPHEMES = tuple("'-." + '0123456789' + 'abcdefghijklmnopqrstuvwxyz')
_VOWELS = ('AA', 'AE', 'AH', 'AO', 'AW', 'AY', 'EH', 'ER', 'EY', 'IH', 'IY', 'OW', 'OY', 'UH',
           'UW')
_CONSONANTS = ('B', 'CH', 'D', 'DH', 'F', 'G', 'HH', 'JH', 'K', 'L', 'M', 'N', 'NG', 'P', 'R',
               'S', 'SH', 'T', 'TH', 'V', 'W', 'Y', 'Z', 'ZH')
# The 84 ARPAbet symbols of cmudict.symbols() (vowels bare and with stress 0/1/2), fixed and
# sorted. The dictionary's entries use 69 of them (every vowel carries a stress digit).
PHONEMES = tuple(sorted(_CONSONANTS + _VOWELS + tuple(v + s for v in _VOWELS for s in '012')))

Pairs = tuple[list[np.ndarray], list[np.ndarray]]


def _strip_stress(phonemes: str) -> str:
  """'HH AH0 L OW1' -> 'HH AH L OW'."""
  return ' '.join(p.rstrip('012') for p in phonemes.split())


class Task(base.BaseTask):
  """The G2P task; see seq2seq_jax/tasks/base.py for the contract."""

  best_metric = 'wer'
  best_mode = 'min'

  def __init__(self, config: Any):
    super().__init__(config)
    name = config.data.get('name', 'cmudict_g2p')
    if name != 'cmudict_g2p':
      raise UserError(f"task 'g2p' reads data.name='cmudict_g2p', got {name!r}")
    if not self.buckets:
      raise UserError('config.data.buckets is missing: the padded lengths of G2P batches')
    self.source = sources.select(config.data, ('cmudict',), 'cmudict')
    self.data_dir = config.data.get('data_dir', '')   # where the 'cmudict' source builds
    self.stress = bool(config.data.get('stress', True))
    self.src_vocab = SymbolVocab(GRAPHEMES)
    self.tgt_vocab = SymbolVocab(PHONEMES)
    self.src_vocab_size = len(self.src_vocab)
    self.tgt_vocab_size = len(self.tgt_vocab)
    self._pairs_cache: dict[str, list[tuple[str, str]]] = {}
    self._eval_sets: dict[str, EvalSet] = {}

  def _pairs(self, split: str) -> list[tuple[str, str]]:
    if split not in self._pairs_cache:
      pairs = list(self.source.read('pairs', self.data, split).pairs)
      if not self.stress:  # AH0 -> AH; a word's pronunciations that become equal count once
        pairs = list(dict.fromkeys((w, _strip_stress(p)) for w, p in pairs))
      self._pairs_cache[split] = pairs
    return self._pairs_cache[split]

  def _encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> Pairs:
    src = self.src_vocab.encode_many([w for w, _ in pairs])
    tgt = self.tgt_vocab.encode_many([p.split() for _, p in pairs])
    return src, tgt

  def train_data(self) -> Pairs:
    """(src, tgt) id arrays (no BOS/EOS) of every training pronunciation."""
    return self._encode_pairs(self._pairs('train'))

  def eval_loss_data(self, split: str) -> Pairs:
    """(src, tgt) of every pronunciation of the words that eval_set(split) scores.

    That is the whole split unless data.eval_max_examples > 0, which shrinks loss and
    decoding metrics to the same words, so a quick evaluation stays quick and coherent.
    """
    pairs = self._pairs(split)
    if self.eval_max_examples:
      words = set(self.eval_set(split).texts)
      pairs = [p for p in pairs if p[0] in words]
    return self._encode_pairs(pairs)

  def eval_set(self, split: str) -> EvalSet:
    """Unique words of a split, sorted, each with all its pronunciations as references.

    With data.eval_max_examples > 0, that many of the sorted words, spread evenly.
    """
    if split not in self._eval_sets:
      refs: dict[str, list[str]] = collections.defaultdict(list)
      for word, pron in self._pairs(split):
        refs[word].append(pron)
      words = self.eval_subset(sorted(refs))
      self._eval_sets[split] = EvalSet(
          sources=self.src_vocab.encode_many(words), texts=words,
          references=[refs[w] for w in words])
    return self._eval_sets[split]

  def encode_source(self, text: str) -> tuple[np.ndarray, int]:
    """A word as source ids (no EOS): stripped, lowercased; unknown chars -> UNK, counted."""
    return self.src_vocab.encode(text.strip().lower())

  def decode_target(self, ids: Sequence[int]) -> str:
    """Output ids -> 'HH AH0 L OW1' (stops at EOS, skips padding)."""
    return ' '.join(self.tgt_vocab.decode(ids))

  def score(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    """PER and WER in percent; hyps and references are space-separated phonemes.

    'per'/'wer' score the phonemes as trained (with stress digits unless data.stress=False).
    'per_nostress'/'wer_nostress' score the same predictions with the digits removed (AH0 ->
    AH), the 39-phoneme setting in which most published CMUdict G2P results are reported: a
    diagnostic for comparison, not what the model is selected on (with data.stress=False
    the two agree).
    """
    hyp_ph = [h.split() for h in hyps]
    ref_ph = [[r.split() for r in rs] for rs in refs]
    scores = text_metrics.g2p_scores(hyp_ph, ref_ph)
    strip = lambda phones: _strip_stress(' '.join(phones)).split()
    nostress = text_metrics.g2p_scores([strip(h) for h in hyp_ph],
                                       [[strip(r) for r in rs] for rs in ref_ph])
    scores.update({f'{k}_nostress': v for k, v in nostress.items()})
    return scores
