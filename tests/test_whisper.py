"""Whisper: the CTranslate2 reader, the weight mappings, logits against transformers, the
log-mel against faster-whisper, and the greedy loop.

The references ran once in a separate environment (tools/make_whisper_fixtures.py wrote
tests/fixtures/whisper/ with transformers, ctranslate2 and faster-whisper: versions.json);
nothing here imports PyTorch.
"""
import functools
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import audio
from seq2seq_jax.models import build_model
from seq2seq_jax.pretrained import ctranslate2
from seq2seq_jax.pretrained import whisper

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'whisper')


@functools.lru_cache(maxsize=None)
def loaded(kind: str, tag: str = 'a'):
  """(model, params, config.json) of a fixture checkpoint."""
  if kind == 'hf':
    config, params, cj = whisper.load_hf(os.path.join(FIXTURES, f'hf_{tag}'))
  else:
    config, params, cj = whisper.load_ctranslate2(os.path.join(FIXTURES, kind))
  vocab = params['tgt_embed']['embedding'].shape[0]
  return build_model(config, vocab, vocab), params, cj


def logits_of(model, params, features, ids):
  fn = jax.jit(lambda p, x, y: model.apply({'params': p}, {'inputs': x, 'decoder_inputs': y}))
  return np.asarray(fn(params, jnp.asarray(features), jnp.asarray(ids)))


@pytest.mark.parametrize('tag', ['a', 'b'])
def test_hugging_face_checkpoint_gives_transformers_logits(tag):
  io = np.load(os.path.join(FIXTURES, f'io_{tag}.npz'))
  model, params, _ = loaded('hf', tag)
  ours = logits_of(model, params, io['features'], io['decoder_inputs'])
  assert ours.shape == io['logits'].shape
  assert np.abs(io['logits']).max() > 1.0          # not a trivially small output
  np.testing.assert_allclose(ours, io['logits'], atol=1e-4, rtol=0)


def test_ctranslate2_checkpoint_gives_transformers_logits():
  """Model a converted by CTranslate2's own converter and written by its spec writer."""
  io = np.load(os.path.join(FIXTURES, 'io_a.npz'))
  model, params, _ = loaded('ct2_a')
  ours = logits_of(model, params, io['features'], io['decoder_inputs'])
  np.testing.assert_allclose(ours, io['logits'], atol=1e-4, rtol=0)


def test_reader_reads_what_ctranslate2s_writer_wrote():
  header, v = ctranslate2.read(os.path.join(FIXTURES, 'ct2_a', 'model.bin'))
  assert header == {'version': 6, 'spec': 'WhisperSpec', 'revision': 3}
  want = np.load(os.path.join(FIXTURES, 'ct2_a_vars.npz'))
  for name in want.files:
    if isinstance(v[name], np.ndarray) and v[name].dtype.kind == 'f':
      np.testing.assert_array_equal(v[name], want[name], err_msg=name)
  # The tied output projection is stored as an alias of the embedding.
  _, _, aliases = ctranslate2.read_raw(os.path.join(FIXTURES, 'ct2_a', 'model.bin'))
  assert aliases == {'decoder/projection/weight': 'decoder/embeddings/weight'}
  # int8: each row within half a quantisation step of the float weights.
  _, q = ctranslate2.read(os.path.join(FIXTURES, 'ct2_a_int8', 'model.bin'))
  _, raw, _ = ctranslate2.read_raw(os.path.join(FIXTURES, 'ct2_a_int8', 'model.bin'))
  name = 'encoder/layer_0/self_attention/linear_0/weight'
  assert raw[name].dtype == np.int8 and name + '_scale' not in q
  step = 1.0 / raw[name + '_scale'][:, None]
  assert np.all(np.abs(q[name] - want[name]) <= step / 2 + 1e-6)
  assert not np.array_equal(q[name], want[name])


def _string(s: str) -> bytes:
  b = s.encode() + b'\0'
  return struct.pack('<H', len(b)) + b


def write_model_bin(path, variables, aliases, version=6, spec='TestSpec', revision=2):
  """A model.bin in CTranslate2's documented layout (ctranslate2.py's docstring)."""
  ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
         np.dtype(np.int32): 3, np.dtype(np.float16): 4}
  out = struct.pack('<I', version) + _string(spec) + struct.pack('<I', revision)
  out += struct.pack('<I', len(variables))
  for name, (value, type_id) in sorted(variables.items()):
    raw = value.tobytes()
    out += _string(name) + struct.pack('<B', value.ndim)
    out += b''.join(struct.pack('<I', d) for d in value.shape)
    out += struct.pack('<B', ids.get(value.dtype, type_id) if type_id is None else type_id)
    out += struct.pack('<I', len(raw)) + raw
  out += struct.pack('<I', len(aliases))
  for alias, target in aliases.items():
    out += _string(alias) + _string(target)
  with open(path, 'wb') as f:
    f.write(out)


def test_reader_dtypes_quantisation_and_aliases(tmp_path):
  rng = np.random.default_rng(0)
  w = rng.normal(size=(4, 6)).astype(np.float32)
  scale8 = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)
  q8 = np.rint(w * scale8[:, None]).astype(np.int8)
  scale16 = np.float32(2 ** 10 / np.abs(w).max())
  q16 = np.rint(w * scale16).astype(np.int16)
  bf16 = (w.view(np.uint32) >> 16).astype(np.uint16)     # truncated to bfloat16
  variables = {
      'a/float32': (w, None), 'a/float16': (w.astype(np.float16), None),
      'b/int8': (q8, None), 'b/int8_scale': (scale8, None),
      'c/int16': (q16, None), 'c/int16_scale': (np.array(scale16), None),
      'd/bfloat16': (bf16, 5), 'e/num_heads': (np.array(3, np.int16), None),
      'e/steps': (np.arange(5, dtype=np.int32), None)}
  path = tmp_path / 'model.bin'
  write_model_bin(path, variables, {'z/tied': 'a/float32'})
  header, v = ctranslate2.read(str(path))
  assert header == {'version': 6, 'spec': 'TestSpec', 'revision': 2}
  np.testing.assert_array_equal(v['a/float32'], w)
  np.testing.assert_array_equal(v['a/float16'], w.astype(np.float16).astype(np.float32))
  np.testing.assert_allclose(v['b/int8'], w, atol=float((0.5 / scale8).max()) + 1e-7)
  np.testing.assert_allclose(v['c/int16'], w, atol=0.5 / float(scale16) + 1e-7)
  np.testing.assert_allclose(v['d/bfloat16'], w, rtol=2 ** -7)
  assert v['b/int8'].dtype == np.float32 and 'b/int8_scale' not in v
  assert int(v['e/num_heads']) == 3 and v['e/steps'].dtype == np.int32
  assert v['z/tied'] is v['a/float32']


def test_reader_refuses_bad_files(tmp_path):
  with pytest.raises(UserError, match='no CTranslate2 model'):
    ctranslate2.read(str(tmp_path / 'missing.bin'))
  bad = tmp_path / 'bad.bin'
  bad.write_bytes(b'PK\x03\x04 not a model')
  with pytest.raises(UserError, match='not a CTranslate2 model'):
    ctranslate2.read(str(bad))
  good = open(os.path.join(FIXTURES, 'ct2_a', 'model.bin'), 'rb').read()
  bad.write_bytes(good[:len(good) // 2])
  with pytest.raises(UserError, match='truncated'):
    ctranslate2.read(str(bad))
  with pytest.raises(UserError, match='no model.safetensors'):
    whisper.load_hf(os.path.join(FIXTURES, 'ct2_a'))
  with pytest.raises(UserError, match='no config.json'):
    whisper.load_hf(str(tmp_path))
  with pytest.raises(UserError):
    whisper.load_ctranslate2(str(tmp_path))
  with pytest.raises(UserError, match='unknown Whisper size'):
    whisper.preset('huge')


def test_log_mel_matches_faster_whisper_and_ignores_batch_padding():
  ref = np.load(os.path.join(FIXTURES, 'logmel.npz'))
  a = ref['audio']
  n = len(a)
  for mels in (80, 128):
    want = ref[f'logmel_{mels}']
    # Row 0 the signal alone; row 1 the same signal followed by garbage that the mask hides.
    batch = np.stack([np.pad(a, (0, 3000)), np.concatenate([a, np.ones(3000, np.float32)])])
    got = np.asarray(jax.jit(functools.partial(audio.whisper_log_mel, num_mels=mels))(
        jnp.asarray(batch), jnp.asarray([n, n])))
    assert got.shape == (2, 3000, mels)
    np.testing.assert_allclose(got[0, :len(want)], want, atol=2e-4, rtol=0)
    assert not got[0, len(want):].any()
    np.testing.assert_array_equal(got[0], got[1])


def test_presets_have_whispers_sizes():
  from flax import linen as nn
  counts = {}
  for size in ('tiny', 'base'):
    model = build_model(whisper.preset(size), whisper.vocab_size(size), whisper.vocab_size(size))
    shapes = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), {
        'inputs': jnp.zeros((1, 3000, 80)), 'decoder_inputs': jnp.zeros((1, 4), jnp.int32)}))
    counts[size] = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes)))
  # Hugging Face's parameter counts of openai/whisper-tiny and -base (39M, 74M) hold the
  # encoder's sinusoids (1500 x d), which ours computes, and no key biases, which ours holds
  # as zeros (d per attention layer). (The real base model.bin has 71,835,136 values besides
  # its sinusoids, zero key biases included: our count.)
  def hf_count(size, d, layers):
    return counts[size] + 1500 * d - d * 3 * layers
  assert hf_count('tiny', 384, 4) == 37_760_640
  assert hf_count('base', 512, 6) == 72_593_920
  assert counts['base'] == 71_835_136


def test_greedy_loop_follows_teacher_forced_argmax():
  """Every token the jitted loop emits is the argmax (suppressions applied) of the logits
  the model gives the prompt plus the tokens before it, and decoding stops at EOT."""
  model, params, _ = loaded('hf', 'a')
  cj = {'suppress_ids': [3, 5], 'suppress_ids_begin': [7]}
  config, params, _ = whisper.load_hf(os.path.join(FIXTURES, 'hf_a'))
  tr = whisper.Transcriber(config, params, cj, os.path.join(FIXTURES, 'tokenizer.json'))
  rng = np.random.default_rng(3)
  wave = rng.normal(0, 0.1, (2, 16000)).astype(np.float32)
  lengths = np.array([16000, 9000])
  rows = tr.token_ids(wave, lengths)
  assert tr.max_new_tokens() == 16
  feats = np.asarray(audio.whisper_log_mel(jnp.asarray(wave), jnp.asarray(lengths),
                                           num_mels=80, frames=100))
  for r, ids in enumerate(rows):
    seq = tr.prompt + ids
    logits = logits_of(model, params, feats[r:r + 1], np.asarray([seq], np.int32))[0]
    for j, tok in enumerate(ids + ([tr.eot] if len(ids) < tr.max_new_tokens() else [])):
      row = logits[len(tr.prompt) - 1 + j].copy()
      row[tr.suppress] = -np.inf
      if j == 0:
        row[cj['suppress_ids_begin']] = -np.inf
      assert tok == int(np.argmax(row)), (r, j)
    assert not set(ids) & set(tr.suppress)
  assert tr.text([0, 1, tr.eot - 1]) == f'w0 w1 w{tr.eot - 1}'


def test_transformer_hooks_refuse_bad_settings():
  base = dict(name='transformer', emb_dim=16, num_heads=2, mlp_dim=32, num_encoder_layers=1,
              num_decoder_layers=1)
  batch = {'inputs': jnp.ones((1, 3), jnp.int32), 'decoder_inputs': jnp.ones((1, 2), jnp.int32)}
  for extra, message in ((dict(norm=dict(name='rms')), 'model.norm.name'),
                         (dict(norm=dict(name='layer_norm', eps=1e-5)), 'no setting'),
                         (dict(mlp='no_such_mlp'), 'model.mlp.name'),
                         (dict(target_positions='rotary'), 'target_positions')):
    model = build_model(dict(base, **extra), 8, 8)
    with pytest.raises(UserError, match=message):
      jax.eval_shape(lambda m=model: m.init(jax.random.key(0), batch))
