"""Parallel corpora: TFDS translation datasets by name, aligned text files, TSV, num2words
(data/sources.py names them as data sources).

Every reader returns a `Corpus`: (source, target) string pairs in file order. A user's corpus
with empty lines, one-sided lines, undecodable bytes or mismatched line counts is either
refused with a UserError naming file and line (bad_pairs='error') or the bad pairs are
skipped and counted (bad_pairs='skip'). Readers run before training starts, so a bad
corpus stops a run at once, never half way through.
"""
import dataclasses
import itertools
import zlib
from typing import Iterator

from seq2seq_jax import paths
from seq2seq_jax.errors import UserError

BAD_PAIR_POLICIES = ('error', 'skip')


@dataclasses.dataclass
class Corpus:
  """Sentence pairs of one split."""
  pairs: list[tuple[str, str]]
  skipped: int = 0            # bad pairs dropped (bad_pairs='skip', or empty sides in TFDS)
  origin: str = ''            # where they came from, for messages


@dataclasses.dataclass
class Stream:
  """A split's pairs one at a time, for corpora too big to hold (data/token_cache.py reads
  these); `bad.count` is final once `pairs` is exhausted."""
  pairs: Iterator[tuple[str, str]]
  origin: str
  bad: 'BadPairs'

  def read(self) -> Corpus:
    """Every pair in memory."""
    return Corpus(list(self.pairs), self.bad.count, self.origin)


def check_policy(bad_pairs: str) -> None:
  if bad_pairs not in BAD_PAIR_POLICIES:
    raise UserError(f"data.bad_pairs must be 'error' or 'skip', got {bad_pairs!r}")


class BadPairs:
  """Applies the bad-pair policy: raise naming file:line, or count and go on."""

  def __init__(self, policy: str):
    check_policy(policy)
    self.policy = policy
    self.count = 0

  def __call__(self, where: str, what: str, n: int = 1) -> None:
    if self.policy == 'error':
      raise UserError(f'{where}: {what} (set data.bad_pairs=skip to drop such pairs)')
    self.count += n


def _open(path: str):
  if not path:
    raise UserError('a corpus file path is empty in the config')
  path = paths.check(path, 'corpus file') if paths.is_remote(path) else path
  if not paths.isfile(path):
    raise UserError(f'corpus file not found: {path}')
  return paths.open_file(path, 'rb')


def lines(f) -> Iterator[str | None]:
  """Lines of a binary file split on b'\\n' only, decoded; None for a line that is not UTF-8.

  Splitting on '\\n' alone (not Python's universal newlines, which also split on a lone
  '\\r') keeps line numbers equal to `wc -l` / editor line numbers, so two aligned files
  stay aligned even when one contains a stray carriage return.
  """
  for n, raw in enumerate(f):
    if n == 0 and raw.startswith(b'\xef\xbb\xbf'):  # UTF-8 byte order mark
      raw = raw[3:]
    try:
      yield raw.decode('utf-8').rstrip('\r\n')
    except UnicodeDecodeError:
      yield None


def read_aligned_files(src_path: str, tgt_path: str, bad_pairs: str = 'error') -> Corpus:
  """Two plain-text files, line i of one translating line i of the other.

  Args:
    src_path: source sentences, one per line, UTF-8.
    tgt_path: target sentences, aligned by line number.
    bad_pairs: 'error' or 'skip' (see module docstring).

  Returns:
    The pairs, both sides stripped of surrounding whitespace.
  """
  bad = BadPairs(bad_pairs)
  return Corpus(list(iter_aligned_files(src_path, tgt_path, bad)), bad.count,
                f'{src_path} + {tgt_path}')


def iter_aligned_files(src_path: str, tgt_path: str, bad: BadPairs) -> Iterator[tuple[str, str]]:
  """read_aligned_files' pairs one at a time (a corpus too big to hold); `bad` counts."""
  with _open(src_path) as fs, _open(tgt_path) as ft:
    src_lines, tgt_lines = lines(fs), lines(ft)
    for n, (s, t) in enumerate(itertools.zip_longest(src_lines, tgt_lines, fillvalue=False), 1):
      if s is False or t is False:  # one file ended
        short, longer, rest = ((src_path, tgt_path, tgt_lines) if s is False
                               else (tgt_path, src_path, src_lines))
        extra = 1 + sum(1 for _ in rest)
        bad(f'{short}:{n}', f'file ends while {longer} has {extra} more line(s) '
            '(the files must have the same number of lines)', extra)
        break
      if s is None or t is None:
        bad(f'{src_path if s is None else tgt_path}:{n}', 'line is not valid UTF-8')
        continue
      s, t = s.strip(), t.strip()
      if not s or not t:
        what = 'empty line on both sides' if not s and not t else (
            f'empty line (the aligned line {n} of {tgt_path if not s else src_path} is not)')
        bad(f'{src_path if not s else tgt_path}:{n}', what)
        continue
      yield s, t


def read_tsv(path: str, bad_pairs: str = 'error') -> Corpus:
  """One pair per line: source<TAB>target (UTF-8).

  Args:
    path: the TSV file.
    bad_pairs: 'error' or 'skip'; a line without exactly two columns or with an empty
      column is a bad pair.

  Returns:
    The pairs, both sides stripped of surrounding whitespace.
  """
  bad = BadPairs(bad_pairs)
  return Corpus(list(iter_tsv(path, bad)), bad.count, path)


def iter_tsv(path: str, bad: BadPairs) -> Iterator[tuple[str, str]]:
  """read_tsv's pairs one at a time; `bad` counts."""
  with _open(path) as f:
    for n, line in enumerate(lines(f), 1):
      if line is None:
        bad(f'{path}:{n}', 'line is not valid UTF-8')
        continue
      cols = line.split('\t')
      if len(cols) != 2:
        bad(f'{path}:{n}', f'expected 2 tab-separated columns, found {len(cols)}')
        continue
      s, t = cols[0].strip(), cols[1].strip()
      if not s or not t:
        bad(f'{path}:{n}', f'the {"source" if not s else "target"} column is empty')
        continue
      yield s, t


def read_tfds(name: str, split: str, src_key: str, tgt_key: str, data_dir: str,
              chunk_size: int = 65536, check=None) -> Corpus:
  """Every pair of stream_tfds(...)."""
  return stream_tfds(name, split, src_key, tgt_key, data_dir, chunk_size, check).read()


def stream_tfds(name: str, split: str, src_key: str, tgt_key: str, data_dir: str,
                chunk_size: int = 65536, check=None) -> Stream:
  """Two text features of a prepared TFDS dataset as pairs (e.g. 'wmt14_translate/de-en' in
  either direction, or a summarization dataset's article and summary).

  Read with tfds_raw.Split (array_record, random access, no TensorFlow). Nothing is
  downloaded here: the dataset must have been prepared once, where it can be downloaded,
  with `tfds build NAME --file_format=array_record`; `debian_ddtp` (pair from the languages)
  or `debian_ddtp/en-fr` is built here on first use from apt's lists (datasets/ddtp.py).
  Pairs with an empty side (web-crawled WMT data has a few) are skipped and counted whatever
  data.bad_pairs says: a user cannot fix a TFDS dataset.

  Args:
    name: 'dataset/config' as TFDS names it.
    split: a TFDS split, slices allowed ('train[:10%]').
    src_key: the feature holding source text (a translation dataset's: a language code).
    tgt_key: the feature holding target text.
    data_dir: TFDS data dir; '' -> $TFDS_DATA_DIR or ~/tensorflow_datasets.
    chunk_size: records fetched per read.
    check: called with the dataset's feature names before reading (raises UserError on a
      mismatch); default: src_key and tgt_key must be two different languages of it.

  Returns:
    The pairs in dataset order, read as the stream is consumed.
  """
  from seq2seq_jax.data import tfds_raw  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.datasets import cmudict as cmudict_builder  # pylint: disable=g-import-not-at-top
  data_dir = cmudict_builder.default_data_dir(data_dir)  # the same default as G2P's data
  if name.partition('/')[0] == 'debian_ddtp':  # built here from apt's lists on first use
    from seq2seq_jax.datasets import ddtp as ddtp_builder  # pylint: disable=g-import-not-at-top
    name = ddtp_builder.prepare_for(name, src_key, tgt_key, data_dir)

  def languages(have):
    if src_key == tgt_key or {src_key, tgt_key} - set(have):
      raise UserError(f'{name} has languages {have}; data.src_lang={src_key!r} and '
                      f'data.tgt_lang={tgt_key!r} must be two of them')

  source = tfds_raw.Split(name, split, data_dir, check=check or languages)
  bad = BadPairs('skip')

  def pairs():
    for _, ex in source.records(chunk_size):
      s, t = text_of(ex[src_key]).strip(), text_of(ex[tgt_key]).strip()
      if s and t:
        yield s, t
      else:
        bad('', '')

  return Stream(pairs(), source.origin, bad)


def text_of(value) -> str:
  """A TFDS text value (bytes or str) as str."""
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


# --- An offline corpus: numbers written out in two languages (num2words) ---------------
def num2words_split(n: int) -> str:
  """Split of number n, fixed by a hash of the number: 5% test, 5% validation, 90% train."""
  v = zlib.crc32(str(n).encode()) % 100
  return 'test' if v < 5 else 'validation' if v < 10 else 'train'


def check_num2words_lang(lang: str) -> None:
  from num2words import CONVERTER_CLASSES  # pylint: disable=g-import-not-at-top
  if lang not in CONVERTER_CLASSES:
    raise UserError(f'num2words has no language {lang!r} (known: {sorted(CONVERTER_CLASSES)})')


def read_num2words(split: str, src_lang: str, tgt_lang: str, max_number: int) -> Corpus:
  """Numbers of `split` below max_number in words: 'four hundred and two' -> 'quatre cent deux'.

  Args:
    split: 'train', 'validation' or 'test' (see num2words_split).
    src_lang: a num2words language code, e.g. 'en'.
    tgt_lang: another, e.g. 'fr' or 'de'.
    max_number: how many numbers (all splits together).

  Returns:
    The pairs in increasing number order.
  """
  from num2words import num2words  # pylint: disable=g-import-not-at-top
  check_num2words_lang(src_lang)
  check_num2words_lang(tgt_lang)
  pairs = [(num2words(n, lang=src_lang), num2words(n, lang=tgt_lang))
           for n in range(max_number) if num2words_split(n) == split]
  return Corpus(pairs, 0, f'num2words:{src_lang}-{tgt_lang}/{split}')
