"""Show, Attend and Tell (Xu et al. 2015), soft ("deterministic") attention.

The annotation vectors a_1..a_L come from the frontend (frontend 'cnn', the default: its last
feature grid, row by row, projected to context_dim; the paper reads VGG-19 conv5_4, 14 x 14 x
512). The decoder is one LSTM (Sec. 3.1.2):

  initial state     h_0 = tanh(f_h(m)), c_0 = tanh(f_c(m)), m = mean_i a_i after
                    init_layers - 1 ReLU layers ("top right of page 4"; the authors' code
                    arctic-captions: n_layers_init)
  attention         e_ti = w^T tanh(K a_i + W h_{t-1}) + b, alpha_t = softmax(e_t) (Eq. 4-5);
                    K a_i is a_i through attention_layers affine layers, tanh between them
                    (n_layers_att), computed once per image
  gating scalar     beta_t = sigmoid(f_beta(h_{t-1})), z_t = beta_t sum_i alpha_ti a_i (Sec. 4.2.1)
  recurrence        [i f o g] = W E y_{t-1} + U h_{t-1} + Z z_t + b (Eq. 1-3)
  deep output       p(y_t) = softmax(L_o tanh(L_h h_t + E y_{t-1} + L_z z_t)) (Eq. 7; the tanh is
                    the authors' code's, prev2out and ctx2out switch the two extra terms)
  penalty           doubly stochastic attention, lambda sum_i (1 - sum_t alpha_ti)^2 per image
                    (Eq. 14), sown as a loss that the train step adds, divided by the batch's
                    target tokens like the NLL (the authors' code: summed NLL per caption plus
                    this, averaged over captions: the same ratio of the two terms)

Dropout (dropout_rate; the authors use 0.5) on the init MLP's hidden layers, on h_t before the
readout and on the readout. Differences from the paper: the first step reads a BOS embedding
where the authors' code reads a zero vector; our frontends train from scratch (no ImageNet
VGG offline), unless model.frontend_init names weights (seq2seq_jax/trainer/frontend_weights.py).

Fields (config.model.*): emb_dim (word embedding and readout width m), hidden_dim (LSTM units
n), context_dim (annotation width D), attention_dim (0 = D), attention_layers, init_layers,
selector (beta), prev2out, ctx2out, doubly_stochastic (lambda; 0 = off), dropout_rate,
frontend (its name and settings, seq2seq_jax/models/frontends/; default the cnn with
64-128-256-512 channels), dtype, remat (each decoder step
rematerialised), max_len (unused).
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import base
from seq2seq_jax.models import frontends
from seq2seq_jax.models import layers
from seq2seq_jax.models.registry import freeze
from seq2seq_jax.models.rnn.cells import make_cell


def _dense(features: int, names, dtype, name: str, use_bias: bool = True) -> nn.Module:
  return layers.dense(features, names, use_bias=use_bias, dtype=dtype, name=name)


class _Step(nn.Module):
  """One decoder step: (carry {h, c}, E y_{t-1}, source) -> (carry, (h_t, z_t, alpha_t))."""
  hidden: int
  attention_dim: int
  selector: bool
  dtype: Any

  @nn.compact
  def __call__(self, carry, y_emb, source):
    h_prev = carry['h']
    q = _dense(self.attention_dim, ('hidden', 'kv'), self.dtype, 'att_query',
               use_bias=False)(h_prev)
    w = self.param('att_v', layers.partitioned(nn.initializers.normal(
        self.attention_dim ** -0.5), ('kv',)), (self.attention_dim,), jnp.float32)
    b = self.param('att_b', layers.partitioned(nn.initializers.zeros_init(), (None,)), (1,),
                   jnp.float32)
    scores = jnp.tanh(source['keys'] + q[:, None, :]) @ w.astype(self.dtype)
    scores = jnp.where(source['mask'], scores.astype(jnp.float32) + b, layers.NEG_INF)
    alpha = jax.nn.softmax(scores, axis=-1)
    z = jnp.einsum('bl,bld->bd', alpha.astype(self.dtype), source['memory'],
                   preferred_element_type=jnp.float32)
    if self.selector:
      beta = jax.nn.sigmoid(_dense(1, ('hidden', None), self.dtype, 'beta')(h_prev)
                            .astype(jnp.float32))
      z = beta * z
    x = jnp.concatenate([y_emb.astype(jnp.float32), z], -1)
    cell = make_cell('lstm', self.hidden, x.shape[-1], None, self.dtype, 'lstm')
    new = cell(carry, x)
    return new, (new['h'], z, alpha)


@functools.lru_cache(maxsize=None)
def _scan(remat: str):
  return nn.scan(layers.remat(_Step, remat), variable_broadcast='params',
                 split_rngs={'params': False}, in_axes=(1, nn.broadcast), out_axes=1)


class Model(base.ModelDefaults, nn.Module):
  """Show, Attend and Tell; the module docstring documents every field."""
  src_vocab_size: int
  tgt_vocab_size: int
  emb_dim: int = 512
  hidden_dim: int = 1800
  context_dim: int = 512
  attention_dim: int = 0
  attention_layers: int = 2
  init_layers: int = 2
  selector: bool = True
  prev2out: bool = True
  ctx2out: bool = True
  doubly_stochastic: float = 1.0
  dropout_rate: float = 0.5
  max_len: int = 64
  dtype: str = 'float32'
  remat: str = 'none'
  frontend: Any = freeze(dict(name='cnn', channels=(64, 128, 256, 512)))

  def setup(self):
    if self.remat not in layers.REMAT:
      raise UserError(f'model.remat must be one of {layers.REMAT}, got {self.remat!r}')
    if min(self.emb_dim, self.hidden_dim, self.context_dim, self.attention_layers,
           self.init_layers) < 1:
      raise UserError('model emb_dim, hidden_dim, context_dim, attention_layers and '
                      'init_layers must be positive')
    if frontends.name_of(self.frontend) == 'tokens':
      raise UserError("show_attend_tell attends over annotation vectors: model.frontend must "
                      "be 'cnn', 'patches' or 'audio_conv'")
    dt = layers.dtype_of(self.dtype)
    self._dt = dt
    att = self.attention_dim or self.context_dim
    self.frontend_module = frontends.build(
        self.frontend, features=self.context_dim, dtype=dt, module_name='frontend')
    self.tgt_embed = layers.Embed(self.tgt_vocab_size, self.emb_dim, dtype=dt)
    d = self.context_dim
    self.init_hidden = [_dense(d, ('embed', 'hidden'), dt, f'init_{i}')
                        for i in range(self.init_layers - 1)]
    self.init_h = _dense(self.hidden_dim, ('embed', 'hidden'), dt, 'init_h')
    self.init_c = _dense(self.hidden_dim, ('embed', 'hidden'), dt, 'init_c')
    self.keys = [_dense(att, ('embed', 'kv') if i == 0 else (None, 'kv'), dt, f'att_key_{i}')
                 for i in range(self.attention_layers)]
    self.out_h = _dense(self.emb_dim, ('hidden', 'embed'), dt, 'out_h')
    if self.ctx2out:
      self.out_z = _dense(self.emb_dim, ('hidden', 'embed'), dt, 'out_z')
    self.out_proj = _dense(self.tgt_vocab_size, ('embed', 'vocab'), dt, 'out_proj')
    self.drop = nn.Dropout(self.dropout_rate)

  # --- encoder side -------------------------------------------------------------------------
  def encode(self, inputs, *, inputs_mask=None, train: bool = False):
    """-> (source {'memory' [B, L, D], 'keys' [B, L, A], 'mask' [B, L]}, carry {h, c})."""
    a, mask = self.frontend_module(inputs, inputs_mask, train=train)
    a = layers.constrain(a, ('batch', 'length', 'embed'))
    m = (jnp.sum(a.astype(jnp.float32) * mask[..., None], 1)
         / jnp.maximum(jnp.sum(mask, 1, keepdims=True), 1))
    for layer in self.init_hidden:
      m = self.drop(nn.relu(layer(m)), deterministic=not train)
    carry = {'c': jnp.tanh(self.init_c(m)).astype(jnp.float32),
             'h': jnp.tanh(self.init_h(m)).astype(jnp.float32)}
    keys = a
    for i, layer in enumerate(self.keys):
      keys = layer(keys)
      if i < len(self.keys) - 1:
        keys = jnp.tanh(keys)
    return {'memory': a, 'keys': keys, 'mask': mask}, carry

  @nn.compact
  def _decode(self, carry, y_emb, source):
    return _scan(self.remat)(self.hidden_dim, self.attention_dim or self.context_dim,
                             self.selector, self._dt, name='decoder')(carry, y_emb, source)

  def _logits(self, h, z, y_emb, train: bool):
    out = self.out_h(self.drop(h, deterministic=not train))
    if self.prev2out:
      out = out + y_emb
    if self.ctx2out:
      out = out + self.out_z(z)
    out = self.drop(jnp.tanh(out), deterministic=not train)
    return layers.constrain(self.out_proj(out).astype(jnp.float32), ('batch', 'length', 'vocab'))

  # --- the model contract (seq2seq_jax/models/__init__.py) ---------------------------------
  def __call__(self, batch: dict[str, jax.Array], *, train: bool = False) -> jax.Array:
    """Teacher forcing: logits float32 [B, T, V]. Sows the attention weights [B, T, L]
    ('intermediates'/'attention_weights') and, in training, the doubly stochastic penalty
    summed over the batch ('losses')."""
    source, carry = self.encode(batch['inputs'], inputs_mask=batch.get('inputs_mask'),
                                train=train)
    y = self.tgt_embed(batch['decoder_inputs'])
    _, (h, z, alpha) = self._decode(carry, y, source)
    self.sow('intermediates', 'attention_weights', alpha)
    if train and self.doubly_stochastic:
      steps = (batch['decoder_inputs'] > 0).astype(jnp.float32)       # real target positions
      total = jnp.einsum('bt,btl->bl', steps, alpha)
      penalty = jnp.sum(jnp.square(1.0 - total) * source['mask'])
      self.sow('losses', 'doubly_stochastic', self.doubly_stochastic * penalty)
    return self._logits(h, z, y, train)

  def init_cache(self, inputs, max_len: int, beam_size: int = 1, inputs_mask=None):
    del max_len, beam_size
    source, carry = self.encode(inputs, inputs_mask=inputs_mask, train=False)
    return {'source': source, 'carry': carry}

  def decode_step(self, last_tokens, cache):
    y = self.tgt_embed(last_tokens[:, None])
    carry, (h, z, _) = self._decode(cache['carry'], y, cache['source'])
    return self._logits(h, z, y, False)[:, 0], {'source': cache['source'], 'carry': carry}
