"""The Tux Paint stamps reader on a small stamps tree made here (the package is never needed):
captions per language, flattening onto white, held-out split by path, skips counted."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from seq2seq_jax.datasets import tuxpaint_stamps as tux
from seq2seq_jax.errors import UserError


def _stamp(root, rel, lines, image='png'):
  base = os.path.join(root, rel)
  os.makedirs(os.path.dirname(base), exist_ok=True)
  with open(base + '.txt', 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  if image == 'png':
    im = np.zeros((40, 20, 4), np.uint8)   # transparent, with an opaque red bar
    im[10:30, 5:15] = (255, 0, 0, 255)
    Image.fromarray(im, 'RGBA').save(base + '.png')
  elif image == 'svg':
    with open(base + '.svg', 'w') as f:
      f.write('<svg xmlns="http://www.w3.org/2000/svg"/>')


def test_build_reads_captions_per_language_and_splits_by_path(tmp_path):
  stamps = str(tmp_path / 'stamps')
  names = [f'animals/cat{i}' for i in range(40)]
  for i, rel in enumerate(names):
    lines = [f'A cat number {i}.', f'fr.utf8=Un chat numéro {i}.']
    _stamp(stamps, rel, lines if i % 10 else lines[:1])   # every tenth: no French
  _stamp(stamps, 'space/rocket', ['A rocket.'], image='svg')
  _stamp(stamps, 'space/ghost', ['Nothing to see.'], image=None)
  out = tux.build(str(tmp_path / 'data'), 'fr', stamps, size=16)
  info = json.load(open(os.path.join(out, 'info.json')))
  assert info['skipped'] == {'svg_only': 1, 'no_image': 1, 'no_fr_caption': 4}
  seen = {}
  for split in tux.SPLITS:
    for line in open(os.path.join(out, f'{split}.tsv'), encoding='utf-8'):
      name, text = line.rstrip('\n').split('\t')
      i = int(name.split('cat')[1].split('.')[0])
      assert text == f'Un chat numéro {i}.' and tux.split_of(f'animals/cat{i}') == split
      seen[i] = split
  assert sorted(seen) == [i for i in range(40) if i % 10]
  assert sum(info['images'].values()) == 36 and info['images']['train'] < 36
  img = Image.open(os.path.join(out, 'animals__cat1.png'))
  assert img.mode == 'RGB' and max(img.size) == 16
  px = np.asarray(img)
  assert tuple(px[0, 0]) == (255, 255, 255)           # transparent became white
  assert px[8, 4, 0] > 200 and px[8, 4, 1] < 60        # the red bar stayed red
  # English is the first line; built once (a second call returns the same folder).
  en = tux.build(str(tmp_path / 'data'), 'en', stamps, size=16)
  assert en != out and tux.build(str(tmp_path / 'data'), 'en', stamps, size=16) == en
  assert 'A cat number 1.' in open(os.path.join(en, 'train.tsv')).read() + open(
      os.path.join(en, 'validation.tsv')).read() + open(os.path.join(en, 'test.tsv')).read()


def test_missing_package_is_one_line(tmp_path):
  with pytest.raises(UserError, match='apt-get install tuxpaint-stamps-default'):
    tux.build(str(tmp_path), 'en', str(tmp_path / 'nowhere'))
