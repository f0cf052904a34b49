"""Code summarization pairs from the Python source that ships with Python and installed packages.

The CodeXGLUE code-to-text task (Lu et al. 2021, Python part of CodeSearchNet): the source is
a function or method with its docstring removed, the target is the docstring's first sentence.
Here the code is real code written by people that is already on the machine: the Python
standard library and the packages pinned in requirements.txt, so the corpus is the same for a
given Python and requirements file.

  pairs = collect(source_files(spec))         # [{'source', 'target', 'path', 'name', 'line'}]
  folder = build(root, spec)                  # writes train/validation/test.jsonl once

Filters (in the spirit of CodeSearchNet's): files that do not parse are skipped; a function
needs a docstring and some code besides it; the target is the first sentence of the
docstring's first paragraph, whitespace collapsed, of min_target_words..max_target_words
words, without URLs or doctest prompts; sources longer than max_source_lines are dropped.
Exact duplicate (source, target) pairs are kept once (the first in path order). The split is by
file: a hash of the file's path names its split, so no file spans two splits.
"""
import ast
import dataclasses
import hashlib
import importlib.metadata
import inspect
import json
import os
import re
import sysconfig
import textwrap

from seq2seq_jax.data import built_dir
from seq2seq_jax.errors import UserError

SPLITS = ('train', 'validation', 'test')
_SENTENCE_END = re.compile(r'(?<=[.!?])\s')


@dataclasses.dataclass(frozen=True)
class PydocSpec:
  """Everything that shapes the corpus (its folder name is a hash of it)."""
  packages: tuple[str, ...] = ()     # distribution names; () = those in requirements_file
  requirements_file: str = ''        # '' = the repository's requirements.txt
  stdlib: bool = True                # include the Python standard library (not its tests)
  min_target_words: int = 3
  max_target_words: int = 48
  max_source_lines: int = 60
  split_percent: tuple[int, int, int] = (90, 5, 5)

  def check(self) -> None:
    if sum(self.split_percent) != 100 or min(self.split_percent) < 0:
      raise UserError(f'data.pydoc.split_percent must be three shares summing to 100, got '
                      f'{self.split_percent}')
    if not 0 < self.min_target_words <= self.max_target_words:
      raise UserError('data.pydoc needs 0 < min_target_words <= max_target_words')
    if self.max_source_lines < 2:
      raise UserError('data.pydoc.max_source_lines must be at least 2')


def first_sentence(doc: str, min_words: int, max_words: int) -> str | None:
  """The first sentence of a docstring's first paragraph, or None if it is not a summary."""
  paragraph = inspect.cleandoc(doc).split('\n\n')[0]
  text = ' '.join(paragraph.split())
  end = _SENTENCE_END.search(text)
  sentence = text[:end.start()] if end else text
  if ('://' in sentence or '>>>' in sentence or not sentence[:1].isalpha()
      or not min_words <= len(sentence.split()) <= max_words):
    return None
  return sentence


def pairs_from_source(text: str, path: str, spec: PydocSpec) -> list[dict]:
  """Every (function without its docstring, first sentence) pair of one file's text."""
  try:
    tree = ast.parse(text)
  except (SyntaxError, ValueError):
    return []
  lines = text.splitlines()
  out = []
  for node in ast.walk(tree):
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    doc = ast.get_docstring(node, clean=False)
    if not doc or len(node.body) < 2:
      continue
    target = first_sentence(doc, spec.min_target_words, spec.max_target_words)
    first = node.body[0]
    if target is None or first.lineno == node.lineno:   # one-line `def f(): "doc"; ...`
      continue
    # From the `def` line (decorators left out) to the end, without the docstring's lines.
    kept = lines[node.lineno - 1:first.lineno - 1] + lines[first.end_lineno:node.end_lineno]
    code = textwrap.dedent('\n'.join(kept)).strip('\n')
    if len(kept) > spec.max_source_lines or not code:
      continue
    out.append({'source': code, 'target': target, 'path': path, 'name': node.name,
                'line': node.lineno})
  return sorted(out, key=lambda p: p['line'])


def _requirement_names(path: str) -> list[str]:
  names = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      line = line.split('#')[0].strip()
      if line:
        names.append(re.split(r'[<>=!~\[; ]', line, maxsplit=1)[0])
  return names


def source_files(spec: PydocSpec) -> list[tuple[str, str]]:
  """(path as named in the corpus, file on disk) of every .py file the spec covers, sorted."""
  files = []
  if spec.stdlib:
    root = sysconfig.get_paths()['stdlib']
    for dirpath, dirnames, filenames in os.walk(root):
      rel_dir = os.path.relpath(dirpath, root)
      # Not installed packages, not the regression tests.
      dirnames[:] = [d for d in dirnames if d not in ('site-packages', 'dist-packages',
                                                       'test', 'tests', 'idle_test')]
      files += [(os.path.normpath(os.path.join('stdlib', rel_dir, n)), os.path.join(dirpath, n))
                for n in filenames if n.endswith('.py')]
  packages = spec.packages
  if not packages:
    req = spec.requirements_file or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        'requirements.txt')
    packages = tuple(_requirement_names(req))
  for name in packages:
    try:
      dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError as e:
      raise UserError(f'data.pydoc: package {name!r} is not installed (pip install {name})') from e
    for f in dist.files or ():
      if f.suffix == '.py':
        files.append((f'{dist.metadata["Name"]}/{f}', str(dist.locate_file(f))))
  return sorted(set(files))


def split_of(path: str, split_percent=(90, 5, 5)) -> str:
  """The split of a file, from a hash of its corpus path: a file never spans two splits."""
  bucket = int(hashlib.sha1(path.encode()).hexdigest(), 16) % 100
  train, validation, _ = split_percent
  return 'train' if bucket < train else 'validation' if bucket < train + validation else 'test'


def collect(files: list[tuple[str, str]], spec: PydocSpec = PydocSpec()) -> list[dict]:
  """All pairs of the files, exact duplicates kept once (the first in path order), each with
  its file's split under 'split'."""
  seen, out = set(), []
  for path, disk in sorted(files):
    try:
      with open(disk, encoding='utf-8') as f:
        text = f.read()
    except (OSError, UnicodeDecodeError):
      continue
    for pair in pairs_from_source(text, path, spec):
      key = (pair['source'], pair['target'])
      if key not in seen:
        seen.add(key)
        out.append(pair | {'split': split_of(path, spec.split_percent)})
  return out


def build(root: str, spec: PydocSpec = PydocSpec()) -> str:
  """Writes {train,validation,test}.jsonl and spec.json into root/pydoc-<hash> once; returns
  the folder. The hash covers the spec and the list of source files with their sizes, so a
  different Python or package set gets its own folder."""
  spec.check()
  files = source_files(spec)
  digest = hashlib.sha1(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode())
  for path, disk in files:
    digest.update(f'{path}\0{os.path.getsize(disk)}\0'.encode())
  folder = os.path.join(root, f'pydoc-{digest.hexdigest()[:12]}')
  if built_dir.is_built(folder, 'spec.json'):
    return folder
  with built_dir.building(folder, 'spec.json') as tmp:
    pairs = collect(files, spec)
    counts = {}
    for split in SPLITS:
      rows = [p for p in pairs if p['split'] == split]
      counts[split] = len(rows)
      with open(os.path.join(tmp, f'{split}.jsonl'), 'w', encoding='utf-8') as f:
        for p in rows:
          f.write(json.dumps({k: p[k] for k in ('source', 'target', 'path', 'name', 'line')})
                  + '\n')
    with open(os.path.join(tmp, 'spec.json'), 'w', encoding='utf-8') as f:
      json.dump({'spec': dataclasses.asdict(spec), 'files': len(files), 'pairs': counts}, f,
                indent=1)
  return folder
