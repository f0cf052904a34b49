"""The debian_ddtp builder on tiny apt lists written here (lz4, as apt stores them)."""
import itertools
import json
import os
import zlib

import lz4.frame
import pytest

from seq2seq_jax.data import corpus
from seq2seq_jax.datasets import ddtp as ddtp_builder
from seq2seq_jax.errors import UserError

SUITE = 'deb.example.org_debian_dists_tiny'
DATE = 'Sat, 11 Jul 2026 10:16:37 UTC'
SPLITS = ('train', 'validation', 'test')


def _crc_split(english: str) -> str:
  # The rule restated here, independently of ddtp_builder.split_of.
  v = zlib.crc32(english.encode('utf-8')) % 1000
  return 'test' if v < 41 else 'validation' if v < 61 else 'train'


def _in(split: str, stem: str) -> str:
  """An English text that hashes into `split`, so every split gets pairs."""
  return next(t for t in (f'{stem} {i}' for i in itertools.count()) if _crc_split(t) == split)


FOO_SHORT, BAR_SHORT, DOC_SHORT = _in('test', 'foo tool'), _in('validation', 'bar'), _in(
    'train', 'foo docs')
P1, P2 = 'Foo reads lines and writes them back.', 'It is fast.'

# md5 -> (package, English short, English paragraphs); one English stanza per package.
EN = [('m-foo', 'foo', FOO_SHORT, ['Foo reads  lines\n and writes   them back.', P2]),
      ('m-foo', 'foo-transitional', FOO_SHORT, [P1, P2]),  # same md5 again: same text
      ('m-dev', 'foo-dev', 'foo tool - development files', [P1, P2]),
      ('m-doc', 'foo-doc', DOC_SHORT, [P1]),
      ('m-bar', 'bar', BAR_SHORT, ['Bar one.', 'Bar two.', 'Bar three.']),
      ('m-untranslated', 'baz', 'baz tool', ['Baz.'])]
FR = [('m-foo', 'foo', 'outil foo', ['Foo lit des lignes\net les réécrit.', 'Il est rapide.']),
      ('m-dev', 'foo-dev', 'outil foo - fichiers de développement',
       ['Foo lit des lignes et les réécrit.', 'Il est rapide.']),
      ('m-doc', 'foo-doc', 'documentation de foo', ['Foo lit des lignes puis les réécrit.']),
      ('m-bar', 'bar', 'bar', ['Bar un et deux.', 'Bar trois.']),  # 2 paragraphs for 3
      ('m-gone', 'old', 'description périmée', ['Plus dans la liste anglaise.'])]
DE = [('m-foo', 'foo', 'Werkzeug foo', ['Foo liest Zeilen und schreibt sie zurück.',
                                        'Es ist schnell.']),
      ('m-bar', 'bar', 'bar', ['Bar eins.', 'Bar zwei.', 'Bar drei.']),
      ('m-doc', 'foo-doc', 'Dokumentation von foo', ['Foo liest Zeilen.'])]
WANT_FR = {(FOO_SHORT, 'outil foo'), (P1, 'Foo lit des lignes et les réécrit.'),
           (P2, 'Il est rapide.'),
           ('foo tool - development files', 'outil foo - fichiers de développement'),
           (DOC_SHORT, 'documentation de foo'), (P1, 'Foo lit des lignes puis les réécrit.'),
           (BAR_SHORT, 'bar')}


def _stanza(lang: str, md5: str, package: str, short: str, paras: list[str]) -> str:
  lines = [f'Package: {package}', f'Description-md5: {md5}', f'Description-{lang}: {short}']
  for i, para in enumerate(paras):
    lines += [' .'] * bool(i) + [' ' + line for line in para.split('\n')]
  return '\n'.join(lines) + '\n'


def write_lists(path: str, langs: dict[str, list], release: bool = True) -> str:
  """apt-style lists: one lz4 Translation file per language and the suite's InRelease."""
  os.makedirs(path, exist_ok=True)
  for lang, entries in langs.items():
    text = '\n'.join(_stanza(lang, *e) for e in entries)
    with open(os.path.join(path, f'{SUITE}_main_i18n_Translation-{lang}.lz4'), 'wb') as f:
      f.write(lz4.frame.compress(text.encode('utf-8')))
  if release:
    with open(os.path.join(path, f'{SUITE}_InRelease'), 'w', encoding='utf-8') as f:
      f.write('-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\n'
              f'Suite: oldstable\nCodename: tiny\nDate: {DATE}\n')
  return path


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """(data_dir, lists_dir, builder) of en-fr built once from the tiny lists."""
  tmp = tmp_path_factory.mktemp('ddtp')
  lists = write_lists(str(tmp / 'lists'), {'en': EN, 'fr': FR, 'de': DE})
  data_dir = str(tmp / 'tfds')
  return data_dir, lists, ddtp_builder.prepare(data_dir, 'en-fr', lists_dir=lists)


def _splits(data_dir: str, pair: str = 'en-fr') -> dict[str, list[tuple[str, str]]]:
  return {s: ddtp_builder.load_split(data_dir, pair, s) for s in SPLITS}


def test_pairs_align_by_md5_and_count_once(built):
  splits = _splits(built[0])
  got = [p for pairs in splits.values() for p in pairs]
  # Untranslated (m-untranslated) and English-less (m-gone) descriptions give nothing;
  # foo and foo-dev share two identical paragraph pairs, stored once; foo-doc translates P1
  # differently, a distinct pair. Wrapped lines are joined with single spaces.
  assert len(got) == len(set(got))
  assert set(got) == WANT_FR
  meta = built[2].info.metadata
  assert meta['descriptions_aligned'] == 4
  assert meta['descriptions_without_english'] == 1
  assert meta['pairs'] == {s: len(p) for s, p in splits.items()}


def test_paragraph_count_mismatch_gives_the_short_line_only(built):
  got = {p for pairs in _splits(built[0]).values() for p in pairs}
  bar = {p for p in got if p[0].startswith('Bar') or p[0] == BAR_SHORT}
  assert bar == {(BAR_SHORT, 'bar')}
  assert built[2].info.metadata['paragraph_count_mismatch'] == 1


def test_split_is_by_english_text_and_stable(built, tmp_path):
  splits = _splits(built[0])
  assert all(splits.values())  # the texts were picked to reach every split
  where = {}
  for split, pairs in splits.items():
    assert {_crc_split(e) for e, _ in pairs} == {split}
    for e, _ in pairs:
      assert where.setdefault(e, split) == split == ddtp_builder.split_of(e)
  for v, split in ((0, 'test'), (40, 'test'), (41, 'validation'), (60, 'validation'),
                   (61, 'train'), (999, 'train')):  # the bounds, texts hashing exactly there
    text = next(t for t in (f'text {i}' for i in itertools.count())
                if zlib.crc32(t.encode()) % 1000 == v)
    assert ddtp_builder.split_of(text) == split
  # P1 comes from foo, foo-dev and foo-doc with two translations: one split for all.
  assert sum(e == P1 for pairs in splits.values() for e, _ in pairs) == 2
  # Other lists (stanzas reordered, one more package) leave every pair in its split.
  lists = write_lists(str(tmp_path / 'lists'), {
      'en': EN[::-1] + [('m-new', 'qux', _in('test', 'qux'), ['Qux.'])],
      'fr': FR[::-1] + [('m-new', 'qux', 'qux', ['Qux en français.'])]})
  ddtp_builder.prepare(str(tmp_path / 'tfds'), 'en-fr', lists_dir=lists)
  for split, pairs in _splits(str(tmp_path / 'tfds')).items():
    assert set(splits[split]) < set(pairs) or split != 'test' and splits[split] == pairs


def test_lists_are_copied_with_their_release_date_and_rebuild_identically(built, tmp_path):
  data_dir, lists, builder = built
  copied = os.path.join(builder.data_dir, 'lists')
  assert sorted(os.listdir(copied)) == sorted(
      f for f in os.listdir(lists) if not f.endswith('Translation-de.lz4'))
  for name in os.listdir(copied):
    with open(os.path.join(copied, name), 'rb') as a, open(os.path.join(lists, name), 'rb') as b:
      assert a.read() == b.read()
  with open(os.path.join(builder.data_dir, 'metadata.json'), encoding='utf-8') as f:
    meta = json.load(f)
  assert meta['release_date'] == '2026-07-11T10:16:37Z'
  assert meta['release_date_raw'] == DATE and meta['codename'] == 'tiny'
  assert set(meta['files']) == set(os.listdir(copied))
  rebuilt = ddtp_builder.prepare(str(tmp_path), 'en-fr', lists_dir=copied)
  assert _splits(str(tmp_path)) == _splits(data_dir)
  assert dict(rebuilt.info.metadata) == meta


def test_missing_lists_name_the_apt_command(tmp_path, monkeypatch):
  command = 'apt-get -o Acquire::Languages=en,fr,de update'
  empty = str(tmp_path / 'empty')
  os.makedirs(empty)
  english_only = write_lists(str(tmp_path / 'en_only'), {'en': EN})
  for lists in (empty, english_only, str(tmp_path / 'absent')):
    with pytest.raises(UserError) as e:
      ddtp_builder.prepare(str(tmp_path / 'tfds'), 'en-fr', lists_dir=lists)
    assert command in str(e.value) and '\n' not in str(e.value)
  # What the translation task sees, lists found through $DDTP_LISTS_DIR.
  monkeypatch.setenv(ddtp_builder.LISTS_ENV, empty)
  with pytest.raises(UserError, match='Acquire::Languages=en,fr,de update'):
    corpus.read_tfds('debian_ddtp', 'train', 'en', 'de', str(tmp_path / 'tfds'))
  no_release = write_lists(str(tmp_path / 'no_release'), {'en': EN, 'fr': FR}, release=False)
  with pytest.raises(UserError, match='InRelease'):
    ddtp_builder.prepare(str(tmp_path / 'tfds'), 'en-fr', lists_dir=no_release)
  too_few = write_lists(str(tmp_path / 'too_few'), {'en': EN[:1], 'fr': FR[:1]})
  with pytest.raises(UserError, match='too few pairs'):
    ddtp_builder.prepare(str(tmp_path / 'tfds'), 'en-fr', lists_dir=too_few)
  assert not os.path.exists(tmp_path / 'tfds' / 'debian_ddtp' / 'en-fr' / '1.0.0')


def test_the_translation_reader_reads_it_either_way(built, monkeypatch):
  data_dir, lists, _ = built
  want = _splits(data_dir)
  for split in SPLITS:
    c = corpus.read_tfds('debian_ddtp/en-fr', split, 'en', 'fr', data_dir)
    assert c.pairs == want[split] and c.skipped == 0
    assert corpus.read_tfds('debian_ddtp', split, 'fr', 'en', data_dir).pairs == [
        (f, e) for e, f in want[split]]
  # Bare 'debian_ddtp' takes the pair from the languages: en-de, built on first use.
  monkeypatch.setenv(ddtp_builder.LISTS_ENV, lists)
  got = [p for s in SPLITS for p in corpus.read_tfds('debian_ddtp', s, 'en', 'de', data_dir).pairs]
  assert sorted(got) == sorted([(FOO_SHORT, 'Werkzeug foo'),
                                (P1, 'Foo liest Zeilen und schreibt sie zurück.'),
                                (P2, 'Es ist schnell.'), (BAR_SHORT, 'bar'),
                                ('Bar one.', 'Bar eins.'), ('Bar two.', 'Bar zwei.'),
                                ('Bar three.', 'Bar drei.'), (DOC_SHORT, 'Dokumentation von foo'),
                                (P1, 'Foo liest Zeilen.')])
  with pytest.raises(UserError, match='English'):
    corpus.read_tfds('debian_ddtp', 'test', 'fr', 'de', data_dir)
  with pytest.raises(UserError, match='no pair'):
    corpus.read_tfds('debian_ddtp/en-es', 'test', 'en', 'es', data_dir)
