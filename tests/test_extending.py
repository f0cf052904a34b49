"""docs/extending.md's worked examples, run as written, so the guide cannot go stale.

"Add a frontend": the page's code block is saved as `frontends/stacked_frames.py` in a
temporary folder on the package's path (the one file the guide says to add, and nothing
else), then a tiny Transformer and RNN choose it by name and train for a step.
"""
import importlib
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seq2seq_jax.data.vocab import BOS_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import build_model
from seq2seq_jax.models import frontends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(ROOT, 'docs', 'extending.md')
MODULE = 'seq2seq_jax.models.frontends.stacked_frames'
VOCAB = 13
MODELS = {
    'transformer': dict(name='transformer', emb_dim=16, num_heads=2, mlp_dim=32,
                        num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.0,
                        max_len=64),
    'rnn': dict(name='rnn', emb_dim=16, hidden_dim=8, encoder_layers=1, decoder_layers=1,
                attention='general', dropout_rate=0.0),
}


def _guide_block(section: str, first_line: str) -> str:
  """The ```python block of `section` whose first line is `first_line`."""
  with open(GUIDE) as f:
    text = f.read()
  body = text.split(f'## {section}\n', 1)[1].split('\n## ', 1)[0]
  for block in re.findall(r'```python\n(.*?)```', body, re.S):
    if block.startswith(first_line):
      return block
  raise AssertionError(f'{GUIDE}: no python block starting {first_line!r} in {section!r}')


@pytest.fixture
def guide_frontend(tmp_path, monkeypatch):
  """The guide's frontend file, in a folder on the frontends package's path."""
  code = _guide_block('Add a frontend', '# seq2seq_jax/models/frontends/stacked_frames.py')
  (tmp_path / 'stacked_frames.py').write_text(code)
  monkeypatch.setattr(frontends, '__path__', [*frontends.__path__, str(tmp_path)])
  monkeypatch.setattr(frontends.FRONTENDS, '_classes', dict(frontends.FRONTENDS._classes))
  importlib.invalidate_caches()
  yield
  sys.modules.pop(MODULE, None)


def _batch(frames: int, rows: int = 2):
  """Features [rows, frames, 5] whose masked frames are garbage, with targets."""
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(rows, frames, 5)).astype(np.float32)
  mask = np.zeros((rows, frames), bool)
  mask[0, :7] = True
  mask[1:, :4] = True
  feats[~mask] = 1e3
  tgt = rng.integers(4, VOCAB, (rows, 4)).astype(np.int32)
  dec = np.concatenate([np.full((rows, 1), BOS_ID, np.int32), tgt[:, :-1]], 1)
  return {'inputs': feats, 'inputs_mask': mask, 'decoder_inputs': dec, 'targets': tgt}


@pytest.mark.parametrize('model_name', sorted(MODELS))
def test_the_guides_frontend_trains_under_every_model(guide_frontend, model_name):
  assert frontends.reads('stacked_frames') == ('features',)   # what the trainer checks
  model = build_model(dict(MODELS[model_name], frontend=dict(name='stacked_frames', stack=2)),
                      0, VOCAB)
  batch = _batch(9)
  params = model.init(jax.random.key(0), batch, train=False)['params']
  assert params['frontend']['project']['kernel'].value.shape == (2 * 5, 16)
  params = jax.tree.map(lambda p: p.value, params, is_leaf=lambda p: hasattr(p, 'value'))

  def loss(p, b):
    logits = model.apply({'params': p}, b, train=True, rngs={'dropout': jax.random.key(1)})
    return optax.softmax_cross_entropy_with_integer_labels(logits, b['targets']).mean()

  loss0, grads = jax.jit(jax.value_and_grad(loss))(params, batch)
  assert np.isfinite(float(loss0))
  assert float(jnp.abs(grads['frontend']['project']['kernel']).sum()) > 0
  stepped = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
  assert float(loss(stepped, batch)) < float(loss0)
  # Padding (more masked frames, another row) does not change the real rows.
  logits = model.apply({'params': params}, batch, train=False)
  padded = _batch(13, rows=3)
  padded['inputs'][:2, :9] = np.where(batch['inputs_mask'][..., None], batch['inputs'], 7.0)
  padded['inputs_mask'][:2] = np.pad(batch['inputs_mask'], ((0, 0), (0, 4)))
  padded['decoder_inputs'][:2] = batch['decoder_inputs']
  np.testing.assert_allclose(model.apply({'params': params}, padded, train=False)[:2], logits,
                             rtol=1e-5, atol=1e-5)


def test_a_setting_the_guides_frontend_lacks_is_one_line(guide_frontend):
  model = build_model(dict(MODELS['transformer'], frontend=dict(name='stacked_frames',
                                                                 stride=2)), 0, VOCAB)
  with pytest.raises(UserError, match=r"'stacked_frames' has no setting\(s\) stride "
                                      r'\(it has: stack\)'):
    model.init(jax.random.key(0), _batch(9), train=False)
