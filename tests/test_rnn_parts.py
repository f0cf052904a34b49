"""The RNN family's named parts (seq2seq_jax/models/rnn/): registries, one-line errors, the
shared CTC head, configs and parameter trees written by the code before the split, and the
docs' example of a new attention family (docs/extending.md, "Add a model part")."""
import functools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from seq2seq_jax.errors import UserError
from seq2seq_jax import config_migration
from seq2seq_jax.models import build_model
from seq2seq_jax.models import ctc
from seq2seq_jax.models import layers
from seq2seq_jax.models.rnn.attention import ATTENTIONS
from seq2seq_jax.models.rnn.attention.base import Attention
from seq2seq_jax.models.rnn.bridge import BRIDGES
from seq2seq_jax.models.rnn.cells import CELLS
from seq2seq_jax.models.rnn.decoder import DECODERS

jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})
V = 40


def batch(seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  inp = rng.integers(4, V, (2, 6)).astype(np.int32)
  inp[1, 4:] = 0
  dec = rng.integers(4, V, (2, 5)).astype(np.int32)
  dec[:, 0] = 1
  tgt = np.concatenate([dec[:, 1:], np.full((2, 1), 2, np.int32)], 1)
  return {'inputs': inp, 'decoder_inputs': dec, 'targets': tgt}


def param_shapes(model: nn.Module, b) -> dict[str, tuple[int, ...]]:
  tree = jax.eval_shape(lambda r: model.init({'params': r}, b, train=False),
                        jax.random.key(0))['params']
  return {'/'.join(k): tuple(nn.unbox(v).shape)
          for k, v in traverse_util.flatten_dict(nn.unbox(tree)).items()}


def test_registries_name_every_part_and_each_attention_names_a_decoder():
  assert CELLS.names() == ('lstm', 'gru')
  assert set(ATTENTIONS.names()) >= {'none', 'bahdanau', 'concat', 'see', 'dot', 'general'}
  assert set(DECODERS.names()) == {'plain', 'bahdanau', 'luong', 'see'}
  assert set(BRIDGES.names()) == {'none', 'final', 'dense', 'reduce'}
  families = {n: ATTENTIONS.get(n).family for n in ('none', 'bahdanau', 'concat', 'see',
                                                     'dot', 'general')}
  assert families == dict(none='plain', bahdanau='bahdanau', concat='luong', see='see',
                          dot='luong', general='luong')
  assert {n for n in ATTENTIONS.names() if ATTENTIONS.get(n).additive} == {
      'bahdanau', 'concat', 'see'}


@pytest.mark.parametrize('cfg, match', [
    (dict(attention='luong'), r"model.attention must be one of \(.*'general'.*\), got 'luong'"),
    (dict(cell='rnn'), r"model.cell must be one of \('lstm', 'gru'\)"),
    (dict(bridge='mean'), 'model.bridge must be one of'),
    (dict(attention='general', coverage=True), r'coverage needs an additive attention'),
])
def test_unknown_part_is_a_one_line_user_error(cfg, match):
  model = build_model(dict(name='rnn', emb_dim=8, hidden_dim=4, **cfg), V, V)
  with pytest.raises(UserError, match=match) as e:
    param_shapes(model, batch())
  assert '\n' not in str(e.value)


def test_a_parts_unknown_setting_is_a_one_line_user_error():
  with pytest.raises(UserError, match=r"model.attention 'bahdanau' has no setting\(s\) "
                                      r'heads \(it has: attention_dim\)') as e:
    ATTENTIONS.build(dict(name='bahdanau', heads=4), init_fn=None, dtype=jnp.float32)
  assert '\n' not in str(e.value)
  with pytest.raises(UserError, match=r"model.cell.name='rnn' is not one of lstm, gru"):
    CELLS.build('rnn', hidden=4, in_features=4)
  assert ATTENTIONS.settings('bahdanau') == {'attention_dim': 0, 'init_fn': None,
                                             'dtype': jnp.float32}


def test_one_ctc_head_for_every_model():
  with pytest.raises(UserError, match=r'model.ctc_weight must be in \[0, 1\), got 1.0'):
    ctc.head(1.0, V, jnp.float32)
  assert ctc.head(0.0, V, jnp.float32) is None
  b = batch()
  for cfg in (dict(name='rnn', emb_dim=8, hidden_dim=4, ctc_weight=0.3),
              dict(name='transformer', emb_dim=8, qkv_dim=8, mlp_dim=16, num_heads=2,
                   num_encoder_layers=1, num_decoder_layers=1, ctc_weight=0.3)):
    model = build_model(cfg, V, V)
    assert param_shapes(model, b)['ctc_proj/kernel'] == (8, V)

    def run(rng, model=model):
      params = model.init({'params': rng}, b, train=False)['params']
      _, sown = model.apply({'params': params}, b, mutable=['losses'])
      logits, mask = model.apply({'params': params}, b['inputs'], method='ctc_logits')
      return sown['losses']['ctc'][0], 0.3 * layers.ctc_loss_sum(logits, mask, b['targets'])
    sown, want = jit(run)(jax.random.key(0))
    np.testing.assert_allclose(sown, want, rtol=1e-6)
    no_head = build_model({**cfg, 'ctc_weight': 0.0}, V, V)
    params = jit(lambda r, m=no_head: m.init({'params': r}, b)['params'])(jax.random.key(0))
    with pytest.raises(UserError, match='has no CTC head'):
      no_head.apply({'params': params}, b['inputs'], method='ctc_logits')


# The model settings of config.json files written before the split (/tmp/fx/*/config.json,
# 08b69df: `launch.py --config=experiments/g2p_cmudict_lstm_attention.py:smoke` and
# `spoken_digits.py:smoke`), and the parameter trees their checkpoints hold (vocabulary 40).
OLD_CONFIGS = {
    'g2p_lstm': dict(
        attention='general', bidirectional=True, bridge='dense', cell='lstm', decoder_layers=1,
        dropout_rate=0.2, emb_dim=16, encoder_layers=1, hidden_dim=16, input_feeding=True,
        max_len=64, name='rnn', readout='linear', reverse_source=False, tie_output=False),
    'speech_las': dict(
        attention='concat', attention_dim=16, bidirectional=True, cell='lstm',
        decoder_hidden_dim=32, decoder_layers=1, dropout_rate=0.1, emb_dim=16, encoder_layers=3,
        frontend='log_mel', hidden_dim=16, input_feeding=True, name='rnn', num_mels=80,
        pyramid=2, spec_augment=[2, 15, 2, 20, 0.2], vtlp=[]),
}
_ENC = {f'encoder_{i}/{d}/{k}': s for i, n in enumerate((16, 64, 64))
        for d in ('fwd', 'bwd') for k, s in (('bias', (64,)), ('input_kernel', (n, 64)),
                                            ('recurrent_kernel', (16, 64)))}
_DEC = {'decoder/combine/kernel': (64, 32), 'decoder/layer_0/bias': (128,),
        'decoder/layer_0/input_kernel': (48, 128), 'decoder/layer_0/recurrent_kernel': (32, 128),
        'out_proj/bias': (40,), 'out_proj/kernel': (32, 40), 'tgt_embed/embedding': (40, 16)}
OLD_TREES = {
    'g2p_lstm': {**{k: v for k, v in _ENC.items() if k.startswith('encoder_0')}, **_DEC,
                 'bridge_proj_0/bias': (32,), 'bridge_proj_0/kernel': (16, 32),
                 'source_keys/proj/kernel': (32, 32), 'src_embed/embedding': (40, 16)},
    'speech_las': {**_ENC, **_DEC, 'decoder/attention/query/bias': (16,),
                   'decoder/attention/query/kernel': (32, 16), 'decoder/attention/v': (16,),
                   'frontend/project/bias': (16,), 'frontend/project/kernel': (80, 16),
                   'source_keys/proj/kernel': (32, 16)},
}


@pytest.mark.parametrize('run', sorted(OLD_CONFIGS))
def test_old_config_json_builds_the_old_parameter_tree(run):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'old_runs', run,
                      'config.json')   # written by the code before the parts (08b69df)
  model_cfg = OLD_CONFIGS[run]
  with open(path) as f:
    assert json.load(f)['model'] == model_cfg
  model = build_model(config_migration.migrate_model(model_cfg), V, V)
  if model_cfg.get('frontend') == 'log_mel':
    b = {'inputs': np.zeros((1, 1600), np.float32), 'inputs_mask': np.ones((1, 1600), bool),
         'decoder_inputs': np.ones((1, 3), np.int32)}
  else:
    b = {'inputs': np.ones((1, 4), np.int32), 'decoder_inputs': np.ones((1, 3), np.int32)}
  assert param_shapes(model, b) == OLD_TREES[run]


# --- the example of docs/extending.md, "Add a model part" --------------------------------
class ScaledDot(Attention):
  """h_t^T W_a h_s / sqrt(d): Luong's 'general' score, scaled as Vaswani et al. 2017 (Eq. 1)."""
  family = 'luong'      # the new top state h_t queries (decoder.py: LuongDecoderCell)

  def score(self, query, keys, coverage):
    scores = jnp.einsum('bd,bsd->bs', query.astype(self.dtype), keys)
    return scores / jnp.sqrt(keys.shape[-1]).astype(scores.dtype)


def test_a_new_attention_family_has_generals_tree_and_decodes_as_it_trains():
  ATTENTIONS.register('scaled_dot')(ScaledDot)
  try:
    b = batch()
    cfg = dict(name='rnn', emb_dim=8, hidden_dim=4, dropout_rate=0.0)
    new = build_model({**cfg, 'attention': 'scaled_dot'}, V, V)
    general = build_model({**cfg, 'attention': 'general'}, V, V)
    assert param_shapes(new, b) == param_shapes(general, b)   # the same parts around it

    def run(rng):
      params = general.init({'params': rng}, b)['params']
      forced = new.apply({'params': params}, b)
      cache = new.apply({'params': params}, b['inputs'], 8, method='init_cache')
      first, _ = new.apply({'params': params}, b['decoder_inputs'][:, 0], cache,
                           method='decode_step')
      return forced, first, general.apply({'params': params}, b)
    forced, first, unscaled = jit(run)(jax.random.key(0))
    np.testing.assert_allclose(first, forced[:, 0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(forced, unscaled)
  finally:
    ATTENTIONS._classes.pop('scaled_dot')   # pylint: disable=protected-access
