"""Debian's Description Translation Project as a TFDS dataset (array_record, no TensorFlow).

Package descriptions translated by people (https://ddtp.debian.org) ship in apt's lists once
`apt-get -o Acquire::Languages=en,fr,de update` has run: `Translation-en`, `Translation-fr`,
... (lz4) hold RFC 822 stanzas `Package`, `Description-md5`, `Description-<lang>`, the first
line of a description being the short description and ' .' lines separating the paragraphs
of the long one. A translation names the md5 of the English description it translates.

Pairs, for every md5 found in English and in the target language: the short descriptions,
plus the long descriptions' paragraphs one by one when both have as many paragraphs (when a
translator merged or split paragraphs their alignment is unknown: short line only). Whitespace
inside a paragraph is collapsed (the lists wrap lines); identical (en, xx) pairs count once.
Split by the English text, so text shared by sibling packages (-dev, -doc, -data) never
spans two splits:
  v = zlib.crc32(english) % 1000;  test: v < 41,  validation: 41 <= v < 61,  train: otherwise
(bounds picked for about 2,000 test and 1,000 validation en-fr pairs from bookworm's lists).

Reproducibility: the builder copies the lists it read, under apt's file names with the
suite's InRelease, into `<data_dir>/debian_ddtp/<pair>/<version>/lists/`, and metadata.json
beside dataset_info.json records the InRelease `Date` (the data version), each file's sha256
and the counts. `prepare(new_dir, pair, lists_dir=<that lists dir>)` rebuilds the same
dataset. A prepared dataset is never rebuilt from newer lists: delete it to refresh.

Like cmudict_builder, this must be a package module for `as_data_source()` to find it again.
"""
import datetime
import email.utils
import fcntl
import gzip
import hashlib
import lzma
import os
import re
import shutil
import zlib

import tensorflow_datasets as tfds

from seq2seq_jax.datasets.cmudict import default_data_dir, prepare_quietly
from seq2seq_jax.errors import UserError

NAME = 'debian_ddtp'
PAIRS = ('en-fr', 'en-de')
SPLITS = ('train', 'validation', 'test')
LISTS_ENV = 'DDTP_LISTS_DIR'             # where apt's lists are, if not the default
DEFAULT_LISTS_DIR = '/var/lib/apt/lists'
APT_COMMAND = 'apt-get -o Acquire::Languages=en,fr,de update'
# apt's file names: <host_path_dists_suite>_<component>_i18n_Translation-<lang>[.ext]
_LIST_RE = re.compile(r'^(?P<suite>.+)_(?P<component>[^_]+)_i18n_Translation-'
                      r'(?P<lang>[A-Za-z_]+?)(?P<ext>\.lz4|\.gz|\.xz)?$')


def split_of(english: str) -> str:
  """The split of a pair: a fixed hash of its English text, so it never changes."""
  v = zlib.crc32(english.encode('utf-8')) % 1000
  if v < 41:
    return 'test'
  if v < 61:
    return 'validation'
  return 'train'


def lists_dir_default(lists_dir: str = '') -> str:
  """`lists_dir` if non-empty, else $DDTP_LISTS_DIR, else apt's /var/lib/apt/lists."""
  return lists_dir or os.environ.get(LISTS_ENV, '') or DEFAULT_LISTS_DIR


def find_lists(lists_dir: str, lang: str) -> tuple[str, list[str], list[str]]:
  """apt's files for English and `lang` in one suite: (release, en files, lang files).

  Every component (main, contrib, ...) of the suite with both languages is used.

  Raises:
    UserError: no such lists (one line naming the apt-get command), or several suites.
  """
  found = {}  # (suite, component, lang) -> file name
  names = sorted(os.listdir(lists_dir)) if os.path.isdir(lists_dir) else []
  for fname in names:
    m = _LIST_RE.match(fname)
    if m:
      found.setdefault((m['suite'], m['component'], m['lang']), fname)
  both = sorted((s, c) for s, c, l in found if l == lang and (s, c, 'en') in found)
  suites = sorted({s for s, _ in both})
  if not suites:
    raise UserError(f'no apt lists with Translation-en and Translation-{lang} in {lists_dir}; '
                    f'get them (as root) with: {APT_COMMAND}')
  if len(suites) > 1:
    raise UserError(f'{lists_dir} has Translation-{lang} of several suites ({", ".join(suites)}'
                    f'); set ${LISTS_ENV} to a directory holding one suite\'s lists')
  suite = suites[0]
  release = [f'{suite}_{r}' for r in ('InRelease', 'Release') if f'{suite}_{r}' in names]
  if not release:
    raise UserError(f'{lists_dir} has no {suite}_InRelease (or _Release) beside the '
                    f'Translation lists; refresh them (as root) with: {APT_COMMAND}')
  full = lambda name: os.path.join(lists_dir, name)
  return (full(release[0]), [full(found[s, c, 'en']) for s, c in both],
          [full(found[s, c, lang]) for s, c in both])


def read_text(path: str) -> str:
  """A list file's text, decompressed by its extension as apt stores it (.lz4, .gz, .xz)."""
  if path.endswith('.lz4'):
    import lz4.frame  # pylint: disable=g-import-not-at-top
    opener = lz4.frame.open
  else:
    opener = {'.gz': gzip.open, '.xz': lzma.open}.get(os.path.splitext(path)[1], open)
  with opener(path, 'rb') as f:
    data = f.read()
  try:
    return data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise UserError(f'{path}: not UTF-8 at byte {e.start}') from None


def release_info(path: str) -> dict[str, str]:
  """Date (raw and ISO 8601 UTC), Suite and Codename from a Release / InRelease file."""
  text = read_text(path)
  field = lambda key: (re.search(rf'^{key}:[ \t]*(.*)$', text, re.M) or [None, ''])[1].strip()
  info = {'release_file': os.path.basename(path), 'release_date_raw': field('Date'),
          'suite': field('Suite'), 'codename': field('Codename')}
  try:
    when = email.utils.parsedate_to_datetime(info['release_date_raw'])
    info['release_date'] = when.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
  except (TypeError, ValueError):
    raise UserError(f'{path}: no readable Date field '
                    f'({info["release_date_raw"]!r})') from None
  return info


def parse_list(text: str) -> dict[str, list[str]]:
  """md5 -> description lines (short description first) of one Translation file.

  The same md5 appears once per package sharing the description; the first entry is kept.
  """
  out = {}
  for stanza in re.split(r'\n[ \t]*\n', text):
    md5, lines, in_description = '', None, False
    for line in stanza.split('\n'):
      if line[:1] in (' ', '\t'):
        if in_description:
          lines.append(line[1:])
        continue
      key, _, value = line.partition(':')
      in_description = key.startswith('Description-') and key != 'Description-md5'
      if key == 'Description-md5':
        md5 = value.strip()
      elif in_description:
        lines = [value.strip()]
    if md5 and lines:
      out.setdefault(md5, lines)
  return out


def paragraphs(lines: list[str]) -> tuple[str, list[str]]:
  """(short description, long paragraphs); whitespace collapsed, empty paragraphs dropped."""
  paras = [[]]
  for line in lines[1:]:
    if line.strip() == '.':
      paras.append([])
    else:
      paras[-1].append(line)
  collapse = lambda text: ' '.join(text.split())
  return collapse(lines[0]), [p for p in (collapse(' '.join(p)) for p in paras) if p]


def align(en: dict[str, list[str]], xx: dict[str, list[str]]) -> tuple[list, dict[str, int]]:
  """Sorted distinct (english, translation) pairs of two parsed lists, and counts."""
  pairs, aligned, mismatched = set(), 0, 0
  for md5, lines in xx.items():
    if md5 not in en:
      continue  # a translation of an English description no longer in the list
    (short_en, long_en), (short_xx, long_xx) = paragraphs(en[md5]), paragraphs(lines)
    aligned += 1
    if short_en and short_xx:
      pairs.add((short_en, short_xx))
    if len(long_en) == len(long_xx):
      pairs.update(zip(long_en, long_xx))
    else:
      mismatched += 1
  return sorted(pairs), {'descriptions_aligned': aligned,
                         'descriptions_without_english': len(set(xx) - set(en)),
                         'paragraph_count_mismatch': mismatched}


def _sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


class DebianDdtp(tfds.core.GeneratorBasedBuilder):
  """English package descriptions and their human translations (Debian DDTP)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'apt Translation lists; split by crc32 of the English text.'}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=p, description=f'{p} description pairs')
                     for p in PAIRS]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'apt\'s lists directory after `{APT_COMMAND}` (as root).'

  @property
  def lang(self) -> str:
    return self.builder_config.name.split('-')[1]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=('Debian package descriptions (short lines and paragraphs) with their '
                     'human translations; metadata.json holds the lists\' Release date '
                     '(the data version), file hashes and counts.'),
        features=tfds.features.FeaturesDict({'en': tfds.features.Text(),
                                             self.lang: tfds.features.Text()}),
        supervised_keys=('en', self.lang),
        homepage='https://ddtp.debian.org',
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    release, en_files, xx_files = find_lists(os.fspath(dl_manager.manual_dir), self.lang)
    # self.data_dir is TFDS's temporary dir here, renamed into place with the dataset.
    copy_dir = os.path.join(self.data_dir, 'lists')
    os.makedirs(copy_dir, exist_ok=True)
    for path in [release] + en_files + xx_files:
      shutil.copy2(path, copy_dir)
    en, xx = {}, {}
    for files, parsed in ((en_files, en), (xx_files, xx)):
      for path in files:
        for md5, lines in parse_list(read_text(path)).items():
          parsed.setdefault(md5, lines)
    pairs, counts = align(en, xx)
    by_split = {s: [] for s in SPLITS}
    for pair in pairs:
      by_split[split_of(pair[0])].append(pair)
    if not all(by_split.values()):  # TFDS cannot write an empty split
      sizes = ', '.join(f'{s}: {len(p)}' for s, p in by_split.items())
      raise UserError(f'{self.name}/{self.builder_config.name}: too few pairs in the lists to '
                      f'fill every split ({sizes})')
    self.info.metadata.update(
        release_info(release), **counts,
        files={os.path.basename(p): _sha256(p) for p in [release] + en_files + xx_files},
        pairs={s: len(p) for s, p in by_split.items()},
        english_words={s: sum(len(e.split()) for e, _ in p) for s, p in by_split.items()})
    return {s: self._generate_examples(p) for s, p in by_split.items()}

  def _generate_examples(self, pairs):
    for i, (en, xx) in enumerate(pairs):
      yield i, {'en': en, self.lang: xx}


def _is_prepared(builder: DebianDdtp) -> bool:
  # Looking first avoids TFDS's warning about a missing dataset_info.json on a fresh dir.
  return (os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))
          and builder.is_prepared())


def prepare(data_dir: str = '', pair: str = 'en-fr', lists_dir: str = '') -> DebianDdtp:
  """Prepares the pair's dataset into data_dir once (from apt's lists); returns the builder.

  Processes of one job may start at once (multi-host): an exclusive lock on a file in
  data_dir makes the others wait and then find the dataset prepared.

  Args:
    data_dir: TFDS data dir; '' -> $TFDS_DATA_DIR or ~/tensorflow_datasets.
    pair: 'en-fr' or 'en-de'.
    lists_dir: apt's lists; '' -> $DDTP_LISTS_DIR or /var/lib/apt/lists. Only read when the
      dataset is not prepared yet.

  Returns:
    A prepared DebianDdtp builder.

  Raises:
    UserError: unknown pair, missing lists, or a data dir that cannot be created.
  """
  if pair not in PAIRS:
    raise UserError(f'{NAME} has no pair {pair!r} (known: {", ".join(PAIRS)})')
  data_dir = default_data_dir(data_dir)
  try:
    os.makedirs(data_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create data dir {data_dir}: {e.strerror}') from None
  make = lambda: DebianDdtp(config=pair, data_dir=data_dir, file_format='array_record')
  builder = make()
  if _is_prepared(builder):
    return builder
  with open(os.path.join(data_dir, f'.{NAME}.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    builder = make()
    if not _is_prepared(builder):
      lists_dir = lists_dir_default(lists_dir)
      find_lists(lists_dir, builder.lang)  # a one-line error now, not TFDS's manual-dir one
      prepare_quietly(builder, f'Debian DDTP {builder.lang} descriptions (from apt lists)',
                      download_config=tfds.download.DownloadConfig(manual_dir=lists_dir))
  return builder


def prepare_for(name: str, src_lang: str, tgt_lang: str, data_dir: str) -> str:
  """Prepares what corpus.read_tfds was asked for; returns the full TFDS name to read.

  Bare 'debian_ddtp' takes the pair from the languages (either direction), so
  --config.data.tgt_lang=de alone turns an en-fr experiment into en-de.
  """
  pair = name.partition('/')[2]
  if not pair:
    other = {src_lang, tgt_lang} - {'en'}
    if 'en' not in (src_lang, tgt_lang) or len(other) != 1:
      raise UserError(f'{NAME} pairs English with one language ({", ".join(PAIRS)}); got '
                      f'data.src_lang={src_lang!r}, data.tgt_lang={tgt_lang!r}')
    pair = f'en-{other.pop()}'
  prepare(data_dir, pair)
  return f'{NAME}/{pair}'


def load_split(data_dir: str, pair: str, split: str) -> list[tuple[str, str]]:
  """The (english, translation) pairs of a split, preparing the dataset on first use.

  Raises:
    UserError: unknown split, pair, or missing lists.
  """
  if split not in SPLITS:
    raise UserError(f'unknown split {split!r} (known: {", ".join(SPLITS)})')
  builder = prepare(data_dir, pair)
  source = builder.as_data_source(split=split)
  examples = source.__getitems__(list(range(len(source))))  # one batched read
  return [(ex['en'].decode('utf-8'), ex[builder.lang].decode('utf-8')) for ex in examples]
