"""What the decoder looks at: attention weights over the encoder's positions, drawn over images.

`--mode=predict --attention_maps=DIR` (image tasks) writes, per input image, a PNG with the
image and, for each output token, the image lit where the decoder attended when it produced
that token (the figure of Xu et al. 2015, Fig. 2-3). The weights come from one teacher-forced
pass over the decoded output ([BOS] + output): the models' teacher-forced and cached decoding
paths compute the same function (tests/test_rnn.py, test_transformer.py,
test_show_attend_tell.py), so these are the weights the search saw on the chosen path.

Which weights: every model sows 'intermediates'/'attention_weights'; the RNN's attention per
step, Show-Attend-Tell's alpha_t, the Transformer's cross-attention of every decoder layer
per head, of which the last layer's, averaged over heads, is drawn.
"""
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np

from seq2seq_jax.data.vocab import BOS_ID, EOS_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import frontends


def pick_weights(intermediates: Any) -> np.ndarray:
  """The sown 'attention_weights' -> [B, T, S]: the last one sown (the top decoder layer's),
  averaged over heads if it has them ([B, H, T, S])."""
  found = []

  def visit(tree):
    if isinstance(tree, dict):
      for k, v in tree.items():
        if k == 'attention_weights':
          found.extend(v if isinstance(v, (tuple, list)) else [v])
        else:
          visit(v)
  visit(jax.device_get(intermediates))
  if not found:
    raise UserError('this model sows no attention weights (a model without attention?)')
  w = np.asarray(found[-1], np.float32)
  return w.mean(axis=1) if w.ndim == 4 else w


def decoder_inputs_for(outputs: np.ndarray) -> np.ndarray:
  """Decoded ids [B, L] (EOS-terminated, 0-padded) -> teacher-forcing inputs [B, L]:
  BOS, then the output shifted right, padding after EOS."""
  out = np.asarray(outputs, np.int32)
  dec = np.zeros_like(out)
  dec[:, 0] = BOS_ID
  dec[:, 1:] = out[:, :-1]
  ended = np.cumsum(out == EOS_ID, axis=1) > 0     # at and after EOS
  dec[:, 1:][ended[:, :-1]] = 0
  return dec


def _panel(image: np.ndarray, weights: np.ndarray | None, grid: tuple[int, int],
           scale: int):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pixels = np.clip((np.asarray(image, np.float32) + 1.0) * 127.5, 0, 255).astype(np.uint8)
  if pixels.shape[-1] == 1:
    pixels = np.repeat(pixels, 3, axis=-1)
  h, w = pixels.shape[:2]
  img = Image.fromarray(pixels).resize((w * scale, h * scale), Image.Resampling.NEAREST)
  if weights is None:
    return img
  amap = weights.reshape(grid).astype(np.float32)
  amap = amap / max(float(amap.max()), 1e-9)
  # Smooth upsampling of the grid to the image (the paper's figures upsample and blur).
  lit = Image.fromarray((amap * 255).astype(np.uint8)).resize(img.size,
                                                               Image.Resampling.BICUBIC)
  lit = np.asarray(lit, np.float32)[..., None] / 255.0
  base = np.asarray(img, np.float32)
  out = base * (0.2 + 0.8 * lit) + 80.0 * lit          # dark where unattended, bright where seen
  return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def draw(image: np.ndarray, tokens: Sequence[str], weights: np.ndarray,
         grid: tuple[int, int], path: str) -> None:
  """Writes the figure: the image, then one panel per output token with its label.

  Args:
    image: float [H, W, C] in [-1, 1] (what the model read).
    tokens: the output tokens (EOS excluded).
    weights: [T >= len(tokens), gh * gw] attention over the annotation grid.
    grid: (gh, gw), the frontend's grid of annotation vectors, row-major.
    path: the PNG to write.
  """
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  h, w = image.shape[:2]
  scale = max(1, -(-96 // h))                    # panels at least 96 pixels high
  panels = [(_panel(image, None, grid, scale), '(input)')]
  panels += [(_panel(image, weights[t], grid, scale), tok) for t, tok in enumerate(tokens)]
  pw, ph = panels[0][0].size
  label_h = 14
  # Wide images (text lines) stack vertically; others wrap in rows of up to 5.
  cols = 1 if pw >= 2 * ph else min(5, len(panels))
  rows = -(-len(panels) // cols)
  sheet = Image.new('RGB', (cols * (pw + 4), rows * (ph + label_h + 4)), 'white')
  pen = ImageDraw.Draw(sheet)
  for i, (panel, label) in enumerate(panels):
    x, y = (i % cols) * (pw + 4), (i // cols) * (ph + label_h + 4)
    sheet.paste(panel, (x, y))
    pen.text((x + 2, y + ph + 1), label, fill='black')
  tmp = path + '.tmp'
  sheet.save(tmp, format='PNG')
  os.replace(tmp, path)


def output_path(directory: str, index: int, source_line: str) -> str:
  stem = os.path.splitext(os.path.basename(source_line.strip()))[0] or 'input'
  return os.path.join(directory, f'{index:05d}_{stem}.png')


def writer(run: Any, directory: str, traced: Callable):
  """draw_items(params, items): for (line index, image path line, image, decoded ids) items, draws
  each image's attention maps (seq2seq_jax/analysis/attention_maps.py) into `directory`, never over an
  existing file. `traced(run, fn, *args)` runs a jitted function in the run's mesh (trainer/train.py)."""
  if run.task.input_kind != 'image':
    raise UserError(f'--attention_maps draws over images; task {run.config.task!r} reads '
                    f'{run.task.input_kind}')
  m = run.model
  os.makedirs(directory, exist_ok=True)
  model, rows = run.model, run.task.eval_batch_size

  @jax.jit
  def forward(params, batch):
    _, sown = model.apply({'params': params}, batch, train=False, mutable=['intermediates'])
    return sown['intermediates']

  def draw_items(params, items):
    paths = [output_path(directory, i, line) for i, line, _, _ in items]
    for p in paths:
      if os.path.exists(p):
        raise UserError(f'{p} exists: choose another --attention_maps directory')
    images = np.stack([x for _, _, x, _ in items])
    grid = frontends.grid_shape(m.frontend, *images.shape[1:3])
    outputs = np.stack([o for _, _, _, o in items])
    pad = rows - len(items)        # one batch shape (rows divide over the batch shards)
    batch = {'inputs': np.concatenate([images, np.zeros((pad, *images.shape[1:]),
                                                        images.dtype)]),
             'decoder_inputs': decoder_inputs_for(
                 np.concatenate([outputs, np.zeros((pad, outputs.shape[1]), outputs.dtype)]))}
    weights = pick_weights(traced(run, forward, params, batch))
    if weights.shape[-1] != grid[0] * grid[1]:
      raise UserError(f'the model attends over {weights.shape[-1]} positions, not the '
                      f'{grid[0]} x {grid[1]} grid of model.frontend')
    for (_, _, image, ids), w, path in zip(items, weights, paths):
      draw(image, run.task.target_tokens(ids), w, grid, path)

  return draw_items
