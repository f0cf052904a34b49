"""Frontends: every input kind through both models; padding never changes the real rows.

For each frontend and each model, a batch is padded (longer sequences with masked garbage
frames or padding ids, and an extra row) and the real rows' teacher-forced logits must not
move; the cached decoding path (init_cache + decode_step) must give the teacher-forced logits
of the first position from the same inputs.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax.data.vocab import BOS_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.models import frontends

SRC_VOCAB, TGT_VOCAB = 11, 13  # the source vocabulary is unused by these frontends
MODELS = {
    'transformer': dict(name='transformer', emb_dim=16, num_heads=2, mlp_dim=32,
                        num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.0,
                        max_len=64),
    'rnn': dict(name='rnn', emb_dim=16, hidden_dim=8, encoder_layers=1, decoder_layers=1,
                attention='general', dropout_rate=0.0),
}
FRONTEND_SIZES = {'patches': dict(name='patches', patch_size=4),
                  'cnn': dict(name='cnn', channels=(4, 8)),
                  'audio_conv': dict(name='audio_conv', channels=4)}


def _batches(frontend: str):
  """(real batch, padded batch): the padded one has one more row and, for feature
  sequences, longer rows whose extra frames are masked and full of garbage."""
  rng = np.random.default_rng(0)
  dec = rng.integers(4, TGT_VOCAB, (2, 4)).astype(np.int32)
  dec[:, 0] = BOS_ID
  dec_pad = np.concatenate([dec, np.full((1, 4), BOS_ID, np.int32)])
  if frontend in ('patches', 'cnn'):
    img = rng.normal(size=(2, 16, 16, 1)).astype(np.float32)
    extra = rng.normal(size=(1, 16, 16, 1)).astype(np.float32)
    return ({'inputs': img, 'decoder_inputs': dec},
            {'inputs': np.concatenate([img, extra]), 'decoder_inputs': dec_pad})
  feats = rng.normal(size=(2, 11, 8)).astype(np.float32)
  mask = np.zeros((2, 11), bool)
  mask[0, :11] = True
  mask[1, :6] = True
  feats[1, 6:] = 0.0
  padded = rng.normal(size=(3, 19, 8)).astype(np.float32) * 100  # garbage where masked
  padded[:2, :11] = feats
  padded[1, 6:11] = rng.normal(size=(5, 8)) * 100
  mask_pad = np.zeros((3, 19), bool)
  mask_pad[:2, :11] = mask
  mask_pad[2, :3] = True
  return ({'inputs': feats, 'inputs_mask': mask, 'decoder_inputs': dec},
          {'inputs': padded, 'inputs_mask': mask_pad, 'decoder_inputs': dec_pad})


# Token padding under both models is tests/test_transformer.py's and tests/test_rnn.py's.
@pytest.mark.parametrize('model_name', sorted(MODELS))
@pytest.mark.parametrize('frontend', ['patches', 'cnn', 'audio_conv'])
def test_padding_never_changes_real_rows_and_cache_matches(frontend, model_name):
  model = build_model(dict(MODELS[model_name], frontend=FRONTEND_SIZES[frontend]),
                      SRC_VOCAB, TGT_VOCAB)
  batch, padded = _batches(frontend)
  params = model.init({'params': jax.random.key(0)}, batch, train=False)['params']
  apply = jax.jit(lambda p, b: model.apply({'params': p}, b, train=False))
  logits = np.asarray(apply(params, batch))
  logits_pad = np.asarray(apply(params, padded))
  assert logits.shape == (2, 4, TGT_VOCAB) and np.all(np.isfinite(logits))
  np.testing.assert_allclose(logits_pad[:2], logits, rtol=1e-5, atol=1e-5)

  # The decoding path reads the same inputs the same way.
  def first_step(p, b):
    cache = model.apply({'params': p}, b['inputs'], 4, 1, inputs_mask=b.get('inputs_mask'),
                        method='init_cache')
    bos = jnp.full((b['inputs'].shape[0],), BOS_ID, jnp.int32)
    return model.apply({'params': p}, bos, cache, method='decode_step')[0]
  step0 = np.asarray(jax.jit(first_step)(params, padded))
  np.testing.assert_allclose(step0[:2], logits[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('frontend', ['patches', 'cnn', 'audio_conv'])
def test_frontend_parameters_carry_logical_axis_names(frontend):
  model = build_model(dict(MODELS['transformer'], frontend=FRONTEND_SIZES[frontend]),
                      SRC_VOCAB, TGT_VOCAB)
  batch, _ = _batches(frontend)
  boxed = jax.eval_shape(lambda r: model.init({'params': r}, batch, train=False),
                         jax.random.key(0))['params']
  specs = nn.get_partition_spec(boxed)['frontend']
  names = {a for spec in jax.tree.leaves(specs, is_leaf=lambda x: isinstance(
      x, jax.sharding.PartitionSpec)) for a in spec}
  assert 'embed' in names  # the projection to the model width can be split by the rules
  assert 'src_embed' not in nn.get_partition_spec(boxed)


def test_cnn_columns_read_the_grid_column_by_column():
  """columns=True: one vector per column of the last grid, built from the same conv
  features as the cell-by-cell sequence (its rows concatenated); grid_shape says 1 x W."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 32, 1)), jnp.float32)
  cells = frontends.Cnn(features=6, channels=(4, 8))
  columns = frontends.Cnn(features=6, channels=(4, 8), columns=True)
  params = cells.init(jax.random.key(0), x)['params']
  (gh, gw), ch = frontends.grid_shape(dict(name='cnn', channels=(4, 8)), 16, 32), 8
  assert (gh, gw) == (4, 8)
  assert frontends.grid_shape(dict(name='cnn', channels=[4, 8], columns=True), 16, 32) == (1, gw)
  # The cell sequence with an identity projection is the grid itself, row-major.
  ident = dict(params, project={'kernel': jnp.eye(ch), 'bias': jnp.zeros(ch)})
  grid = cells.clone(features=ch).apply({'params': ident}, x)[0].reshape(2, gh, gw, ch)
  kernel = jax.random.normal(jax.random.key(1), (gh * ch, 6))
  col_params = dict(params, project={'kernel': kernel, 'bias': jnp.zeros(6)})
  out, mask = columns.apply({'params': col_params}, x)
  assert out.shape == (2, gw, 6) and mask.shape == (2, gw) and bool(mask.all())
  want = grid.transpose(0, 2, 1, 3).reshape(2, gw, gh * ch) @ kernel
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_audio_conv_subsamples_frames_and_mask_four_times():
  conv = frontends.AudioConv(features=16, channels=4)
  for frames in (1, 2, 7, 8, 9, 40):
    x = jnp.ones((1, frames, 8))
    mask = jnp.ones((1, frames), bool)
    (out, out_mask), _ = conv.init_with_output(jax.random.key(0), x, mask)
    want = frames
    for _ in range(2):  # fairseq's output length per stride-2 layer
      want = (want - 1) // 2 + 1
    assert out.shape == (1, want, 16) and out_mask.shape == (1, want)
    assert bool(out_mask.all())


@pytest.mark.parametrize('fields,inputs,message', [
    (dict(frontend=dict(name='patches', patch_size=5)), np.zeros((1, 16, 16, 1), np.float32),
     'patch'),
    (dict(frontend='patches'), np.zeros((1, 16), np.int32), 'float images'),
    (dict(frontend='audio_conv'), np.zeros((1, 16, 16, 1), np.float32), 'float features'),
    (dict(frontend='sonar'), np.zeros((1, 16), np.int32), "model.frontend.name='sonar' is not"),
    (dict(frontend=dict(name='cnn', chanels=(4,))), np.zeros((1, 16, 16, 1), np.float32),
     r"model.frontend 'cnn' has no setting\(s\) chanels \(it has: channels, columns\)"),
])
def test_wrong_inputs_or_sizes_are_user_errors(fields, inputs, message):
  model = build_model(dict(MODELS['transformer'], **fields), SRC_VOCAB, TGT_VOCAB)
  batch = {'inputs': inputs, 'decoder_inputs': np.ones((1, 3), np.int32)}
  with pytest.raises(UserError, match=message):
    model.init({'params': jax.random.key(0)}, batch, train=False)


@pytest.mark.parametrize('strides,padding,shape', [
    (1, ((1, 1), (1, 1)), (2, 9, 14, 3)),    # the cnn frontend's 'SAME' convolution
    (2, ((1, 1), (1, 1)), (2, 11, 8, 1)),    # the audio subsampler, odd length
])
def test_conv3x3_is_lax_convolution(strides, padding, shape):
  """The im2col convolution computes lax.conv_general_dilated's function, gradients too."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  conv = frontends.Conv3x3(5, strides=strides, padding=padding)
  params = conv.init(jax.random.key(0), x)['params']
  params = jax.tree.map(lambda p: p + 0.1, nn.unbox(params))   # a nonzero bias too

  def reference(p, x):
    y = jax.lax.conv_general_dilated(x, p['kernel'], (strides, strides), padding,
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + p['bias']

  ours = conv.apply({'params': params}, x)
  np.testing.assert_allclose(ours, reference(params, x), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda p, x: jnp.sum(jnp.sin(f(p, x)))
  g_ours = jax.grad(loss(lambda p, x: conv.apply({'params': p}, x)), argnums=(0, 1))(params, x)
  g_ref = jax.grad(loss(reference), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_max_pool_2x2_is_flax_max_pool():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 7, 10, 3)), jnp.float32)
  np.testing.assert_array_equal(
      frontends.max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID'))


def _switch_batch(frontend: str):
  """A teacher-forcing batch for `frontend` (waveforms for log_mel) with targets."""
  rng = np.random.default_rng(3)
  if frontend == 'log_mel':
    mask = np.ones((2, 1600), bool)
    mask[1, 1000:] = False
    batch = {'inputs': rng.normal(size=(2, 1600)).astype(np.float32) * mask,
             'inputs_mask': mask}
  else:
    batch = dict(_batches(frontend)[0])
    batch.pop('decoder_inputs')
  tgt = rng.integers(4, TGT_VOCAB, (2, 4)).astype(np.int32)
  batch['decoder_inputs'] = np.concatenate([np.full((2, 1), BOS_ID, np.int32), tgt[:, :-1]], 1)
  batch['targets'] = tgt
  return batch


# The scale switches (README "Accelerators") with a frontend under each model: an image one
# under the Transformer, the waveform one (whose batches split by rows like tokens) under the
# RNN. The switches act on the model around the frontend, so the other frontends add nothing
# here that tests/test_scale.py (the switches per model) and the end-to-end runs of
# test_modalities.py / test_speech.py do not cover.
@pytest.mark.parametrize('frontend,model_name', [('patches', 'transformer'), ('log_mel', 'rnn')])
def test_scale_switches_work_with_every_frontend(frontend, model_name):
  import ml_collections  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from seq2seq_jax.trainer import steps  # pylint: disable=g-import-not-at-top
  spec = dict(FRONTEND_SIZES.get(frontend, {'name': frontend}))
  if frontend == 'log_mel':
    spec.update(num_mels=8, spec_augment=(0, 0, 0, 0, 0.0))
  cfg = dict(MODELS[model_name], frontend=spec)
  batch = _switch_batch(frontend)

  def loss_and_grads(model, params):
    def loss(p):
      logits = model.apply({'params': p}, batch, train=False)
      return steps.cross_entropy(logits.astype(jnp.float32), batch['targets'],
                                 np.ones((2, 4), np.float32))[0] / 8
    return jax.jit(jax.value_and_grad(loss))(params)

  base = build_model(cfg, SRC_VOCAB, TGT_VOCAB)
  params = base.init({'params': jax.random.key(0)}, batch, train=False)['params']
  loss0, grads0 = loss_and_grads(base, params)
  remat = build_model(dict(cfg, remat='full'), SRC_VOCAB, TGT_VOCAB)
  loss, grads = loss_and_grads(remat, params)
  np.testing.assert_allclose(loss, loss0, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               grads, grads0)
  bf16 = build_model(dict(cfg, dtype='bfloat16'), SRC_VOCAB, TGT_VOCAB)
  bf16_params = bf16.init({'params': jax.random.key(0)}, batch, train=False)['params']
  # Parameters stay float32 (and are the same ones); the frontend computes in bfloat16.
  jax.tree.map(lambda a, b: (a.dtype == jnp.float32) or pytest.fail(f'{a.dtype} parameter'),
               bf16_params, params)
  jax.tree.map(np.testing.assert_array_equal, bf16_params, params)
  x, _ = bf16.apply({'params': params}, batch['inputs'], inputs_mask=batch.get('inputs_mask'),
                    method=lambda m, i, inputs_mask: m.src_embed(i, inputs_mask, train=False))
  assert x.dtype == jnp.bfloat16
  loss_bf16, grads_bf16 = loss_and_grads(bf16, params)
  assert np.isfinite(loss_bf16) and abs(float(loss_bf16) - float(loss0)) < 0.05 * float(loss0)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads_bf16))
  # Gradient accumulation: 2 microbatches of one row give the one-batch update (images,
  # features and waveforms are split by rows like tokens).
  tx = optax.sgd(1.0)
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                           opt_state=tx.init(params))
  out = {}
  for k in (1, 2):
    config = ml_collections.ConfigDict(dict(seed=0, label_smoothing=0.0, grad_accum_steps=k))
    step = jax.jit(steps.make_train_step(base, tx, lambda s: 1.0, config))
    out[k] = step(state, batch)
  np.testing.assert_allclose(out[2][1]['loss'], out[1][1]['loss'], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               out[2][0].params, out[1][0].params)
