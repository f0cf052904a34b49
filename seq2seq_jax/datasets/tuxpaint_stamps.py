"""Real pictures with human captions: the stamps of Debian's `tuxpaint-stamps-default`.

`apt-get install tuxpaint-stamps-default` puts about 950 stamps under
/usr/share/tuxpaint/stamps/<category>/.../NAME.{png,svg}, each with NAME.txt: the first line is
a human-written English description ("A sock."), the following `LANG.utf8=...` lines its
translations into ~77 languages. `build` writes one captions TSV per split
(`image<TAB>caption`, the captioning task's input) with the stamps flattened onto white
(they are RGBA with transparent backgrounds), into a folder named by its parameters, once.

Held-out split by image: a CRC-32 of the stamp's path under the stamps folder puts 10% in test
and 10% in validation, stable across machines and package versions that keep the path.
Stamps only in SVG (about 165; Pillow does not rasterize SVG) and stamps without a caption in
the chosen language are skipped and counted.
"""
import glob
import hashlib
import json
import os
import zlib

from seq2seq_jax.data import built_dir
from seq2seq_jax.errors import UserError

DEFAULT_DIR = '/usr/share/tuxpaint/stamps'
SPLITS = ('train', 'validation', 'test')


def split_of(rel_path: str) -> str:
  v = zlib.crc32(rel_path.encode('utf-8')) % 100
  return 'test' if v < 10 else 'validation' if v < 20 else 'train'


def caption(txt_path: str, lang: str) -> str:
  """The stamp's caption in `lang` ('en': the first line), or '' when it has none."""
  with open(txt_path, encoding='utf-8', errors='replace') as f:
    lines = [l.strip() for l in f.read().splitlines()]
  if lang == 'en':
    return lines[0] if lines else ''
  prefix = f'{lang}.utf8='
  for line in lines[1:]:
    if line.startswith(prefix):
      return line[len(prefix):].strip()
  return ''


def build(root: str, lang: str = 'en', stamps_dir: str = DEFAULT_DIR,
          size: int = 128) -> str:
  """Writes ROOT/tuxpaint-<key>/{split}.tsv and flattened PNGs (once); returns the folder.

  Args:
    root: the data directory.
    lang: caption language: 'en', or a code of the NAME.txt translations ('fr', 'de', ...).
    stamps_dir: where the package put the stamps.
    size: the longer side of the written pictures, in pixels (aspect ratio kept).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  txts = sorted(glob.glob(os.path.join(stamps_dir, '**', '*.txt'), recursive=True))
  if not txts:
    raise UserError(f'no Tux Paint stamps in {stamps_dir}: apt-get install '
                    'tuxpaint-stamps-default')
  key = hashlib.sha256(json.dumps([lang, os.path.abspath(stamps_dir), size, len(txts)]).encode()
                       ).hexdigest()[:12]
  out = os.path.join(root, f'tuxpaint-{lang}-{key}')
  if built_dir.is_built(out, 'info.json'):
    return out
  with built_dir.building(out, 'info.json') as tmp:
    lines = {s: [] for s in SPLITS}
    skipped = {'svg_only': 0, 'no_image': 0, f'no_{lang}_caption': 0}
    for txt in txts:
      base = txt[:-4]
      rel = os.path.relpath(base, stamps_dir)
      if not os.path.isfile(base + '.png'):
        skipped['svg_only' if os.path.isfile(base + '.svg') else 'no_image'] += 1
        continue
      text = caption(txt, lang)
      if not text:
        skipped[f'no_{lang}_caption'] += 1
        continue
      with Image.open(base + '.png') as im:
        im = im.convert('RGBA')
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        flat = Image.new('RGB', im.size, (255, 255, 255))
        flat.paste(im, mask=im.getchannel('A'))
      name = rel.replace(os.sep, '__') + '.png'
      flat.save(os.path.join(tmp, name))
      lines[split_of(rel)].append(f'{name}\t{text}\n')
    for split, rows in lines.items():
      with open(os.path.join(tmp, f'{split}.tsv'), 'w', encoding='utf-8') as f:
        f.writelines(rows)
    info = {'lang': lang, 'stamps_dir': os.path.abspath(stamps_dir), 'size': size,
            'images': {s: len(r) for s, r in lines.items()}, 'skipped': skipped}
    with open(os.path.join(tmp, 'info.json'), 'w', encoding='utf-8') as f:
      json.dump(info, f, indent=1)
  return out
