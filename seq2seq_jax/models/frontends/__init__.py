"""Encoder frontends: every input becomes a sequence of vectors with a mask.

A frontend is a registered part (models/registry.py): the model's one field `frontend` holds
its group of settings, a name and only that frontend's own fields, e.g.

  c.model.frontend = dict(name='audio_conv', channels=32, num_mels=80)

(a name alone, 'cnn', means its defaults). Both the Transformer and the RNN run their encoder
on its output, so the encoder-decoder, the steps, decoding and sharding are the same code for
text, pixels and audio. Every frontend is a Flax module called as

  frontend(inputs, inputs_mask=None, train=False) -> (x [B, S', D] compute dtype, mask [B, S'])

and says which inputs it reads in its class attribute `reads` (the trainer checks it against
the task's `input_kind`): 'tokens' int32 [B, S]; 'image' float [B, H, W, C]; 'features'
float [B, T, F] with inputs_mask; 'audio' float waveforms [B, N] with inputs_mask.

  'tokens'      (tokens.py) ids (0 = padding) -> the embedding table's rows; mask ids > 0.
  'patches'     (patches.py) images -> ViT's non-overlapping P x P patches, projected to D,
                plus a learned position per patch; settings: patch_size.
  'cnn'         (cnn.py) images -> a small conv net's last feature grid, by cell or by
                column, projected to D (Show, Attend and Tell; CRNN); channels, columns.
  'log_mel'     (audio.py) waveforms -> log-mel frames projected to D; num_mels,
                spec_augment, vtlp, speed.
  'audio_conv'  (audio.py) features or waveforms -> fairseq's conv subsampler (4x fewer
                frames); channels, num_mels, spec_augment, vtlp, speed.

What the model supplies, never the config (SUPPLIED): `features` (the model width D), `dtype`
(compute dtype; parameters are float32), `init_fn` (overrides every initialiser, e.g. the
RNN's uniform init_scale) and, for 'tokens', `num_embeddings` (the source vocabulary). The
token frontend's module is named 'src_embed', every other 'frontend' (checkpoint paths).

Padding never changes results (each frontend's docstring says how); nothing normalises over
the batch. Parameters carry logical axis names ('embed' for the model width, None for
spatial/frequency/channel axes that no rule splits). Adding a frontend: docs/extending.md.
"""
import dataclasses
from typing import Any, Callable

import flax.linen as nn

from seq2seq_jax.errors import UserError
from seq2seq_jax.models.registry import Registry, spec_dict

# A frontend named x that no module below registers is looked for in frontends/x.py.
FRONTENDS = Registry('model.frontend', package=__name__)
SUPPLIED = ('features', 'dtype', 'init_fn', 'num_embeddings')

# pylint: disable=g-import-not-at-top,wrong-import-position
from seq2seq_jax.models.frontends import tokens
from seq2seq_jax.models.frontends import patches
from seq2seq_jax.models.frontends import cnn
from seq2seq_jax.models.frontends import audio
from seq2seq_jax.models.frontends.audio import LIBRISPEECH_BASIC, AudioConv, LogMel
from seq2seq_jax.models.frontends.cnn import Cnn
from seq2seq_jax.models.frontends.conv import Conv3x3, max_pool_2x2
from seq2seq_jax.models.frontends.patches import Patches
from seq2seq_jax.models.frontends.tokens import Tokens
# pylint: enable=g-import-not-at-top,wrong-import-position


# Settings that act in training only (augmentation): they change no parameter and nothing
# outside training, so a run evaluated, resumed or loaded from a pretrained checkpoint with
# other values is the same model (trainer/workdir.py, pretrained/checkpoints.py).
TRAINING_ONLY = ('spec_augment', 'vtlp', 'speed')

def name_of(spec: Any) -> str:
  """The frontend a spec (a name, a dict, a ConfigDict or a frozen spec) chooses."""
  return spec_dict(spec).get('name')


def class_of(spec: Any) -> type:
  """The registered class of the frontend a spec chooses (UserError for an unknown one)."""
  return FRONTENDS.get(name_of(spec))


def reads(spec: Any) -> tuple[str, ...]:
  """The input kinds the chosen frontend reads."""
  return tuple(class_of(spec).reads)


def resolved(spec: Any) -> dict[str, Any]:
  """The spec with every setting at its value ('name' first), defaults filled in."""
  return FRONTENDS.settings_of(spec, supplied=SUPPLIED)


def build(spec: Any, *, features: int, dtype: Any, init_fn: Callable | None = None,
          vocab_size: int = 0, module_name: str = 'frontend') -> nn.Module:
  """The frontend `spec` chooses, producing `features`-wide vectors.

  Args:
    spec: the model's `frontend` field: a name, or a group of settings with 'name'.
    features: the model width D.
    dtype: compute dtype (parameters are float32).
    init_fn: overrides every initialiser (e.g. the RNN's uniform init_scale).
    vocab_size: the source vocabulary (given to frontends with `num_embeddings`: 'tokens').
    module_name: the submodule name ('tokens' keeps the models' historical 'src_embed').

  Returns:
    An unbound module.

  Raises:
    UserError: an unknown frontend, a setting it does not have, or a bad value.
  """
  cls = class_of(spec)
  given = dict(features=features, dtype=dtype, init_fn=init_fn, num_embeddings=vocab_size)
  fields = {f.name for f in dataclasses.fields(cls)}
  module = FRONTENDS.build(spec, supplied=SUPPLIED, name=module_name,
                           **{k: v for k, v in given.items() if k in fields})
  if hasattr(module, 'check'):
    module.check()
  return module


def grid_shape(spec: Any, height: int, width: int) -> tuple[int, int]:
  """(rows, columns) of the annotation grid an image frontend gives for height x width
  images, in the order of its output sequence (row-major)."""
  if not hasattr(class_of(spec), 'grid'):
    raise UserError(f"attention maps are drawn over images: model.frontend must be 'cnn' or "
                    f"'patches', got {name_of(spec)!r}")
  return FRONTENDS.build(spec, supplied=SUPPLIED, features=1).grid(height, width)
