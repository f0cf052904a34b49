"""Special token ids shared by every task and model, and a fixed-symbol vocabulary."""
from typing import Iterable, Sequence

import numpy as np

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
NUM_SPECIAL = 4
SPECIALS = ('<pad>', '<s>', '</s>', '<unk>')


class SymbolVocab:
  """A vocabulary of a fixed, ordered symbol list after the four special tokens."""

  def __init__(self, symbols: Sequence[str]):
    if len(set(symbols)) != len(symbols):
      raise ValueError('duplicate symbols')
    self.symbols = tuple(symbols)
    self._index = {s: i + NUM_SPECIAL for i, s in enumerate(self.symbols)}

  def __len__(self) -> int:
    return NUM_SPECIAL + len(self.symbols)

  def encode(self, symbols: Iterable[str]) -> tuple[np.ndarray, int]:
    """Ids of `symbols` (unknown ones -> UNK_ID) and how many were unknown."""
    ids = [self._index.get(s, UNK_ID) for s in symbols]
    return np.asarray(ids, np.int32), sum(i == UNK_ID for i in ids)

  def decode(self, ids: Iterable[int]) -> list[str]:
    """Symbols of `ids` up to the first EOS; PAD and BOS are skipped."""
    out = []
    for i in ids:
      i = int(i)
      if i == EOS_ID:
        break
      if i in (PAD_ID, BOS_ID):
        continue
      out.append(SPECIALS[i] if i < NUM_SPECIAL else self.symbols[i - NUM_SPECIAL])
    return out
