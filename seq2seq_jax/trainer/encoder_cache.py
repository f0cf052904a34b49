"""Training the decoder on cached encoder outputs: `config.cache_encoder_outputs=True`.

When `optimizer.freeze` keeps every parameter the encoder reads (the frontend, the encoder's
positions, blocks and final norm) and the encoder is deterministic in training (no dropout,
SpecAugment or VTLP there), its output for a training example is the same at every step.
It is then computed once, before step 1, for every training example (in the batches of the
training batcher's buckets), held in host memory, and each training step runs the decoder
alone on it: the train step's batch carries 'encoded' [B, S', D] and 'encoded_mask' [B, S']
instead of 'inputs' and 'inputs_mask'. Everything else is unchanged: the same batches in the
same order, the same checkpoints (the encoder's parameters are in them, untouched),
evaluation and decoding with the whole model.

What it costs: one encoder pass over the training set before step 1 (counted in
train_seconds) and room for the outputs, rows x S' x D x 4 bytes (Whisper base with its 30 s
window: 3 MB a line). They are kept in WORKDIR/encoder_cache/ (a local workdir, one process)
under a fingerprint of the model's settings, the encoder's parameters and every training
input: a resumed run (or a run given a copy of the folder) whose fingerprint matches reads
them from there (memory-mapped) instead of encoding again; any other is encoded anew.

The checks (UserError): the model must read 'encoded' (the Transformer family does); a
parameter the encoder reads that optimizer.freeze leaves trainable, and an encoder whose
training output differs from its evaluation output on the first batch, refuse the setting.
"""
import hashlib
import json
import os
import shutil
import time
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from seq2seq_jax.data import pipeline
from seq2seq_jax.errors import UserError
from seq2seq_jax.trainer import optim


def _used_inputs(closed_jaxpr, count: int) -> list[bool]:
  """Which of the first `count` inputs of a jaxpr its outputs depend on (a backward walk
  over its equations; an equation's inputs all count when any of its outputs is used)."""
  jaxpr = closed_jaxpr.jaxpr
  used = {id(v) for v in jaxpr.outvars if not hasattr(v, 'val')}
  for eqn in reversed(jaxpr.eqns):
    if any(id(v) in used for v in eqn.outvars):
      used.update(id(v) for v in eqn.invars if not hasattr(v, 'val'))
  return [id(v) in used for v in jaxpr.invars[:count]]


def encoder_parameters(model: Any, params: Any, batch: dict[str, Any]) -> list[str]:
  """The paths of the parameters `model.encode` reads (traced, nothing computed)."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  leaves = [x for _, x in flat]

  def encode(leaves, inputs, mask):
    p = jax.tree_util.tree_unflatten(treedef, leaves)
    return model.apply({'params': p}, inputs, inputs_mask=mask, train=False, method='encode')

  jaxpr = jax.make_jaxpr(encode)(leaves, batch['inputs'], batch.get('inputs_mask'))
  return [optim.param_path(path) for (path, _), u
          in zip(flat, _used_inputs(jaxpr, len(leaves))) if u]


class CachedEncoderBatcher:
  """A BucketBatcher's training batches with the encoder's outputs in place of the inputs."""

  def __init__(self, inner: pipeline.BucketBatcher, encoded: list[np.ndarray],
               masks: list[np.ndarray]):
    self.inner = inner
    self.encoded, self.masks = encoded, masks     # per bucket, in members order
    # where each example's row is: its bucket's members index
    self.position = {int(i): j for m in inner.members for j, i in enumerate(m)}

  def __getattr__(self, name):   # batches_per_epoch, num_dropped, batch_size, ...
    return getattr(self.inner, name)

  def _make(self, bucket: int, idx) -> dict[str, np.ndarray]:
    out = self.inner._make(bucket, idx)   # pylint: disable=protected-access
    rows = [self.position[int(i)] for i in self.inner._local(idx)]  # pylint: disable=protected-access
    del out['inputs']
    out.pop('inputs_mask', None)
    enc = self.encoded[bucket][rows]
    mask = self.masks[bucket][rows]
    out['encoded'] = np.pad(enc, ((0, self.inner.rows - len(rows)),) + ((0, 0),) * 2)
    out['encoded_mask'] = np.pad(mask, ((0, self.inner.rows - len(rows)), (0, 0)))
    return out

  def get_batch(self, step: int) -> dict[str, np.ndarray]:
    self.inner._check_step(step)   # pylint: disable=protected-access
    epoch, i = divmod(step, self.inner.batches_per_epoch)
    bucket, idx = self.inner._epoch_plan(epoch)[i]   # pylint: disable=protected-access
    return self._make(bucket, idx)

  def shape_examples(self) -> list[dict[str, np.ndarray]]:
    bs = self.inner.batch_size
    return [self._make(b, m[:bs]) for b, m in enumerate(self.inner.members) if len(m) >= bs]


def _encode_fn(run: Any):
  """jit: (params, global batch, rng, train) -> the encoder's (outputs, mask)."""
  return jax.jit(lambda p, b, rng, train: run.model.apply(
      {'params': p}, b['inputs'], inputs_mask=b.get('inputs_mask'), train=train,
      rngs={'dropout': rng}, method='encode'), static_argnums=3)


def check(run: Any, params: Any, first: dict[str, Any], encode) -> list[str]:
  """The refusals of the module docstring, on the first training batch `first` (global);
  returns the paths of the parameters the encoder reads."""
  name = run.config.model.get('name', '?')
  if not getattr(run.model, 'reads_encoded', False):
    raise UserError(f'cache_encoder_outputs: model {name!r} cannot train on cached encoder '
                    'outputs (the transformer family can)')
  reads = encoder_parameters(run.model, params, first)
  labels = optim.frozen_labels(params, optim.freeze_patterns(run.config.optimizer))
  flat = {optim.param_path(p): l for p, l in jax.tree_util.tree_leaves_with_path(labels)}
  trained = [p for p in reads if flat.get(p) != 'frozen']
  if trained:
    raise UserError(f'cache_encoder_outputs needs every parameter the encoder reads frozen; '
                    f'optimizer.freeze leaves {len(trained)} trainable, e.g. {trained[0]!r} '
                    "(Whisper: freeze=('^frontend/', '^encoder_'))")
  a, b = (np.asarray(_gather(run, encode, params, first, jax.random.key(1), train)[0])
          for train in (True, False))
  if not np.array_equal(a, b):
    raise UserError('cache_encoder_outputs: the encoder computes something else in training '
                    '(dropout, SpecAugment or VTLP in the encoder or its frontend): a cache '
                    'would leave that out; turn them off or train without the cache')
  return reads


def _gather(run, fn, *args):
  from seq2seq_jax.trainer import train as train_lib  # pylint: disable=g-import-not-at-top
  out = train_lib.traced(run, fn, *args)
  return multihost_utils.process_allgather(out, tiled=True)


def fingerprint(run: Any, params: Any, batcher: Any, reads: list[str]) -> str:
  """What the cached outputs depend on: the model's settings, the parameters the encoder
  reads and every training input, bucket by bucket."""
  h = hashlib.sha256(json.dumps(run.config.model.to_dict(), sort_keys=True,
                                default=str).encode())
  wanted = set(reads)
  for path, x in jax.tree_util.tree_leaves_with_path(params):
    if optim.param_path(path) in wanted:
      h.update(optim.param_path(path).encode())
      h.update(np.asarray(x).tobytes())
  for members in batcher.members:
    h.update(np.asarray(members, np.int64).tobytes())
    for i in members:
      h.update(np.ascontiguousarray(np.asarray(batcher.src[i])).tobytes())
  return h.hexdigest()


def _read(directory: str, key: str):
  try:
    with open(os.path.join(directory, 'meta.json')) as f:
      meta = json.load(f)
    if meta.get('fingerprint') != key:
      return None
    n = int(meta['buckets'])
    return ([np.load(os.path.join(directory, f'encoded_{b}.npy'), mmap_mode='r')
             for b in range(n)],
            [np.load(os.path.join(directory, f'mask_{b}.npy')) for b in range(n)])
  except (OSError, ValueError, KeyError):
    return None


def _write(directory: str, key: str, encoded, masks) -> None:
  """The arrays first, meta.json last, in a new folder renamed into place."""
  tmp = directory + '.tmp'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  for b, (e, m) in enumerate(zip(encoded, masks)):
    np.save(os.path.join(tmp, f'encoded_{b}.npy'), e)
    np.save(os.path.join(tmp, f'mask_{b}.npy'), m)
  with open(os.path.join(tmp, 'meta.json'), 'w') as f:
    json.dump({'fingerprint': key, 'buckets': len(encoded)}, f)
  shutil.rmtree(directory, ignore_errors=True)
  os.replace(tmp, directory)


def build(run: Any, params: Any, batcher: Any, feed: Any, log=print,
          directory: str | None = None) -> CachedEncoderBatcher:
  """Checks the setting and runs the encoder over every training example kept in a bucket
  (or reads the outputs from `directory` when its fingerprint matches)."""
  if not isinstance(batcher, pipeline.BucketBatcher):
    raise UserError(f'cache_encoder_outputs: task {run.config.task!r} batches its training '
                    'data without buckets; the cache needs bucketed batches')
  bs = batcher.batch_size
  firsts = [(b, m[:bs]) for b, m in enumerate(batcher.members) if len(m)]
  first = feed.to_global(batcher._make(*firsts[0]))  # pylint: disable=protected-access
  encode = _encode_fn(run)
  reads = check(run, params, first, encode)
  if jax.process_count() > 1:
    directory = None
  key = ''
  if directory:
    t0 = time.perf_counter()
    key = fingerprint(run, params, batcher, reads)
    found = _read(directory, key)
    if found is not None:
      log(f'encoder cache: read from {directory} (its fingerprint matches; '
          f'{time.perf_counter() - t0:.0f} s); the train step runs the decoder only')
      return CachedEncoderBatcher(batcher, *found)
  total = sum(len(m) for m in batcher.members)
  encoded, masks, done, t0 = [], [], 0, time.perf_counter()
  for b, members in enumerate(batcher.members):
    enc_b, mask_b = None, None
    for start in range(0, len(members), bs):
      chunk = members[start:start + bs]
      x, m = _gather(run, encode, params, feed.to_global(batcher._make(b, chunk)),  # pylint: disable=protected-access
                     jax.random.key(0), False)
      x, m = np.asarray(x)[:len(chunk)], np.asarray(m)[:len(chunk)]
      if enc_b is None:
        enc_b = np.empty((len(members),) + x.shape[1:], x.dtype)
        mask_b = np.empty((len(members),) + m.shape[1:], bool)
      enc_b[start:start + len(chunk)], mask_b[start:start + len(chunk)] = x, m
      done += len(chunk)
      if done == len(chunk) or start + bs >= len(members):
        rate = done / max(time.perf_counter() - t0, 1e-9)
        log(f'encoder cache: {done:,}/{total:,} examples, {rate:.1f}/s, '
            f'ETA {(total - done) / rate / 60:.1f} min')
    encoded.append(enc_b if enc_b is not None else np.zeros((0, 1, 1), np.float32))
    masks.append(mask_b if mask_b is not None else np.zeros((0, 1), bool))
  size = sum(e.nbytes for e in encoded) / 2**30
  log(f'encoder cache: {total:,} training examples encoded in '
      f'{time.perf_counter() - t0:.0f} s ({size:.2f} GiB in host memory); the train step runs '
      'the decoder only')
  if directory:
    try:
      _write(directory, key, encoded, masks)
      log(f'encoder cache: kept in {directory} for a resumed run')
    except OSError as e:   # the run goes on; a resume encodes again
      log(f'encoder cache: not kept ({e})')
  return CachedEncoderBatcher(batcher, encoded, masks)
