"""Special token ids shared by every task and model, a fixed-symbol vocabulary, and the word
vocabulary counted from a task's training data."""
import collections
import os
from typing import Callable, Iterable, Sequence

import numpy as np

PAD_ID = 0  # padding; loss weight = targets > 0 relies on PAD being 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
NUM_SPECIAL = 4
SPECIALS = ('<pad>', '<s>', '</s>', '<unk>')


class SymbolVocab:
  """A vocabulary of a fixed, ordered symbol list after the four special tokens.

  Fixed in code rather than counted from data, so the vocabulary (and the model's shapes)
  are known without loading the dataset and never shift when the data changes.
  """

  def __init__(self, symbols: Sequence[str]):
    if len(set(symbols)) != len(symbols):
      raise ValueError('duplicate symbols')
    if set(symbols) & set(SPECIALS):
      raise ValueError('a symbol clashes with a special token')
    self.symbols = tuple(symbols)
    self._index = {s: i + NUM_SPECIAL for i, s in enumerate(self.symbols)}

  def __len__(self) -> int:
    return NUM_SPECIAL + len(self.symbols)

  def encode(self, symbols: Iterable[str]) -> tuple[np.ndarray, int]:
    """Maps symbols to ids, without BOS/EOS.

    Args:
      symbols: e.g. the characters of a word, or a list of phonemes.

    Returns:
      (int32 ids, number of symbols not in the vocabulary, which map to UNK_ID).
    """
    ids = np.fromiter((self._index.get(s, UNK_ID) for s in symbols), np.int32)
    return ids, int(np.count_nonzero(ids == UNK_ID))

  def encode_many(self, sequences: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """`encode(seq)[0]` of every sequence, as one pass over all their symbols (a dataset's
    worth at once: CMUdict's 115,000 training pronunciations in about a fifth of the time of
    one call per sequence)."""
    get = self._index.get
    ids = np.array([get(s, UNK_ID) for seq in sequences for s in seq], np.int32)
    ends = np.cumsum([len(seq) for seq in sequences])
    return np.split(ids, ends[:-1]) if len(sequences) else []

  def decode(self, ids: Iterable[int]) -> list[str]:
    """Maps ids back to symbols.

    Args:
      ids: token ids, e.g. a decoder output row.

    Returns:
      The symbols up to (not including) the first EOS; PAD and BOS are skipped, UNK
      becomes '<unk>', and so does an id past the symbols (a model's table may be larger
      than the symbols a dataset gave it, e.g. captioning's fixed vocab_size).
    """
    out = []
    for i in ids:
      i = int(i)
      if i == EOS_ID:
        break
      if i in (PAD_ID, BOS_ID):
        continue
      if i < NUM_SPECIAL:
        out.append(SPECIALS[i])
      else:
        out.append(self.symbols[i - NUM_SPECIAL] if i < len(self) else SPECIALS[UNK_ID])
    return out


def word_list(path: str, count: Callable[[], collections.Counter], size: int,
              min_count: int = 1) -> tuple[list[str], collections.Counter | None]:
  """A word vocabulary kept in a file: counted from the training data once, then only read.

  The words seen at least `min_count` times, the most frequent first (ties alphabetically),
  at most size - NUM_SPECIAL of them, so the table (and the model's shapes) has `size` rows
  whatever the data. Written on first use, by process 0, and read back on resume and in
  predict mode, so the ids stay those the checkpoints were trained with.

  Args:
    path: the file, one word a line (e.g. <workdir>/vocab.txt).
    count: returns the training data's word counts; called only when `path` is missing.
    size: the table's rows, NUM_SPECIAL included.
    min_count: the fewest occurrences a word needs.

  Returns:
    (the words in id order from NUM_SPECIAL on, the counts, or None when the file existed).
  """
  if os.path.isfile(path):
    with open(path, encoding='utf-8') as f:
      return [w for w in f.read().split('\n') if w], None
  counts = count()
  ranked = sorted((w for w, c in counts.items() if c >= min_count),
                  key=lambda w: (-counts[w], w))
  words = ranked[:size - NUM_SPECIAL]
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      f.write(''.join(w + '\n' for w in words))
    os.replace(path + '.tmp', path)
  return words, counts
