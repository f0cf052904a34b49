"""Recurrent encoder-decoders: Sutskever et al. 2014, Bahdanau et al. 2015, Luong et al. 2015.

One `Model`, configured to each paper:
  attention='none'      Sutskever et al. 2014: the decoder starts from the encoder's final
                        states (bridge='final') and sees no other source information.
  attention='bahdanau'  RNNsearch (Bahdanau et al. 2015): the previous decoder state queries
                        the annotations; the context is fed into the recurrence; readout from
                        [s_{i-1}, E y_{i-1}, c_i] with maxout (App. A.2.2), bridge='dense'.
  attention='dot' | 'general' | 'concat'
                        Luong et al. 2015 global attention: the current top state queries;
                        h~_t = tanh(W_c [c_t; h_t]) (Eq. 5) is the output and, with
                        input_feeding, is fed to the next step's input (Sec. 3.3).

Fields (config.model.*):
  cell               'lstm' | 'gru'
  emb_dim            token embedding size (source and target)
  hidden_dim         encoder RNN size per direction
  decoder_hidden_dim decoder RNN size; 0 -> encoder output size (2*hidden_dim if bidirectional)
  encoder_layers, decoder_layers
  bidirectional      every encoder layer reads both directions; outputs are concatenated
  reverse_source     reverse each source sentence (Sutskever et al. 2014, Sec. 3.3)
  dropout_rate       between stacked layers and before the readout (Zaremba et al. 2014)
  residual           residual connections between stacked layers of equal size from the
                     second layer up (Wu et al. 2016, GNMT, Sec. 3.1 uses them from the third)
  attention          one of attention.ATTENTION_TYPES
  attention_dim      additive scorer size; 0 -> decoder_hidden_dim
  input_feeding      Luong-style input feeding (ignored by 'none' and 'bahdanau')
  readout            'linear' | 'maxout' (pool size 2, Goodfellow et al. 2013)
  readout_dim        size before the vocabulary projection; 0 -> decoder size
  bridge             'none' (zeros) | 'final' (copy the encoder's final states, layer by
                     layer) | 'dense' (tanh(W h_1 backward), Bahdanau et al. App. A.2.2)
  tie_output         vocabulary projection = target embedding (needs readout_dim == emb_dim)
  init_scale         >0: every parameter uniform in [-s, s] (Sutskever 0.08; Luong 0.1)
  max_len, dtype

Padding never changes results: encoder carries are frozen on padded steps, the backward
direction starts at each sentence's last real token, and padded positions are masked out of
attention. The decoder is one cell `nn.scan`-ed over time for teacher forcing and run for a
single step in `decode_step`, so both paths compute exactly the same function.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import attention as attn_lib
from seq2seq_jax.models import layers
from seq2seq_jax.models.layers import constrain


def reverse_valid(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Reverses the first `lengths[b]` positions of each row of x [B, T, ...]; padding stays."""
  t = jnp.arange(x.shape[1])[None, :]
  idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


class _MaskedStep(nn.Module):
  """One time step of a cell that keeps its carry unchanged where mask is False."""
  cell: str
  hidden: int
  init_fn: Any
  dtype: Any

  @nn.compact
  def __call__(self, carry, inputs):
    x, m = inputs
    new = attn_lib.make_cell(self.cell, self.hidden, self.init_fn, self.dtype)(carry, x)
    carry = jax.tree.map(lambda n, o: jnp.where(m[:, None], n, o), new, carry)
    return carry, carry['h'] * m[:, None].astype(carry['h'].dtype)


_ScanStep = nn.scan(_MaskedStep, variable_broadcast='params', split_rngs={'params': False},
                    in_axes=1, out_axes=1)


class EncoderLayer(nn.Module):
  cell: str
  hidden: int
  bidirectional: bool
  init_fn: Any
  dtype: Any

  @nn.compact
  def __call__(self, x, mask, lengths):
    """Returns outputs [B, S, H or 2H] and final carries (forward, backward or None)."""
    zero = attn_lib.zero_carry(self.cell, x.shape[0], self.hidden, self.dtype)
    fwd_carry, fwd = _ScanStep(self.cell, self.hidden, self.init_fn, self.dtype, name='fwd')(
        zero, (x, mask))
    if not self.bidirectional:
      return fwd, (fwd_carry, None)
    bwd_carry, bwd = _ScanStep(self.cell, self.hidden, self.init_fn, self.dtype, name='bwd')(
        zero, (reverse_valid(x, lengths), mask))
    return jnp.concatenate([fwd, reverse_valid(bwd, lengths)], -1), (fwd_carry, bwd_carry)


class DecoderCell(nn.Module):
  """One decoder time step, shared by teacher forcing (scanned) and decode_step."""
  cell: str
  hidden: int
  num_layers: int
  attention: str
  attention_dim: int
  input_feeding: bool
  readout: str
  readout_dim: int
  residual: bool
  dropout_rate: float
  deterministic: bool
  init_fn: Any
  dtype: Any

  @nn.compact
  def __call__(self, carry, y_emb, memory, keys, mask):
    drop = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
    att = (None if self.attention == 'none' else
           attn_lib.Attention(self.attention, self.hidden, self.attention_dim, self.init_fn,
                              self.dtype, name='attention'))
    states = list(carry['layers'])
    x = y_emb
    context = None
    if self.attention == 'bahdanau':  # query with the previous top state (Eq. 6)
      context, _ = att(states[-1]['h'], keys, memory, mask)
      x = jnp.concatenate([x, context], -1)
    elif self.attention != 'none' and self.input_feeding:
      x = jnp.concatenate([x, carry['feed']], -1)
    prev_top = states[-1]['h']
    for i in range(self.num_layers):
      inp = drop(x) if i else x
      new = attn_lib.make_cell(self.cell, self.hidden, self.init_fn, self.dtype)(states[i], inp)
      states[i] = new
      x = new['h'] + x if (self.residual and i and x.shape[-1] == self.hidden) else new['h']
    dense = lambda n, name, bias=True: layers.dense(n, ('hidden', 'embed'), use_bias=bias,
                                                    dtype=self.dtype, init=self.init_fn, name=name)
    feed = carry.get('feed')
    if self.attention == 'bahdanau':
      out = (dense(self.readout_width, 'readout_state')(prev_top)
             + dense(self.readout_width, 'readout_embed', False)(y_emb)
             + dense(self.readout_width, 'readout_context', False)(context))
    elif self.attention == 'none':
      out = x
      if self.readout == 'maxout' or self.readout_dim:
        out = dense(self.readout_width, 'readout')(x)
    else:  # Luong: h~_t = tanh(W_c [c_t; h_t]) (Eq. 5)
      context, _ = att(x, keys, memory, mask)
      out = jnp.tanh(dense(self.readout_width, 'combine', False)(
          jnp.concatenate([context, x], -1)))
      feed = out if self.readout != 'maxout' else _maxout(out)
    if self.readout == 'maxout':
      out = _maxout(out)
    new_carry = {'layers': tuple(states)}
    if 'feed' in carry:
      new_carry['feed'] = feed
    return new_carry, drop(out)

  @property
  def readout_width(self) -> int:
    base = self.readout_dim or self.hidden
    return 2 * base if self.readout == 'maxout' else base


def _maxout(x: jax.Array) -> jax.Array:
  """Maxout with pool size 2 over adjacent units (Bahdanau et al. 2015, App. A.2.2)."""
  return jnp.max(x.reshape(x.shape[:-1] + (x.shape[-1] // 2, 2)), axis=-1)


_ScanDecoder = nn.scan(DecoderCell, variable_broadcast='params',
                       split_rngs={'params': False, 'dropout': True},
                       in_axes=(1, nn.broadcast, nn.broadcast, nn.broadcast), out_axes=1)


class Model(nn.Module):
  """RNN encoder-decoder; see the module docstring for every field."""
  src_vocab_size: int
  tgt_vocab_size: int
  cell: str = 'lstm'
  emb_dim: int = 256
  hidden_dim: int = 256
  decoder_hidden_dim: int = 0
  encoder_layers: int = 2
  decoder_layers: int = 2
  bidirectional: bool = True
  reverse_source: bool = False
  dropout_rate: float = 0.2
  residual: bool = False
  attention: str = 'general'
  attention_dim: int = 0
  input_feeding: bool = True
  readout: str = 'linear'
  readout_dim: int = 0
  bridge: str = 'none'
  tie_output: bool = False
  init_scale: float = 0.0
  max_len: int = 256
  dtype: str = 'float32'

  def _check(self):
    if self.cell not in ('lstm', 'gru'):
      raise UserError(f"model.cell must be 'lstm' or 'gru', got {self.cell!r}")
    if self.attention not in attn_lib.ATTENTION_TYPES:
      raise UserError(f'model.attention must be one of {attn_lib.ATTENTION_TYPES}, '
                      f'got {self.attention!r}')
    if self.readout not in ('linear', 'maxout'):
      raise UserError(f"model.readout must be 'linear' or 'maxout', got {self.readout!r}")
    if self.bridge not in ('none', 'final', 'dense'):
      raise UserError(f"model.bridge must be 'none', 'final' or 'dense', got {self.bridge!r}")
    if self.bridge == 'final':
      if self.encoder_layers != self.decoder_layers:
        raise UserError("bridge='final' needs as many encoder as decoder layers")
      if self.dec_hidden != self.enc_out:
        raise UserError(f"bridge='final' needs decoder_hidden_dim == encoder output size "
                        f'({self.enc_out})')
    if self.attention == 'dot' and self.dec_hidden != self.enc_out:
      raise UserError(f"attention='dot' needs decoder_hidden_dim == encoder output size "
                      f"({self.enc_out}); use 'general'")
    if self.tie_output and self.out_width != self.emb_dim:
      raise UserError(f'tie_output needs the readout size ({self.out_width}) == emb_dim')

  @property
  def enc_out(self) -> int:
    return self.hidden_dim * (2 if self.bidirectional else 1)

  @property
  def dec_hidden(self) -> int:
    return self.decoder_hidden_dim or self.enc_out

  @property
  def out_width(self) -> int:
    return self.readout_dim or self.dec_hidden

  def setup(self):
    self._check()
    dt = layers.dtype_of(self.dtype)
    init = _uniform(self.init_scale) if self.init_scale > 0 else None
    self._init = init
    self.src_embed = layers.Embed(self.src_vocab_size, self.emb_dim, dtype=dt, init_fn=init)
    self.tgt_embed = layers.Embed(self.tgt_vocab_size, self.emb_dim, dtype=dt, init_fn=init)
    self.encoder = [EncoderLayer(self.cell, self.hidden_dim, self.bidirectional, init, dt)
                    for _ in range(self.encoder_layers)]
    if self.bridge == 'dense':
      self.bridge_proj = [layers.dense(self.dec_hidden, ('hidden', 'embed'), dtype=dt,
                                       init=init) for _ in range(self.decoder_layers)]
    if self.attention in ('bahdanau', 'concat', 'general'):
      # U h_j (additive, Bahdanau Eq. A.1.2 / Luong concat) or W h_j (Luong general).
      width = self.dec_hidden if self.attention == 'general' else (self.attention_dim
                                                                    or self.dec_hidden)
      self.key_proj = layers.dense(width, ('hidden', 'kv'), use_bias=False, dtype=dt,
                                   init=init, name='attention_keys')
    if not self.tie_output:
      self.out_proj = layers.dense(self.tgt_vocab_size, ('embed', 'vocab'), dtype=dt, init=init)
    self.drop = nn.Dropout(self.dropout_rate)

  # --- encoder ----------------------------------------------------------------------
  def encode(self, inputs, *, train: bool = False):
    """Returns (memory [B, S, enc_out], mask [B, S], per-layer final carries)."""
    mask = inputs > 0
    lengths = jnp.sum(mask, axis=1).astype(jnp.int32)
    if self.reverse_source:
      inputs = reverse_valid(inputs, lengths)
    x = self.src_embed(inputs)
    finals = []
    for i, layer in enumerate(self.encoder):
      inp = self.drop(x, deterministic=not train) if i else x
      out, carries = layer(inp, mask, lengths)
      x = out + x if (self.residual and i and out.shape[-1] == x.shape[-1]) else out
      x = constrain(x, ('batch', 'length', 'hidden'))
      finals.append(carries)
    return x, mask, finals

  def _initial_carry(self, memory, finals):
    b = memory.shape[0]
    zero = attn_lib.zero_carry(self.cell, b, self.dec_hidden, memory.dtype)
    states = []
    for i in range(self.decoder_layers):
      if self.bridge == 'final':
        fwd, bwd = finals[i]
        states.append(fwd if bwd is None else jax.tree.map(
            lambda a, c: jnp.concatenate([a, c], -1), fwd, bwd))
      elif self.bridge == 'dense':
        fwd, bwd = finals[min(i, len(finals) - 1)]
        src = (bwd or fwd)['h']   # h_1 backward: the backward RNN's state at the first word
        state = dict(zero)
        state['h'] = jnp.tanh(self.bridge_proj[i](src))
        states.append(state)
      else:
        states.append(zero)
    carry = {'layers': tuple(states)}
    if self.attention not in ('none', 'bahdanau') and self.input_feeding:
      width = self.out_width
      carry['feed'] = jnp.zeros((b, width), memory.dtype)
    return carry

  def _keys(self, memory):
    """Source-side attention projections, computed once per sentence."""
    if self.attention in ('none', 'dot'):
      return memory[:, :, :0] if self.attention == 'none' else memory
    return self.key_proj(memory)

  # --- the contract -------------------------------------------------------------------
  @nn.compact
  def _decode(self, carry, y_emb, memory, keys, mask, train: bool):
    """Runs the decoder cell over y_emb [B, T, E] (T = 1 in decode_step)."""
    scanned = _ScanDecoder(
        self.cell, self.dec_hidden, self.decoder_layers, self.attention,
        self.attention_dim or self.dec_hidden, self.input_feeding, self.readout,
        self.readout_dim, self.residual, self.dropout_rate, not train, self._init,
        layers.dtype_of(self.dtype), name='decoder')
    return scanned(carry, y_emb, memory, keys, mask)

  def _logits(self, out):
    logits = self.tgt_embed.attend(out) if self.tie_output else self.out_proj(out)
    return constrain(logits.astype(jnp.float32), ('batch', 'length', 'vocab'))

  def __call__(self, batch, *, train: bool = False):
    if 'inputs_segmentation' in batch:
      raise UserError('RNN models do not read packed batches; set data.packing=False')
    memory, mask, finals = self.encode(batch['inputs'], train=train)
    carry = self._initial_carry(memory, finals)
    y = self.tgt_embed(batch['decoder_inputs'])
    _, out = self._decode(carry, y, memory, self._keys(memory), mask, train)
    return self._logits(out)

  def init_cache(self, inputs, max_len: int):
    del max_len  # the recurrent state has a fixed size
    memory, mask, finals = self.encode(inputs, train=False)
    return {'memory': memory, 'keys': self._keys(memory), 'mask': mask,
            'carry': self._initial_carry(memory, finals)}

  def decode_step(self, last_tokens, cache):
    y = self.tgt_embed(last_tokens[:, None])
    carry, out = self._decode(cache['carry'], y, cache['memory'], cache['keys'], cache['mask'],
                              False)
    return self._logits(out)[:, 0], {**cache, 'carry': carry}


def _uniform(scale: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init

