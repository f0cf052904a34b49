"""Image captioning: an image in, a sentence out, scored against all its reference captions.

Data (config.data):
  train_captions, eval_captions, test_captions
      per split, a TSV of `image_path<TAB>caption` lines (several lines per image allowed) or a
      COCO-format annotation JSON (`images: [{id, file_name}]`, `annotations: [{image_id,
      caption}]`); relative image paths are relative to `image_root` if set, else to the
      captions file's folder.
  image_root, image_size (height, width), channels (3 RGB or 1 grey)
      images decoded with Pillow, resized (bilinear) and scaled to [-1, 1].
  vocab_size, min_count
      the word vocabulary: the training captions' words seen at least min_count times (Karpathy
      and Fei-Fei's 5 for COCO), the most frequent first, at most vocab_size - 4 of them; the
      table always has vocab_size entries (unused ones stay unused), so the model's shapes come
      from the config. Built on first use into DIR/vocab.txt and reused on resume and in
      predict / eval mode.
  target_len
      padded caption length with EOS; longer training captions are dropped (counted).
  bad_pairs
      'error' (default): a missing or unreadable image, a line without a TAB, a line that is
      not valid UTF-8 or an empty caption stops the run naming file and line; 'skip': skipped
      and counted.
  tuxpaint_stamps
      instead of the three captions files: a dict (lang, stamps_dir, size) building them from
      Debian's tuxpaint-stamps-default pictures into data_dir (datasets/tuxpaint_stamps.py).
  tfds_name, train_split, eval_split, test_split, data_dir
      instead of the captions files: a prepared TFDS dataset with coco_captions' features
      (`image`, `captions`/`text`), e.g. 'coco_captions' with the Karpathy splits
      'train+restval', 'val', 'test'; read without TensorFlow (array_record; prepare it with
      `tfds build coco_captions --file_format=array_record`).
  cache_images
      True (default): every image is decoded once into memory (float32: 600 KB at 224 x 224);
      False: images stay encoded (a path or the TFDS record) and are decoded when a batch
      needs them, so memory does not grow with the dataset (COCO: 123k images).

Captions are tokenized as the metrics tokenize them (caption_metrics.tokenize: lower case,
no punctuation). Metrics: BLEU-1..4 (multi-reference, corpus) and CIDEr-D, as `bleu1`..`bleu4`
and `cider`; the best checkpoint has the highest validation CIDEr.
"""
import collections
import functools
import io
import json
import os
from typing import Any, Sequence

import numpy as np

from seq2seq_jax.metrics import captions as caption_metrics
from seq2seq_jax.data import corpus as corpus_lib
from seq2seq_jax.data import features
from seq2seq_jax.data import sources
from seq2seq_jax.data import vocab as vocab_lib
from seq2seq_jax.data.pipeline import EvalSet
from seq2seq_jax.data.vocab import NUM_SPECIAL, SymbolVocab
from seq2seq_jax import paths
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import base
from seq2seq_jax.tasks.image_to_text import load_image

SOURCES = ('captions', 'tuxpaint_stamps', 'tfds')   # the entries of data/sources.py it reads
# The TFDS source's split names when data.train_split etc. are not set: coco_captions'.
TFDS_SPLITS = {'train': 'train', 'validation': 'val', 'test': 'test'}


class LazyImage:
  """An image decoded only when a batch needs it (np.stack / np.asarray call __array__)."""
  __slots__ = ('_load', 'shape')
  dtype = np.dtype(np.float32)

  def __init__(self, load, shape: tuple[int, int, int]):
    self._load, self.shape = load, shape

  def __len__(self) -> int:
    return self.shape[0]

  def __array__(self, dtype=None, copy=None):
    x = self._load()
    return x if dtype is None else x.astype(dtype)


def _tfds_image(source, index: int, size, channels) -> np.ndarray:
  return load_image(io.BytesIO(source[index]['image']), size, channels)


def read_captions(path: str, image_root: str, bad) -> list[tuple[str, str, str]]:
  """(image path, caption, where) of a TSV or COCO JSON captions file, in file order."""
  if paths.is_remote(path):
    path = paths.check(path, 'the captions file')
  if not paths.isfile(path):
    raise UserError(f'{path} not found')
  root = image_root or os.path.dirname(paths.resolve(path))
  out = []
  if path.endswith('.json'):
    try:
      coco = json.loads(paths.read_text(path))
      files = {im['id']: im['file_name'] for im in coco['images']}
      anns = coco['annotations']
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(f'{path}: not a COCO captions file ({type(e).__name__}: {e})') from None
    for n, a in enumerate(anns):
      where = f'{path}: annotations[{n}]'
      if a.get('image_id') not in files:
        bad(where, f'image_id {a.get("image_id")!r} is not in images')
        continue
      out.append((os.path.join(root, files[a['image_id']]), str(a.get('caption', '')), where))
  else:
    with paths.open_file(path, 'rb') as f:
      for n, line in enumerate(corpus_lib.lines(f), 1):
        if line is None:
          bad(f'{path}:{n}', 'not valid UTF-8')
          continue
        if not line.strip():
          continue
        if '\t' not in line:
          bad(f'{path}:{n}', 'no TAB between the image path and the caption')
          continue
        image, caption = line.split('\t', 1)
        out.append((os.path.join(root, image.strip()), caption, f'{path}:{n}'))
  return out


class Task(base.BaseTask):
  """See the module docstring; the contract is seq2seq_jax/tasks/base.py."""

  input_kind = 'image'
  best_metric = 'cider'
  best_mode = 'max'

  def __init__(self, config: Any):
    super().__init__(config)
    d = self.data
    self.source = sources.select(d, SOURCES, 'captions')
    self.cache_images = bool(d.get('cache_images', True))
    needed = self.source.keys if self.source.name == 'captions' else ()
    for key in ('image_size', 'vocab_size', 'target_len', *needed):
      if key not in d:
        raise UserError(f'config.data.{key} is missing (task captioning)')
    size = tuple(d.image_size)
    if len(size) != 2 or min(size) < 1:
      raise UserError(f'data.image_size must be (height, width), got {size}')
    self.image_size = (int(size[0]), int(size[1]))
    self.channels = int(d.get('channels', 3))
    if self.channels not in (1, 3):
      raise UserError(f'data.channels must be 1 or 3, got {self.channels}')
    self.tgt_vocab_size = int(d.vocab_size)
    if self.tgt_vocab_size <= NUM_SPECIAL:
      raise UserError(f'data.vocab_size must be > {NUM_SPECIAL}, got {self.tgt_vocab_size}')
    self.min_count = int(d.get('min_count', 5))
    self.target_len = int(d.target_len)
    self.bad_pairs = d.get('bad_pairs', 'error')
    corpus_lib.check_policy(self.bad_pairs)
    self.vocab: SymbolVocab | None = None
    self._lines: dict[str, list[tuple[str, list[str]]]] = {}
    self._images: dict[str, np.ndarray] = {}

  # --- vocabulary -----------------------------------------------------------------------------
  def setup(self, workdir: str) -> None:
    """Counts the training captions' words on first use into DIR/vocab.txt, else loads it."""
    words, counts = vocab_lib.word_list(
        os.path.join(workdir, 'vocab.txt'),
        lambda: collections.Counter(w for _, refs in self._read_split('train') for c in refs
                                    for w in c),
        self.tgt_vocab_size, self.min_count)
    if counts is not None:
      base.log(f'vocabulary: {len(words):,} words seen >= {self.min_count} times of '
               f'{len(counts):,} in the training captions (table of {self.tgt_vocab_size:,})')
    self.vocab = SymbolVocab(words)

  def _encode(self, caption: list[str]) -> np.ndarray:
    if self.vocab is None:
      raise RuntimeError('setup(workdir) builds the vocabulary first')
    return self.vocab.encode(caption)[0]

  # --- reading ---------------------------------------------------------------------------------
  def captions_path(self, split: str) -> str:
    """The split's captions file: data.train_captions etc., or a builder's TSV."""
    return self.source.read('path', self.data, split)

  def _read_split(self, split: str) -> list[tuple[str, list[str]]]:
    """(image path, tokenized captions) per image of the split, in first-seen order."""
    if split in self._lines:
      return self._lines[split]
    if self.source.name == 'tfds':
      self._lines[split] = self._read_tfds(split)
      return self._lines[split]
    path = self.captions_path(split)
    bad = corpus_lib.BadPairs(self.bad_pairs)
    refs: dict[str, list[list[str]]] = collections.defaultdict(list)
    for image, caption, where in read_captions(path, str(self.data.get('image_root', '')),
                                               bad):
      words = caption_metrics.tokenize(caption)
      if not words:
        bad(where, 'the caption is empty')
        continue
      if image not in self._images:
        try:
          self._images[image] = self._image_from_file(image)
        except Exception as e:  # pylint: disable=broad-except
          bad(where, f'cannot read {image}: {type(e).__name__}: {e}')
          continue
      refs[image].append(words)
    if not refs:
      raise UserError(f'{path}: no usable examples')
    note = f' ({bad.count} bad line(s) skipped)' if bad.count else ''
    base.log(f'{split}: {len(refs):,} images, {sum(map(len, refs.values())):,} captions from '
             f'{path}{note}')
    self._lines[split] = list(refs.items())
    return self._lines[split]

  def _image_from_file(self, path: str):
    if self.cache_images:
      return load_image(path, self.image_size, self.channels)
    from PIL import Image  # pylint: disable=g-import-not-at-top
    with Image.open(path) as im:   # reads the header only: a broken file is named now
      im.verify()
    return LazyImage(functools.partial(load_image, path, self.image_size, self.channels),
                     (*self.image_size, self.channels))

  def _read_tfds(self, split: str) -> list[tuple[str, list[str]]]:
    """(key, tokenized captions) per image of a coco_captions-style TFDS split."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    name = str(self.data.tfds_name)

    def check(have):
      if 'image' not in have or 'captions' not in have:
        raise UserError(f'{name} has features {have}; the captioning task '
                        "reads coco_captions' 'image' and 'captions' (with 'text')")

    source = self.source.read('tfds', self.data, split, default_splits=TFDS_SPLITS, check=check,
                              decoders={'image': tfds.decode.SkipDecoding()})
    items, skipped, shape = [], 0, (*self.image_size, self.channels)
    for i, ex in source.records(1024):
      caps = [caption_metrics.tokenize(corpus_lib.text_of(t)) for t in ex['captions']['text']]
      caps = [c for c in caps if c]
      if not caps:          # nothing to learn or score (a user cannot fix a TFDS dataset)
        skipped += 1
        continue
      image_key = f'tfds:{name}/{source.split}/{i}'
      self._images[image_key] = (
          load_image(io.BytesIO(ex['image']), self.image_size, self.channels)
          if self.cache_images else
          LazyImage(functools.partial(_tfds_image, source, i, self.image_size,
                                      self.channels), shape))
      items.append((image_key, caps))
    if not items:
      raise UserError(f'tfds:{name}/{source.split}: no images with captions')
    note = f' ({skipped} without captions skipped)' if skipped else ''
    base.log(f'{split}: {len(items):,} images, {sum(len(c) for _, c in items):,} captions from '
             f'{source.origin}{note}')
    return items

  def _examples(self, items) -> base.Examples:
    """One example per (image, caption) pair."""
    sources, targets = [], []
    for image, captions in items:
      for c in captions:
        sources.append(self._images[image])
        targets.append(self._encode(c))
    return sources, targets

  # --- the trainer's interface -------------------------------------------------------------------
  def dummy_batch(self, rows: int) -> dict[str, np.ndarray]:
    return {'inputs': np.zeros((rows, *self.image_size, self.channels), np.float32),
            'decoder_inputs': np.zeros((rows, 8), np.int32)}

  def train_data(self) -> base.Examples:
    for split in ('validation', 'test'):  # a bad evaluation file stops the run before step 0
      self._read_split(split)
    return self._examples(self._read_split('train'))

  def make_batcher(self, sources, targets, *, batch_size, seed, shuffle, process_index=0,
                   process_count=1):
    return features.FeatureBatcher(sources, targets, batch_size=batch_size,
                                   target_len=self.target_len, seed=seed, shuffle=shuffle,
                                   process_index=process_index, process_count=process_count)

  def _eval_items(self, split: str):
    return self.eval_subset(self._read_split(split))

  def eval_loss_data(self, split: str) -> base.Examples:
    return self._examples(self._eval_items(split))

  def eval_set(self, split: str) -> EvalSet:
    items = self._eval_items(split)
    return EvalSet(sources=[self._images[p] for p, _ in items], texts=[p for p, _ in items],
                   references=[[' '.join(c) for c in caps] for _, caps in items])

  def collate_sources(self, sources, rows):
    return features.collate_inputs(sources, rows)

  def decode_target(self, ids: Sequence[int]) -> str:
    return ' '.join(self.vocab.decode(ids))

  def score(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    return {**caption_metrics.bleu(hyps, refs), 'cider': caption_metrics.cider_d(hyps, refs)}

  def encode_source(self, line: str) -> tuple[np.ndarray, int]:
    """A --mode=predict line is an image's path."""
    path = line.strip()
    if not os.path.isfile(path):
      raise UserError(f'{path}: no such file')
    try:
      return load_image(path, self.image_size, self.channels), 0
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f'cannot read {path}: {type(e).__name__}: {e}') from None
