"""Real Czech speech: the recorded dialogue of Fish Fillets NG, from Debian's packages.

`apt-get install fillets-ng-data fillets-ng-data-cs` puts the game's Czech voice recordings
under /usr/share/games/fillets-ng/sound/<level>/cs/<id>.ogg (about 1,780 lines spoken by the
game's voice actors, 97 minutes) and their text under script/<level>/dialogs_cs.lua, as
`dialogId("<id>", "<font>", "<English>")` followed by `dialogStr("<Czech>")`. `build` pairs
each recording with its Czech line and writes one TSV per split (`ogg_path<TAB>transcript`,
the speech task's input; the recordings stay where the package put them) into a folder named
by its parameters, once.

Transcripts are normalised for character recognition: lower case, every character that is
not a letter or a digit becomes a space, spaces collapse ("Co je to za divnou loď?" ->
"co je to za divnou loď"). Recordings without a line (a few narrations) and lines longer than
`max_seconds` are skipped and counted in spec.json.

Held-out split by level: a CRC-32 of the level's folder name puts about 10% of the 78 levels
in test and 10% in validation, so no test line was heard in training, though the speakers
(the two fish and a few others) are the same voices throughout.
"""
import dataclasses
import glob
import hashlib
import json
import os
import re
import zlib

from seq2seq_jax.data import built_dir
from seq2seq_jax.errors import UserError

DEFAULT_DIR = '/usr/share/games/fillets-ng'
SPLITS = ('train', 'validation', 'test')
_LINE = re.compile(r'dialogId\(\s*"([^"]+)"\s*,\s*"[^"]*"\s*,\s*"(?:[^"\\]|\\.)*"\s*\)\s*'
                   r'dialogStr\(\s*"((?:[^"\\]|\\.)*)"\s*\)', re.S)


@dataclasses.dataclass(frozen=True)
class FilletsSpec:
  """Everything that shapes the dataset (its folder name is a hash of it)."""
  game_dir: str = DEFAULT_DIR
  lang: str = 'cs'
  max_seconds: float = 12.0
  test_percent: int = 10
  validation_percent: int = 10

  def key(self) -> str:
    blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def split_of(level: str, spec: FilletsSpec) -> str:
  v = zlib.crc32(level.encode('utf-8')) % 100
  return ('test' if v < spec.test_percent else
          'validation' if v < spec.test_percent + spec.validation_percent else 'train')


def normalize(text: str) -> str:
  text = text.replace('\\"', '"').replace('\\n', ' ').lower()
  return ' '.join(''.join(ch if ch.isalnum() else ' ' for ch in text).split())


def lines(spec: FilletsSpec) -> dict[tuple[str, str], str]:
  """(level, dialogue id) -> the normalised line, from every level's dialogs_<lang>.lua."""
  out = {}
  for path in sorted(glob.glob(os.path.join(spec.game_dir, 'script', '*',
                                            f'dialogs_{spec.lang}.lua'))):
    level = os.path.basename(os.path.dirname(path))
    with open(path, encoding='utf-8', errors='replace') as f:
      for ident, text in _LINE.findall(f.read()):
        out[(level, ident)] = normalize(text)
  return out


def build(root: str, spec: FilletsSpec = FilletsSpec()) -> str:
  """Writes ROOT/fillets-<lang>-<key>/{split}.tsv and spec.json (once); returns that folder."""
  import soundfile  # pylint: disable=g-import-not-at-top
  out = os.path.join(root, f'fillets-{spec.lang}-{spec.key()}')
  if built_dir.is_built(out, 'spec.json'):
    return out
  recordings = sorted(glob.glob(os.path.join(spec.game_dir, 'sound', '*', spec.lang, '*.ogg')))
  if not recordings:
    raise UserError(f'no recordings under {spec.game_dir}/sound/*/{spec.lang}/: apt-get install '
                    f'fillets-ng-data fillets-ng-data-{spec.lang}')
  text = lines(spec)
  rows = {s: [] for s in SPLITS}
  seconds = {s: 0.0 for s in SPLITS}
  skipped = {'no line': 0, 'too long': 0, 'unreadable': 0}
  for path in recordings:
    level = path.split(os.sep)[-3]
    line = text.get((level, os.path.basename(path)[:-len('.ogg')]), '')
    if not line:
      skipped['no line'] += 1
      continue
    try:
      duration = soundfile.info(path).duration
    except Exception:  # pylint: disable=broad-except
      skipped['unreadable'] += 1
      continue
    if duration > spec.max_seconds:
      skipped['too long'] += 1
      continue
    split = split_of(level, spec)
    rows[split].append(f'{path}\t{line}\n')
    seconds[split] += duration
  with built_dir.building(out, 'spec.json') as tmp:
    for split in SPLITS:
      with open(os.path.join(tmp, f'{split}.tsv'), 'w', encoding='utf-8') as f:
        f.writelines(rows[split])
    meta = dataclasses.asdict(spec) | {
        'utterances': {s: len(r) for s, r in rows.items()},
        'minutes': {s: round(v / 60, 2) for s, v in seconds.items()},
        'skipped': skipped,
        'characters': ''.join(sorted({c for r in rows.values() for l in r
                                      for c in l.split('\t', 1)[1].strip()}))}
    with open(os.path.join(tmp, 'spec.json'), 'w', encoding='utf-8') as f:
      json.dump(meta, f, indent=1, ensure_ascii=False)
  return out
