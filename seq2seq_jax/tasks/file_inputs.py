"""Tasks whose inputs are files (images, feature arrays) and whose targets are characters.

The data of each split is a TSV file, one example per line: `input_path<TAB>target text`
(a relative path is relative to the TSV's folder). An input may appear on several lines,
each a reference: evaluation decodes it once and scores against all of them. Targets are
characters of `data.alphabet`, a fixed string, so the vocabulary (and the model's shapes) is
known without reading any data. A missing or unreadable input file, a line without a TAB or a
line that is not valid UTF-8 stops the run naming file and line (`data.bad_pairs='error'`) or
is skipped and counted (`'skip'`).

Metrics: 'cer' (character edit distance to the closest reference over the references'
length), 'wer' (the same over whitespace-separated words) and 'accuracy' (share of inputs
whose output equals one of their references exactly), in percent. The best checkpoint is the
one with the lowest validation CER.

Subclasses (image_to_text, features_to_text) say how a file becomes an array and how arrays
are batched.
"""
import collections
import os
from typing import Any, Sequence

import numpy as np

from seq2seq_jax.metrics import error_rates as text_metrics
from seq2seq_jax.data import corpus as corpus_lib
from seq2seq_jax.data import sources
from seq2seq_jax.data.pipeline import EvalSet
from seq2seq_jax.data.vocab import SymbolVocab
from seq2seq_jax import paths
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import base


class FileToTextTask(base.BaseTask):
  """Shared reading, vocabulary, decoding and scoring; see the module docstring."""

  best_metric = 'cer'
  best_mode = 'min'
  input_kind = ''  # set by subclasses
  # The entries of data/sources.py the task reads: 'tsv' (data.train_tsv, ...) or one that
  # writes such listings (a subclass adds builders and 'tfds').
  SOURCES: tuple[str, ...] = ('tsv',)

  def __init__(self, config: Any):
    super().__init__(config)
    d = self.data
    self.source = sources.select(d, self.SOURCES, 'tsv')
    required = () if self.source.tfds else self.source.keys  # TFDS splits have defaults
    chars = self.character_targets(config)
    for key in (('alphabet',) if chars else ()) + ('target_len', *required):
      if key not in d:
        raise UserError(f'config.data.{key} is missing (task {config.task!r})')
    self.bad_pairs = d.get('bad_pairs', 'error')
    corpus_lib.check_policy(self.bad_pairs)
    self.vocab, self._alphabet = None, None
    if chars:
      alphabet = str(d.alphabet)
      if not alphabet or len(set(alphabet)) != len(alphabet):
        raise UserError(f'data.alphabet must be a string of distinct characters, got '
                        f'{alphabet!r}')
      self.vocab = SymbolVocab(tuple(alphabet))
      self._alphabet = frozenset(alphabet)
    self.src_vocab_size = 0
    self.tgt_vocab_size = len(self.vocab) if chars else 0
    self.target_len = int(d.target_len)
    self._lines: dict[str, list[tuple[str, str]]] = {}
    self._arrays: dict[str, np.ndarray] = {}

  # --- what subclasses provide --------------------------------------------------------------
  def character_targets(self, config: Any) -> bool:
    """Whether targets are characters of data.alphabet (a subclass with other targets, such
    as a pretrained model's tokens, says False and sets the vocabulary itself)."""
    del config
    return True

  def load_input(self, path: str) -> np.ndarray:
    """The array for one input file; raises any exception for an unreadable file."""
    raise NotImplementedError

  def check_pair(self, array: Any, text: str) -> str | None:
    """What is wrong with an (input, target text) pair that read fine; None if nothing.
    A subclass checks what its inputs allow (speech: audio long enough for its text)."""
    del array, text
    return None

  def tsv_path(self, split: str) -> str:
    """The split's TSV file: data.train_tsv / eval_tsv / test_tsv, or a builder's."""
    tsv = self.source.read('path', self.data, split)
    if paths.is_remote(tsv):
      tsv = paths.check(tsv, f'the {split} TSV')
    if not paths.isfile(tsv):
      where = (f'data.{sources.SPLIT_PREFIX[split]}_tsv' if self.source.name == 'tsv'
               else f'data source {self.source.name!r}')
      raise UserError(f'{tsv} not found ({where})')
    return tsv

  # --- reading -------------------------------------------------------------------------------
  def _read_split(self, split: str) -> list[tuple[str, str]]:
    """(input path, target text) of every good line of the split's TSV, inputs loaded."""
    if split in self._lines:
      return self._lines[split]
    tsv = self.tsv_path(split)
    bad = corpus_lib.BadPairs(self.bad_pairs)
    root = os.path.dirname(paths.resolve(tsv))
    out = []
    outside = collections.Counter()   # target characters data.alphabet lacks (-> <unk>)
    with paths.open_file(tsv, 'rb') as f:
      for n, line in enumerate(corpus_lib.lines(f), 1):
        where = f'{tsv}:{n}'
        if line is None:
          bad(where, 'not valid UTF-8')
          continue
        if not line.strip():
          continue
        if '\t' not in line:
          bad(where, 'no TAB between the input path and the text')
          continue
        path, text = line.split('\t', 1)
        path = os.path.join(root, path.strip())
        if path not in self._arrays:
          try:
            self._arrays[path] = self.load_input(path)
          except UserError:
            raise
          except Exception as e:  # pylint: disable=broad-except
            bad(where, f'cannot read {path}: {type(e).__name__}: {e}')
            continue
        problem = self.check_pair(self._arrays[path], text.strip())
        if problem:
          bad(where, problem)
          continue
        out.append((path, text.strip()))
        if self._alphabet is not None:
          outside.update(c for c in text.strip() if c not in self._alphabet)
    if not out:
      raise UserError(f'{tsv}: no usable examples')
    note = f' ({bad.count} bad line(s) skipped)' if bad.count else ''
    if outside:   # never silent: the model is trained to write <unk> for them
      shown = ', '.join(f'{c!r} x{n}' for c, n in outside.most_common(8))
      note += (f'; {sum(outside.values())} target character(s) outside data.alphabet become '
               f'<unk>: {shown}')
    base.log(f'{split}: {len(out):,} examples from {tsv}{note}')
    self._lines[split] = out
    return out

  def _examples(self, lines: Sequence[tuple[str, str]]) -> base.Examples:
    return ([self._arrays[p] for p, _ in lines],
            [self.vocab.encode(t)[0] for _, t in lines])

  # --- the trainer's interface ---------------------------------------------------------------
  def train_data(self) -> base.Examples:
    """Every training example; the evaluation splits are read first, so a bad one stops the
    run before step 0."""
    for split in ('validation', 'test'):
      self._read_split(split)
    return self._examples(self._read_split('train'))

  def _eval_paths(self, split: str) -> list[str]:
    return self.eval_subset(list(dict.fromkeys(p for p, _ in self._read_split(split))))

  def eval_loss_data(self, split: str) -> base.Examples:
    keep = set(self._eval_paths(split))
    return self._examples([l for l in self._read_split(split) if l[0] in keep])

  def eval_set(self, split: str) -> EvalSet:
    refs: dict[str, list[str]] = collections.defaultdict(list)
    for path, text in self._read_split(split):
      refs[path].append(text)
    files = self._eval_paths(split)
    return EvalSet(sources=[self._arrays[p] for p in files], texts=files,
                   references=[refs[p] for p in files])

  def decode_target(self, ids: Sequence[int]) -> str:
    return ''.join(self.vocab.decode(ids))

  def score(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    chars = text_metrics.g2p_scores([list(h) for h in hyps], [[list(r) for r in rs]
                                                              for rs in refs])
    words = text_metrics.g2p_scores([h.split() for h in hyps], [[r.split() for r in rs]
                                                               for rs in refs])
    return {'cer': chars['per'], 'wer': words['per'], 'accuracy': 100.0 - chars['wer']}

  def encode_source(self, line: str) -> tuple[np.ndarray, int]:
    """A --mode=predict line is an input file's path."""
    path = line.strip()
    if not os.path.isfile(path):
      raise UserError(f'{path}: no such file')
    try:
      return self.load_input(path), 0
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f'cannot read {path}: {type(e).__name__}: {e}') from None
