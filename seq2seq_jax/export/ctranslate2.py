"""Export for serving: a Transformer checkpoint as a CTranslate2 model directory.

  python launch.py --mode=export --workdir=DIR --export_dir=OUT   # DIR's best checkpoint

OUT then holds what `ctranslate2.Translator(OUT)` loads, and the SentencePiece models:

  model.bin                 CTranslate2's TransformerSpec (revision 7), float32, written by
                            pretrained/ctranslate2.py's `write` (no ctranslate2 import)
  config.json               its TransformerConfig: tokens, add_source_eos, layer_norm_epsilon
  shared_vocabulary.json    the pieces by id (or source_vocabulary.json + target_vocabulary.json)
  source.model, target.model  the SentencePiece models of the two sides (one model: two copies)
  export.json               where it came from: workdir, checkpoint, the run's decode settings

How our Transformer maps onto the spec (transformer_spec.py of ctranslate2 4.x):
  - ids: the vocabulary lists the SentencePiece pieces in id order, so our PAD / BOS / EOS /
    UNK (0, 1, 2, 3) are CTranslate2's `<blank>` (SentencePiece's `<pad>`, renamed as
    CTranslate2's fairseq converter does), `<s>` (the decoder start token), `</s>` and
    `<unk>`. Rows past the SentencePiece model (a table larger than its pieces) are
    `<unused_N>`. Our sources end in EOS: `add_source_eos`.
  - our searches never emit PAD or BOS (decoding/search.py); the output projection gets a
    bias of -1e4 on those two rows (plus a learned `logits_bias`, if any) so CTranslate2 never
    emits them either, with no option at serving time.
  - fused projections: our QKV kernel [E, 3, H, D] is CTranslate2's `linear_0` [3 * H * D, E]
    (q, k, v stacked, heads contiguous); cross-attention q / kv / out are `linear_0/1/2`.
  - positions: both sides' tables are written out (`position_encodings/encodings`), computed
    by the model's own registered encoding (blocks.POSITIONS) or its learned table, so the
    layout (sines then cosines, timescales) is ours by construction; positions start at 0 on
    both sides, the decoder's start token at 0.
  - pre- or post-LN, final LayerNorms with pre-LN, `scale_embeddings` (x sqrt(d)), the MLP
    activation (relu / gelu (exact) / swish), BART's `embed_norm` (`layernorm_embedding`),
    shared embeddings and the tied output (aliases of one table).

Refused with a one-line UserError: what the spec cannot hold (an RNN or Show-Attend-Tell,
a non-token frontend, copying, a CTC head, an attention width other than emb_dim, a
normalisation other than LayerNorm), a task without SentencePiece models (only translation
has them as source and target pieces), and an existing non-empty OUT.
"""
import json
import os
import shutil
from typing import Any

import numpy as np

from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.models.registry import spec_dict
from seq2seq_jax.pretrained import ctranslate2 as ct2_format

SPEC, REVISION = 'TransformerSpec', 7
ACTIVATIONS = {'relu': 0, 'swish': 2, 'gelu': 3}   # common_spec.Activation
MASK_BIAS = -1e4        # finite in float16 too; exp(-1e4) is 0
MIN_POSITIONS = 1024    # sinusoids: rows written (CTranslate2's default max_input_length)


# --- what can be exported --------------------------------------------------------------
def check_model(model: Any) -> None:
  """UserError (one line) for a model CTranslate2's TransformerSpec cannot represent."""
  from seq2seq_jax.models import frontends  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.models.transformer import Model  # pylint: disable=g-import-not-at-top
  if not isinstance(model, Model):
    raise UserError(f'--mode=export writes Transformers; {type(model).__module__} has no '
                    "CTranslate2 equivalent here (model.name='transformer' only)")
  why = []
  if frontends.name_of(model.frontend) != 'tokens':
    why.append(f'model.frontend {frontends.name_of(model.frontend)!r} (text only)')
  if model.copy:
    why.append('model.copy (copying is not in the spec)')
  if model.ctc_weight:
    why.append('model.ctc_weight (no CTC head in the spec)')
  if model.qkv_dim not in (0, model.emb_dim):
    why.append(f'model.qkv_dim={model.qkv_dim} != emb_dim')
  mlp = spec_dict(model.mlp)['name']
  if mlp not in ACTIVATIONS:
    why.append(f'model.mlp {mlp!r}')
  for key in ('norm', 'embed_norm'):
    if getattr(model, key) and spec_dict(getattr(model, key))['name'] != 'layer_norm':
      why.append(f'model.{key} {spec_dict(getattr(model, key))["name"]!r}')
  if model.embed_norm and _epsilon(model.embed_norm) != _epsilon(model.norm):
    why.append('model.embed_norm with another epsilon than model.norm (one in the spec)')
  if why:
    raise UserError('CTranslate2 cannot represent this model: ' + '; '.join(why))


def _epsilon(norm: Any) -> float:
  from seq2seq_jax.models.transformer.blocks import NORMS  # pylint: disable=g-import-not-at-top
  return float(NORMS.build(norm).epsilon)


# --- parameters -> the spec's variables -------------------------------------------------
def _linear(prefix: str, kernel: np.ndarray, bias: np.ndarray, num_in_axes: int = 1
            ) -> dict[str, np.ndarray]:
  """Our kernel [*in, *out] (+ bias [*out]) -> CTranslate2's weight [out, in] and bias."""
  k = np.asarray(kernel, np.float32)
  n_in = int(np.prod(k.shape[:num_in_axes]))
  w = k.reshape(n_in, -1).T
  return {prefix + '/weight': np.ascontiguousarray(w),
          prefix + '/bias': np.asarray(bias, np.float32).reshape(-1)}


def _norm(prefix: str, p: dict[str, Any]) -> dict[str, np.ndarray]:
  return {prefix + '/gamma': np.asarray(p['scale'], np.float32),
          prefix + '/beta': np.asarray(p['bias'], np.float32)}


def _ffn(prefix: str, p: dict[str, Any], ln: dict[str, Any]) -> dict[str, np.ndarray]:
  return {**_linear(prefix + '/linear_0', p['wi']['kernel'], p['wi']['bias']),
          **_linear(prefix + '/linear_1', p['wo']['kernel'], p['wo']['bias']),
          **_norm(prefix + '/layer_norm', ln)}


def position_table(model: Any, side: str, params: dict[str, Any], rows: int) -> np.ndarray:
  """The encodings the model adds on `side` ('src' or 'tgt'): its learned table, or `rows`
  positions of its registered fixed encoding, computed by the model's own function."""
  spec = model.positions if side == 'src' else (model.target_positions or model.positions)
  if spec_dict(spec)['name'] == 'learned':
    return np.asarray(params[f'{side}_pos'], np.float32)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.models.transformer.blocks import POSITIONS  # pylint: disable=g-import-not-at-top
  return np.asarray(POSITIONS.build(spec)(jnp.arange(rows), model.emb_dim), np.float32)


def transformer_variables(model: Any, params: dict[str, Any], positions: int = MIN_POSITIONS
                          ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """Our Transformer's parameters as CTranslate2 TransformerSpec variables.

  Args:
    model: the (unbound) transformer Model the parameters belong to (check_model first).
    params: its parameter tree (numpy or jax arrays, unboxed).
    positions: rows of a fixed encoding's table (learned tables are written as they are).

  Returns:
    ({name: array}, {alias: target}): the embeddings a shared / tied model holds once are
    aliases of the alphabetically first name, as CTranslate2's own writer makes them.
  """
  check_model(model)
  v: dict[str, np.ndarray] = {}
  i8, i16 = np.int8, np.int16
  for side in ('encoder', 'decoder'):
    v[f'{side}/num_heads'] = i16(model.num_heads)
    v[f'{side}/pre_norm'] = i8(model.pre_norm)
    v[f'{side}/activation'] = i8(ACTIVATIONS[spec_dict(model.mlp)['name']])
    v[f'{side}/scale_embeddings'] = i8(model.scale_embeddings)
  v['encoder/embeddings_merge'] = i8(0)
  v['encoder/multi_query_attention'] = i8(0)
  v.update({'decoder/alignment_heads': i16(1), 'decoder/alignment_layer': i16(-1),
            'decoder/alibi': i8(0), 'decoder/alibi_use_positive_positions': i8(0),
            'decoder/scale_alibi': i8(0), 'decoder/start_from_zero_embedding': i8(0)})
  src = np.asarray(params['src_embed']['embedding'], np.float32)
  tgt = src if model.share_embeddings else np.asarray(params['tgt_embed']['embedding'],
                                                      np.float32)
  v['encoder/embeddings_0/weight'] = src
  v['decoder/embeddings/weight'] = tgt
  v['encoder/position_encodings/encodings'] = position_table(model, 'src', params, positions)
  v['decoder/position_encodings/encodings'] = position_table(model, 'tgt', params, positions)
  if model.pre_norm:
    v.update(_norm('encoder/layer_norm', params['encoder_norm']))
    v.update(_norm('decoder/layer_norm', params['decoder_norm']))
  if model.embed_norm:
    v.update(_norm('encoder/layernorm_embedding', params['src_embed_norm']))
    v.update(_norm('decoder/layernorm_embedding', params['tgt_embed_norm']))
  for i in range(model.num_encoder_layers):
    p, name = params[f'encoder_layers_{i}'], f'encoder/layer_{i}'
    att = name + '/self_attention'
    v.update(_linear(att + '/linear_0', p['attn']['qkv']['kernel'], p['attn']['qkv']['bias']))
    v.update(_linear(att + '/linear_1', p['attn']['out']['kernel'], p['attn']['out']['bias'], 2))
    v.update(_norm(att + '/layer_norm', p['ln_attn']))
    v.update(_ffn(name + '/ffn', p['mlp'], p['ln_mlp']))
  for i in range(model.num_decoder_layers):
    p, name = params[f'decoder_layers_{i}'], f'decoder/layer_{i}'
    att, cross = name + '/self_attention', name + '/attention'
    sa, ca = p['self_attn'], p['cross_attn']
    v.update(_linear(att + '/linear_0', sa['qkv']['kernel'], sa['qkv']['bias']))
    v.update(_linear(att + '/linear_1', sa['out']['kernel'], sa['out']['bias'], 2))
    v.update(_norm(att + '/layer_norm', p['ln_self']))
    v.update(_linear(cross + '/linear_0', ca['q']['kernel'], ca['q']['bias']))
    v.update(_linear(cross + '/linear_1', ca['kv']['kernel'], ca['kv']['bias']))
    v.update(_linear(cross + '/linear_2', ca['out']['kernel'], ca['out']['bias'], 2))
    v.update(_norm(cross + '/layer_norm', p['ln_cross']))
    v.update(_ffn(name + '/ffn', p['mlp'], p['ln_mlp']))
  bias = np.zeros(model.tgt_vocab_size, np.float32)
  if model.tie_output:
    v['decoder/projection/weight'] = tgt
  else:
    dense = params['logits_dense']
    v['decoder/projection/weight'] = np.ascontiguousarray(
        np.asarray(dense['kernel'], np.float32).T)
    bias += np.asarray(dense.get('bias', 0.0), np.float32)
  if 'output_bias' in params:     # logits_bias='learned'
    bias += np.asarray(params['output_bias']['bias'], np.float32)
  bias[[PAD_ID, BOS_ID]] = MASK_BIAS
  v['decoder/projection/bias'] = bias
  return _alias(v)


def _alias(v: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """Tables held once by the model (the same array object) -> one variable plus aliases."""
  tables = ('decoder/embeddings/weight', 'decoder/projection/weight',
            'encoder/embeddings_0/weight')   # alphabetical: the first is kept
  aliases = {}
  for j, name in enumerate(tables):
    for first in tables[:j]:
      if first in v and v[name] is v[first]:
        aliases[name] = first
        break
  return {k: a for k, a in v.items() if k not in aliases}, aliases


# --- vocabularies and the directory -----------------------------------------------------
def vocabulary(spm_path: str, rows: int) -> list[str]:
  """The token of each id of a SentencePiece-based table of `rows` rows."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  sp = spm.SentencePieceProcessor(model_file=spm_path)
  n = sp.get_piece_size()
  if n > rows:
    raise UserError(f'{spm_path} has {n} pieces but the model\'s table only {rows} rows')
  tokens = [sp.id_to_piece(i) for i in range(n)] + [f'<unused_{i}>' for i in range(n, rows)]
  want = {BOS_ID: '<s>', EOS_ID: '</s>', UNK_ID: '<unk>'}
  got = {i: tokens[i] for i in want}
  if got != want:
    raise UserError(f'{spm_path}: special pieces {got}, expected {want} (data/spm.py)')
  tokens[PAD_ID] = '<blank>'
  return tokens


def ctranslate2_config(model: Any, source: list[str], target: list[str]) -> dict[str, Any]:
  """config.json: TransformerConfig's fields (model_spec.SequenceToSequenceModelConfig)."""
  return {'add_source_bos': False, 'add_source_eos': True,   # our sources end in EOS
          'bos_token': target[BOS_ID], 'decoder_start_token': target[BOS_ID],
          'eos_token': target[EOS_ID], 'unk_token': target[UNK_ID],
          'layer_norm_epsilon': _epsilon(model.norm), 'multi_query_attention': False}


def _check_new(out: str) -> None:
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise UserError(f'--export_dir={out} exists and is not empty; give a new directory')


def write_directory(out: str, variables: dict[str, np.ndarray], aliases: dict[str, str],
                    config_json: dict[str, Any], source_vocab: list[str],
                    target_vocab: list[str], source_spm: str, target_spm: str,
                    provenance: dict[str, Any]) -> None:
  """Writes the model directory into `out` (absent or empty), all or nothing: the files go
  to a temporary folder beside it, which then takes its name."""
  _check_new(out)
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f'.{os.path.basename(os.path.abspath(out))}.tmp{os.getpid()}')
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    ct2_format.write(os.path.join(tmp, 'model.bin'), SPEC, REVISION, variables, aliases)
    vocabs = ({'shared': source_vocab} if source_vocab == target_vocab
              else {'source': source_vocab, 'target': target_vocab})
    files = {f'{k}_vocabulary.json': t for k, t in vocabs.items()}
    files.update({'config.json': config_json, 'export.json': provenance})
    for name, value in files.items():
      with open(os.path.join(tmp, name), 'w', encoding='utf-8') as f:
        json.dump(value, f, indent=2, ensure_ascii=False, sort_keys=True)
        f.write('\n')
    shutil.copyfile(source_spm, os.path.join(tmp, 'source.model'))
    shutil.copyfile(target_spm, os.path.join(tmp, 'target.model'))
    if os.path.isdir(out):
      os.rmdir(out)              # empty (checked above)
    os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def export(config: Any, workdir: str, export_dir: str, checkpoint: str | int | None = None
           ) -> dict[str, Any]:
  """Writes the workdir's checkpoint (default: the best) as a CTranslate2 directory.

  Args:
    config: the run's config (its config.json, as --mode=eval reads it).
    workdir: the training run.
    export_dir: the new model directory (absent or empty).
    checkpoint: 'best', 'latest' or a step (trainer/inference.py's parse_checkpoint).

  Returns:
    What export.json records: workdir, checkpoint, step, the run's decode settings.
  """
  if not export_dir:
    raise UserError('--mode=export needs --export_dir (the new model directory)')
  _check_new(export_dir)   # before anything is loaded
  if config.task != 'translation':
    raise UserError(f'--mode=export writes translation models (SentencePiece source and '
                    f'target); task {config.task!r} is not one')
  if config.model.get('pretrained', None):
    raise UserError(f'--mode=export writes models trained with our SentencePiece vocabularies; '
                    f'this run starts from model.pretrained={config.model.pretrained!r}, whose '
                    f'tokenizer the export cannot carry yet')
  import jax  # pylint: disable=g-import-not-at-top
  from flax.core import meta  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import inference  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import train  # pylint: disable=g-import-not-at-top
  check_model(train.build_model_for(config, _task_of(config)))   # before any restore
  loaded = inference.Loaded(config, workdir, checkpoint)
  model, task = loaded.run.model, loaded.run.task
  params = jax.device_get(meta.unbox(loaded.params))
  rows = max(MIN_POSITIONS, int(config.decode.get('max_len', 0)) + 1,
             int(config.data.get('max_len', 0)))
  variables, aliases = transformer_variables(model, params, rows)
  source_spm, target_spm = task.sentencepiece_models()
  source = vocabulary(source_spm, model.src_vocab_size)
  target = vocabulary(target_spm, model.tgt_vocab_size)
  provenance = {'workdir': os.path.abspath(workdir), 'checkpoint': loaded.checkpoint,
                'step': loaded.step, 'decode': config.decode.to_dict(),
                'ctranslate2': {'spec': SPEC, 'revision': REVISION}}
  if jax.process_index() == 0:
    write_directory(export_dir, variables, aliases, ctranslate2_config(model, source, target),
                    source, target, source_spm, target_spm, provenance)
  return provenance


def _task_of(config: Any) -> Any:
  from seq2seq_jax import tasks  # pylint: disable=g-import-not-at-top
  return tasks.get_task(config)
