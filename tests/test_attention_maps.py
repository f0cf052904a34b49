"""Attention weights of the RNN and the Transformer over image annotation grids, and the
figure drawn from them."""
import flax.linen as nn
import jax
import numpy as np
import pytest
from PIL import Image

from seq2seq_jax.analysis import attention_maps
from seq2seq_jax.data.vocab import EOS_ID
from seq2seq_jax.models import build_model
from seq2seq_jax.models import frontends

MODELS = {
    'rnn': dict(name='rnn', emb_dim=8, hidden_dim=6, encoder_layers=1, decoder_layers=1,
                attention='bahdanau', dropout_rate=0.0),
    'transformer': dict(name='transformer', emb_dim=8, num_heads=2, mlp_dim=16,
                        num_encoder_layers=1, num_decoder_layers=2, dropout_rate=0.0,
                        max_len=32),
}


@pytest.mark.parametrize('name', sorted(MODELS))
def test_weights_over_the_grid(name):
  model = build_model(dict(MODELS[name], frontend=dict(name='cnn', channels=(3, 4))), 0, 9)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 16, 24, 1)).astype(np.float32)
  dec = attention_maps.decoder_inputs_for(np.array([[4, 5, 6, EOS_ID], [7, EOS_ID, 0, 0]]))
  batch = {'inputs': images, 'decoder_inputs': dec}
  params = nn.unbox(model.init(jax.random.key(0), batch)['params'])
  _, sown = model.apply({'params': params}, batch, mutable=['intermediates'])
  w = attention_maps.pick_weights(sown['intermediates'])
  grid = frontends.grid_shape(dict(name='cnn', channels=(3, 4)), 16, 24)
  assert grid == (4, 6) and w.shape == (2, 4, 24)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)


def test_draw_writes_one_panel_per_token(tmp_path):
  rng = np.random.default_rng(1)
  image = rng.uniform(-1, 1, size=(16, 16, 3)).astype(np.float32)
  weights = np.zeros((3, 4))
  weights[0, 0] = weights[1, 3] = 1.0                  # top left, then bottom right
  path = str(tmp_path / 'x.png')
  attention_maps.draw(image, ['a', 'b'], weights, (2, 2), path)
  with Image.open(path) as im:
    sheet = np.asarray(im.convert('RGB'), np.float32)
  # Three panels (input, 'a', 'b') of 96 pixels (16 x 6) in a row, labels under them.
  assert sheet.shape[1] == 3 * (96 + 4)
  a = sheet[:96, 100:196].mean(-1)
  b = sheet[:96, 200:296].mean(-1)
  assert a[:48, :48].mean() > a[48:, 48:].mean() + 40    # lit where attended
  assert b[48:, 48:].mean() > b[:48, :48].mean() + 40
  assert attention_maps.output_path(str(tmp_path), 3, '/x/cat.jpg\n').endswith('00003_cat.png')
