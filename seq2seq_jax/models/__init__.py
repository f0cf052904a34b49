"""Model registry: `model.name` names a module `seq2seq_jax.models.<name>` exporting `Model`.

Every `Model` is a Flax Linen module with this contract (shared by the trainer, decoding
and sharding code, so a new architecture only has to honour it). `seq2seq_jax/models/base.py`
states it as a Protocol (`base.Model`: the methods and attributes the trainer reads, among
them `frontend` and `ctc_weight`) with `base.ModelDefaults` for a model without a CTC head:

  Model(src_vocab_size=int, tgt_vocab_size=int, **config.model minus `name`)

  __call__(batch, *, train) -> logits float32 [B, T, tgt_vocab]
      batch['inputs'] is what `model.frontend` reads (seq2seq_jax/models/frontends/):
      int32 ids [B, S] (0 = padding; frontend 'tokens', the default), float features
      [B, T, F] with batch['inputs_mask'] [B, T] (true = real frame; 'audio_conv') or float
      images [B, H, W, C] ('patches', 'cnn'). batch['decoder_inputs'] int32 [B, T] (BOS
      first, 0 = padding); optional packing keys (token inputs only) 'inputs_segmentation',
      'inputs_position', 'targets_segmentation', 'targets_position'. Dropout uses the
      'dropout' RNG stream when train=True. Optional sows: 'losses' (scalars summed over
      the batch's rows; the train step adds them to the loss, divided by the target tokens)
      and 'intermediates'/'attention_weights' ([B, T, S'] over the encoder's positions, or
      [B, H, T, S'] per head: seq2seq_jax/analysis/attention_maps.py draws them).
  init_cache(inputs, max_len, beam_size=1, inputs_mask=None) -> cache
      Runs the frontend and the encoder and returns a pytree whose array leaves all have
      leading dim B, for a search with beam_size hypotheses per item (decoding.beam_search
      tiles it to B * beam_size rows, except decoding.PerItem entries, which the model shares
      among the beams itself; a model without such entries may ignore beam_size).
  decode_step(last_tokens, cache) -> (logits float32 [N, tgt_vocab], new_cache)
      One incremental decoder step; last_tokens int32 [N] (BOS at the first step), N = B
      times the beam size, item-major.

A setting that is a group (a dict or ConfigDict, e.g. `frontend=dict(name='cnn', ...)`: a
registered part with its own settings, models/registry.py) reaches the model frozen
(registry.freeze), so every module field is hashable.

Parameters carry logical axis names (nn.with_logical_partitioning) from the vocabulary
'vocab', 'embed', 'mlp', 'heads', 'kv', 'hidden', 'gates'; activations are constrained with
'batch', 'length', 'embed', 'heads', 'kv', 'mlp', 'vocab'. Models know nothing of meshes.
"""
import dataclasses
import importlib
import json
from typing import Any, Mapping

import flax.linen as nn

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import registry


def build_model(model_config: Mapping[str, Any], src_vocab_size: int,
                tgt_vocab_size: int) -> nn.Module:
  """Builds the Flax module named by `model_config['name']`.

  Args:
    model_config: the experiment's `config.model` (a ConfigDict or dict).
    src_vocab_size: source vocabulary size (from the task).
    tgt_vocab_size: target vocabulary size (from the task).

  Returns:
    An unbound Flax module.

  Raises:
    UserError: unknown model name or a config key the model does not have.
  """
  cfg = dict(model_config)
  name = cfg.pop('name', None)
  if not name or not isinstance(name, str) or not name.isidentifier():
    raise UserError(f'model.name must be a module name, got {name!r}')
  try:
    module = importlib.import_module(f'seq2seq_jax.models.{name}')
  except ModuleNotFoundError as e:
    if e.name == f'seq2seq_jax.models.{name}':
      raise UserError(f'unknown model.name {name!r} (no seq2seq_jax/models/{name}.py)') from None
    raise
  cls = module.Model
  fields = {f.name for f in dataclasses.fields(cls)} - {'parent', 'name'}
  unknown = sorted(set(cfg) - fields)
  if unknown:
    from seq2seq_jax import config_migration  # pylint: disable=g-import-not-at-top
    moved = sorted(set(unknown) & set(config_migration.FRONTEND_FIELDS))
    hint = (f' ({", ".join(moved)}: now settings of model.frontend, e.g. '
            "frontend=dict(name='cnn', channels=(32, 64)))" if moved else '')
    raise UserError(f'model {name!r} has no setting(s) {", ".join(unknown)}{hint}')
  # ConfigDict values -> plain Python: lists as tuples, groups (a part's settings) frozen.
  kwargs = {k: (tuple(v) if isinstance(v, list) else
                registry.freeze(v) if isinstance(v, Mapping) or hasattr(v, 'to_dict') else v)
            for k, v in cfg.items()}
  return cls(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, **kwargs)


def model_defaults(name: str) -> dict[str, Any]:
  """The settings of model `name` that have defaults, as config.json holds them (tuples as
  lists); {} for an unknown name."""
  try:
    cls = importlib.import_module(f'seq2seq_jax.models.{name}').Model
  except (ModuleNotFoundError, AttributeError, ValueError, TypeError):
    return {}
  out = {}
  for f in dataclasses.fields(cls):
    if f.name in ('parent', 'name') or f.default is dataclasses.MISSING:
      continue
    value = (registry.spec_dict(f.default) if registry.is_frozen(f.default) else f.default)
    try:
      out[f.name] = json.loads(json.dumps(value))
    except TypeError:  # not a JSON value: config.json cannot hold it either
      continue
  return out
