"""Recurrent encoder-decoders: Sutskever et al. 2014, Cho et al. 2014, Bahdanau et al. 2015 and
Luong et al. 2015 as one `Model`, configured per paper (experiments/wmt14_*).

  attention='none'      Sutskever et al. 2014 (Sec. 2): the decoder sees the source only through
                        its initial state, the encoder's final state (bridge='final').
                        With feed_context: Cho et al. 2014 (Sec. 2.2): a fixed context c also
                        enters every decoder step and the readout, h_t = f(h_{t-1}, y_{t-1}, c),
                        p(y_t | ...) = g(h_t, y_{t-1}, c). Here c is the top encoder layer's
                        final state ([forward; backward] if bidirectional); Cho et al. squash it
                        once more, c = tanh(V h_N), which we leave out.
  attention='bahdanau'  RNNsearch (Bahdanau et al. 2015, App. A.2.2): the previous state s_{i-1}
                        queries the annotations, c_i enters the recurrence, the readout reads
                        [s_{i-1}, E y_{i-1}, c_i] (maxout), s_0 = tanh(W_s h_1 backward).
  attention='see'       the pointer-generator's baseline (See et al. 2017, Sec. 2.1 and their
                        code): x_t = W [E y_{t-1}; h*_{t-1}] + b enters the LSTM; the new state
                        s_t = [c_t; h_t] queries additively (Eq. 1); the output V [h_t; h*_t] + b
                        (no squashing) feeds the vocabulary projection (Eq. 4).
  attention='dot' | 'general' | 'concat'
                        Luong et al. 2015 global attention (Sec. 3.1): the new top state h_t
                        queries; h~_t = tanh(W_c [c_t; h_t]) (Eq. 5) feeds the softmax (Eq. 6)
                        and, with input_feeding, the next step's first layer (Sec. 3.3).

Fields (config.model.*):
  src_vocab_size, tgt_vocab_size  from the task (build_model passes them first)
  cell               'lstm' | 'gru'
  emb_dim            source and target embedding size
  hidden_dim         encoder cells per layer and direction
  decoder_hidden_dim decoder cells per layer; 0 -> the encoder's output size (2 * hidden_dim
                     if bidirectional)
  encoder_layers, decoder_layers
  bidirectional      every encoder layer reads both ways; its outputs are [forward; backward]
  reverse_source     reverse the real tokens of each source (Sutskever et al. 2014, Sec. 3.3);
                     padding stays at the end
  dropout_rate       on the non-recurrent connections: every layer's input (embeddings
                     included) and the readout (Zaremba et al. 2014, Sec. 3; Luong Sec. 4.1)
  residual           layers from the third up add their input to their output,
                     x_{l+1} = RNN_l(x_l) + x_l (Wu et al. 2016, GNMT, Sec. 3.1 and Fig. 1)
  attention          'none' | 'bahdanau' | 'dot' | 'general' | 'concat' | 'see'
  attention_dim      additive scorer size for bahdanau/concat/see; 0 -> decoder size
  input_feeding      Luong Sec. 3.3: h~_{t-1} joins the first layer's input (dot/general/concat
                     only; ignored otherwise)
  feed_context       Cho et al. 2014 fixed context at every step (attention='none' only)
  readout            'linear' | 'maxout' (pool 2: Goodfellow et al. 2013; Bahdanau App. A.2.2)
  readout_dim        units the vocabulary projection reads (after maxout); 0 -> decoder size
                     (with attention='none' and a linear readout: no layer in between)
  bridge             the decoder's initial state: 'none' zeros | 'final' the encoder's final
                     states layer by layer ([h_N forward; h_1 backward] if bidirectional;
                     Sutskever) | 'dense' tanh(W h), h = h_1 backward (Bahdanau App. A.2.2;
                     h_N forward if unidirectional) of the encoder layer at the same height
                     counted from the top (the bottom one for extra decoder layers), or h = c
                     with feed_context (Cho et al. 2014, App. A); LSTM memory cells start at 0
                     | 'reduce' ReLU(W [fwd; bwd] + b) of the final c and of the final h, each
                     with its own W (See et al. 2017's code: "reduce_final_st")
  tie_output         vocabulary projection = target embedding^T (needs readout size == emb_dim)
  init_scale         > 0: every parameter ~ U[-s, s] (Sutskever Sec. 3.4: 0.08; Luong Sec. 4.1:
                     0.1). 0: Xavier-uniform kernels, orthogonal recurrent blocks, zero biases
  max_len            unused: the recurrent state has a fixed size
  frontend           what the encoder reads and its settings (seq2seq_jax/models/frontends/): a
                     name or a group with a name: 'tokens' (the source embedding), 'patches' |
                     'cnn' (images), 'audio_conv' (features), 'log_mel' (waveforms), e.g.
                     dict(name='log_mel', num_mels=80); every frontend gives emb_dim-wide
                     vectors, which the encoder layers read as they read embeddings
  share_embeddings   one table embeds source and target tokens (needs one vocabulary)
  copy               the pointer-generator (See et al. 2017, Sec. 2.2): p_gen = s(w [h*_t; s_t;
                     x_t] + b) mixes the vocabulary distribution with the attention over the
                     source positions, P(w) = p_gen P_vocab(w) + (1 - p_gen) sum_{i: w_i = w} a_i,
                     over an extended vocabulary: source ids >= tgt_vocab_size are a source's
                     OOV words (embedded as UNK, copied by id; the task assigns them). The model
                     then returns log P [B, T, tgt_vocab_size + max_oovs] as its logits, which
                     the loss and every search read as they read logits
  max_oovs           copy: temporary ids per source (the extended vocabulary's extra slots)
  coverage           coverage (See et al. 2017, Sec. 2.3): c^t = sum of past attention enters
                     every additive score (w_c c_i), and the loss gains coverage_loss_weight *
                     sum_t sum_i min(a_i^t, c_i^t) (Eq. 12; paper: 1.0), sown into 'losses'
  coverage_loss_weight
  pyramid            Listen, Attend and Spell's pyramidal listener (Chan et al. 2016, Eq. 5):
                     each of the top `pyramid` encoder layers reads the previous layer's
                     outputs at consecutive steps 2i and 2i+1 concatenated, so time halves per
                     layer (3: 8x); an odd last step pairs with zeros; lengths ceil(n / 2)
  ctc_weight         > 0: joint CTC-attention training (Kim, Hori and Watanabe 2017): a linear
                     CTC head on the encoder outputs (blank = the padding id 0), the loss
                     ctc_weight * CTC + (1 - ctc_weight) * attention cross entropy; the head
                     also decodes alone (decode.method='ctc_greedy')
  dtype              matmul dtype; parameters, recurrent states and gates stay float32
                     (set by config.dtype)
  remat              'none' | 'full' | 'dots' (layers.remat): each encoder and decoder time
                     step is rematerialised, so the backward pass keeps only the carries

Cells have one bias per gate (an LSTM layer: 4 * (h * (in + h) + h) parameters; cuDNN keeps two
bias vectors, 4h more, for the same function) and no peepholes (Sutskever et al. cite Graves
2013, whose LSTM has 3h peephole weights per layer: 24k of their 384M). The GRU applies the
reset gate before the recurrent product, U (r * h), as Cho et al. 2014 (Eq. 8) and Bahdanau
et al. (App. A.2.2) write it, not after it as cuDNN does.

Padding never changes results: encoder carries freeze on padded steps (the final state is the
state at the last real token), the backward direction starts at each sentence's last real
token, and attention gives padding zero weight. The decoder is one cell, `nn.scan`-ned over
time for teacher forcing and run for a single step by `decode_step`: both compute the same
function. Packed batches (several pairs per row) are refused: set data.packing=False.

Where the time goes (benchmarks/train_throughput.py --model=rnn; README "Recurrent models
against PyTorch"): matmuls are about two thirds of a training step. The input part of every
encoder gate is one matmul over the whole sentence; both encoder directions advance in one
scan step; the attention keys are projected once per sentence; additive attention scores are
rematerialised in the backward pass (attention.additive_scores), which keeps the step's
temporaries 43% smaller and the step faster.
"""
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.data.vocab import UNK_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import attention as attn_lib
from seq2seq_jax.models import frontends
from seq2seq_jax.models import layers
from seq2seq_jax.models.layers import constrain
from seq2seq_jax.models.registry import freeze

LUONG = ('dot', 'general', 'concat')


# --- cells ------------------------------------------------------------------------------
def _matmul(x: jax.Array, w: jax.Array, dtype) -> jax.Array:
  return jnp.dot(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


def _orthogonal_blocks(n: int) -> Callable:
  """Orthogonal init (Saxe et al. 2014) for each gate's [h, h] block of a fused kernel."""
  def init(key, shape, dtype=jnp.float32):
    rows, cols = shape
    blocks = [nn.initializers.orthogonal()(k, (rows, cols // n), dtype)
              for k in jax.random.split(key, n)]
    return jnp.concatenate(blocks, axis=1)
  return init


def lstm_step(u: jax.Array, carry: dict[str, jax.Array], xw: jax.Array,
              dtype) -> dict[str, jax.Array]:
  """c' = s(f) c + s(i) tanh(g), h' = s(o) tanh(c') with [i f g o] = xw + U h, xw = W x + b."""
  z = xw + _matmul(carry['h'], u, dtype)
  i, f, g, o = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f) * carry['c'] + jax.nn.sigmoid(i) * jnp.tanh(g)
  return {'c': c, 'h': jax.nn.sigmoid(o) * jnp.tanh(c)}


def gru_step(u: jax.Array, carry: dict[str, jax.Array], xw: jax.Array,
             dtype) -> dict[str, jax.Array]:
  """r, z = s(xw_rz + U_rz h); h~ = tanh(xw_n + U_n (r * h)); h' = z * h + (1 - z) * h~."""
  h = carry['h']
  n = h.shape[-1]
  xr, xz, xn = jnp.split(xw, 3, axis=-1)
  rz = _matmul(h, u[:, :2 * n], dtype)
  r = jax.nn.sigmoid(xr + rz[:, :n])
  z = jax.nn.sigmoid(xz + rz[:, n:])
  candidate = jnp.tanh(xn + _matmul(r * h, u[:, 2 * n:], dtype))
  return {'h': z * h + (1.0 - z) * candidate}


class _Cell(nn.Module):
  """A fused-gate recurrent cell split in two: `project` (the input part of every gate, W x + b,
  one matmul over a whole sequence in the encoder) and `step` (the recurrence, `recurrence`
  applied to the recurrent kernel U: a pure function, so a scan can run several cells)."""
  hidden: int
  in_features: int
  init_fn: Callable | None = None
  dtype: Any = jnp.float32
  num_gates = 0
  recurrence = None  # set by each cell class: a pure function (u, carry, xw, dtype) -> carry

  def setup(self):
    g = self.num_gates * self.hidden
    self.input_kernel = self.param('input_kernel', layers.partitioned(
        self.init_fn or layers.xavier(1, fused=self.num_gates), ('embed', 'gates')),
                                   (self.in_features, g), jnp.float32)
    self.recurrent_kernel = self.param('recurrent_kernel', layers.partitioned(
        self.init_fn or _orthogonal_blocks(self.num_gates), ('hidden', 'gates')),
                                       (self.hidden, g), jnp.float32)
    self.bias = self.param('bias', layers.partitioned(
        self.init_fn or nn.initializers.zeros_init(), ('gates',)), (g,), jnp.float32)

  def project(self, x: jax.Array) -> jax.Array:
    return _matmul(x, self.input_kernel, self.dtype) + self.bias

  def step(self, carry: dict[str, jax.Array], xw: jax.Array) -> dict[str, jax.Array]:
    return type(self).recurrence(self.recurrent_kernel, carry, xw, self.dtype)

  def __call__(self, carry, x):
    return self.step(carry, self.project(x))


class LSTMCell(_Cell):
  """c' = s(f) c + s(i) tanh(g), h' = s(o) tanh(c') with [i f g o] = W x + U h + b
  (the LSTM of Zaremba et al. 2014, Sec. 3, used by Luong et al.)."""
  num_gates = 4
  recurrence = staticmethod(lstm_step)


class GRUCell(_Cell):
  """Cho et al. 2014, Eq. 5-8: r, z = s(W x + U h + b); h~ = tanh(W x + U (r * h) + b);
  h' = z * h + (1 - z) * h~."""
  num_gates = 3
  recurrence = staticmethod(gru_step)


def make_cell(kind: str, hidden: int, in_features: int, init_fn, dtype, name: str) -> _Cell:
  cls = {'lstm': LSTMCell, 'gru': GRUCell}[kind]
  return cls(hidden, in_features, init_fn, dtype, name=name)


def zero_carry(kind: str, batch: int, hidden: int) -> dict[str, jax.Array]:
  """The all-zero float32 state: {'c', 'h'} for LSTM, {'h'} for GRU."""
  z = jnp.zeros((batch, hidden), jnp.float32)
  return {'c': z, 'h': z} if kind == 'lstm' else {'h': z}


# --- encoder ----------------------------------------------------------------------------
def reverse_valid(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Reverses the first lengths[b] positions of each row of x [B, T, ...]; padding stays."""
  t = jnp.arange(x.shape[1])[None, :]
  idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


class EncoderLayer(nn.Module):
  """One (bi)directional layer: x [B, S, in] -> outputs [B, S, H or 2H], final carries.

  Both directions run in one scan over time (each step advances the forward cell at t and the
  backward cell at S-1-t of the reversed sentence): half the sequential steps of two scans.
  The input part of every gate, W x + b, is one matmul over the whole sentence per direction.
  """
  cell: str
  hidden: int
  in_features: int
  bidirectional: bool
  init_fn: Callable | None
  dtype: Any
  remat: str = 'none'

  @nn.compact
  def __call__(self, x, mask, lengths):
    zero = zero_carry(self.cell, x.shape[0], self.hidden)
    # Backward: read each sentence from its last real token. Reversing the real tokens keeps
    # padding at the end, so the same mask applies; the outputs are reversed back.
    inputs = [x, reverse_valid(x, lengths)] if self.bidirectional else [x]
    cells = [make_cell(self.cell, self.hidden, self.in_features, self.init_fn, self.dtype, name)
             for name in ('fwd', 'bwd')[:len(inputs)]]
    xws = tuple(jnp.swapaxes(c.project(v), 0, 1) for c, v in zip(cells, inputs))  # [S, B, G]
    kernels = tuple(c.recurrent_kernel for c in cells)
    recurrence, dtype = type(cells[0]).recurrence, self.dtype

    def step(carries, step_inputs):
      # On padding (m False) a carry stays and the output is 0.
      xw_t, m = step_inputs
      keep = m[:, None]
      new = tuple(jax.tree.map(lambda n, o: jnp.where(keep, n, o),
                               recurrence(u, carry, xw, dtype), carry)
                  for u, carry, xw in zip(kernels, carries, xw_t))
      return new, tuple(c['h'] * keep for c in new)

    # Remat of one step keeps only the carries per time step; the gates are recomputed.
    finals, outs = jax.lax.scan(layers.remat_fn(step, self.remat), (zero,) * len(cells),
                                (xws, mask.T))
    outs = [jnp.swapaxes(o, 0, 1) for o in outs]
    if not self.bidirectional:
      return outs[0], (finals[0], None)
    return jnp.concatenate([outs[0], reverse_valid(outs[1], lengths)], -1), finals


# --- decoder ----------------------------------------------------------------------------
def _maxout(x: jax.Array) -> jax.Array:
  """Maxout with pool size 2 over adjacent units (Bahdanau et al. 2015, App. A.2.2)."""
  return jnp.max(x.reshape(x.shape[:-1] + (x.shape[-1] // 2, 2)), axis=-1)


class DecoderCell(nn.Module):
  """One decoder step: (carry, E y_{t-1} [B, E], source) -> (carry, readout [B, readout]).

  `source` holds what the encoder gives every step: {'memory', 'keys', 'mask'} with attention
  ('dot' has no separate keys), {'context'} for Cho et al., {} for Sutskever et al.
  """
  cell: str
  hidden: int
  num_layers: int
  attention: str
  attention_dim: int
  readout: str
  readout_dim: int
  residual: bool
  dropout_rate: float
  deterministic: bool
  init_fn: Callable | None
  dtype: Any
  copy: bool = False       # also return the copy attention and the p_gen logit
  coverage: bool = False   # carry 'coverage' (summed attention) into the scores

  @nn.compact
  def __call__(self, carry, y_emb, source):
    drop = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
    dense = functools.partial(layers.dense, names=('hidden', 'embed'), dtype=self.dtype,
                              init=self.init_fn)
    width = 2 * self.readout_dim if self.readout == 'maxout' else self.readout_dim
    attend = (None if self.attention == 'none' else attn_lib.Attention(
        self.attention, self.attention_dim, self.init_fn, self.dtype, name='attention'))
    states = list(carry['layers'])
    prev_top = states[-1]['h']
    context = source.get('context')          # Cho et al.: the fixed c
    keys = source.get('keys', source.get('memory'))
    coverage = carry.get('coverage')
    weights = None
    if self.attention == 'bahdanau':         # c_i from s_{i-1} (App. A.1.2)
      context, weights = attend(prev_top, keys, source['memory'], source['mask'], coverage)
    elif self.attention == 'see':            # x_t = W [E y_{t-1}; h*_{t-1}] + b
      y_emb = dense(y_emb.shape[-1], name='input_proj')(
          jnp.concatenate([y_emb, carry['context'].astype(y_emb.dtype)], -1))
    x = jnp.concatenate([y_emb] + [v for v in (context, carry.get('feed')) if v is not None], -1)
    for i in range(self.num_layers):
      cell = make_cell(self.cell, self.hidden, x.shape[-1], self.init_fn, self.dtype,
                       f'layer_{i}')
      states[i] = cell(states[i], drop(x))
      x = states[i]['h'] + x if (self.residual and i >= 2) else states[i]['h']
    new_carry = {'layers': tuple(states)}

    if self.attention in LUONG:              # h~_t = tanh(W_c [c_t; h_t]) (Eq. 5)
      context, weights = attend(x, keys, source['memory'], source['mask'], coverage)
      out = jnp.tanh(dense(width, use_bias=False, name='combine')(
          jnp.concatenate([context, x], -1)))
    elif self.attention == 'see':            # See et al. 2017, Eq. 1-4
      top = states[-1]                       # the query is the whole state s_t = (c_t, h_t)
      query = jnp.concatenate([top['c'], top['h']], -1) if 'c' in top else top['h']
      context, weights = attend(query, keys, source['memory'], source['mask'], coverage)
      out = dense(width, name='output')(jnp.concatenate([x, context.astype(x.dtype)], -1))
      new_carry['context'] = context
    elif context is not None:
      # Deep output from the state, the previous word and the context: Bahdanau (App. A.2.2)
      # reads s_{i-1}; Cho et al. (Sec. 2.2) read h_t.
      state = prev_top if self.attention == 'bahdanau' else x
      out = (dense(width, name='readout_state')(state)
             + dense(width, use_bias=False, name='readout_embed')(y_emb)
             + dense(width, use_bias=False, name='readout_context')(context))
    elif width != x.shape[-1] or self.readout == 'maxout':
      out = dense(width, name='readout')(x)
    else:                                    # Sutskever et al.: softmax on the top state
      out = x
    if self.readout == 'maxout':
      out = _maxout(out)
    if 'feed' in carry:                      # input feeding (Luong Sec. 3.3)
      new_carry['feed'] = out.astype(jnp.float32)
    if not (self.copy or self.coverage):
      return new_carry, drop(out)
    extras = {}
    if self.coverage:                        # See et al. 2017, Eq. 10 and 12
      extras['coverage_loss'] = jnp.sum(jnp.minimum(weights, coverage), axis=-1)
      new_carry['coverage'] = coverage + weights
    if self.copy:                            # See et al. 2017, Eq. 8: p_gen from h*_t, s_t, x_t
      top = states[-1]
      gen_in = [context, top['h']] + ([top['c']] if 'c' in top else []) + [y_emb]
      extras['attention'] = weights
      extras['p_gen_logit'] = dense(1, names=('embed', None), name='p_gen')(
          jnp.concatenate([v.astype(jnp.float32) for v in gen_in], -1))[..., 0].astype(
              jnp.float32)
    return new_carry, (drop(out), extras)


@functools.lru_cache(maxsize=None)
def _scan_decoder(remat: str):
  # Attention weights sown at each step stack along time (axis 1), as the outputs do.
  return nn.scan(layers.remat(DecoderCell, remat), variable_broadcast='params',
                 variable_axes={'intermediates': 1},
                 split_rngs={'params': False, 'dropout': True},
                 in_axes=(1, nn.broadcast), out_axes=1)


# --- model ------------------------------------------------------------------------------
class Model(nn.Module):
  """RNN encoder-decoder; the module docstring documents every field."""
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
  feed_context: bool = False
  readout: str = 'linear'
  readout_dim: int = 0
  bridge: str = 'none'
  tie_output: bool = False
  init_scale: float = 0.0
  max_len: int = 256
  dtype: str = 'float32'
  remat: str = 'none'
  frontend: Any = freeze('tokens')  # models/frontends/: what the encoder reads, and its settings
  pyramid: int = 0              # the top `pyramid` encoder layers halve time (LAS pBLSTM)
  ctc_weight: float = 0.0       # joint CTC-attention: weight of a CTC head on the encoder
  share_embeddings: bool = False  # one table embeds source and target tokens (same vocabulary)
  copy: bool = False            # pointer-generator (See et al. 2017): copy source tokens
  max_oovs: int = 0             # copy: temporary ids per source for its OOV words
  coverage: bool = False        # coverage attention and loss (See et al. 2017, Sec. 2.3)
  coverage_loss_weight: float = 1.0

  @property
  def enc_out(self) -> int:
    return self.hidden_dim * (2 if self.bidirectional else 1)

  @property
  def dec_hidden(self) -> int:
    return self.decoder_hidden_dim or self.enc_out

  @property
  def out_width(self) -> int:
    return self.readout_dim or self.dec_hidden

  @property
  def _tokens(self) -> bool:
    return frontends.name_of(self.frontend) == 'tokens'

  @property
  def _feeds(self) -> bool:
    return self.input_feeding and self.attention in LUONG

  @property
  def _cho(self) -> bool:
    return self.feed_context and self.attention == 'none'

  def _check(self):
    choices = dict(cell=('lstm', 'gru'), attention=attn_lib.ATTENTION_TYPES,
                   readout=('linear', 'maxout'), bridge=('none', 'final', 'dense', 'reduce'))
    choices['remat'] = layers.REMAT
    for field, allowed in choices.items():
      if getattr(self, field) not in allowed:
        raise UserError(f'model.{field} must be one of {allowed}, got {getattr(self, field)!r}')
    if min(self.encoder_layers, self.decoder_layers, self.hidden_dim, self.emb_dim) < 1:
      raise UserError('model layers, hidden_dim and emb_dim must be positive')
    if self.bridge == 'final' and (self.encoder_layers != self.decoder_layers
                                   or self.dec_hidden != self.enc_out):
      raise UserError(f"bridge='final' needs encoder_layers == decoder_layers and "
                      f'decoder_hidden_dim == the encoder output size ({self.enc_out})')
    if self.attention == 'dot' and self.dec_hidden != self.enc_out:
      raise UserError(f"attention='dot' needs decoder_hidden_dim == the encoder output size "
                      f"({self.enc_out}); 'general' has no such constraint")
    if (self.copy or self.share_embeddings) and (
        not self._tokens or self.src_vocab_size != self.tgt_vocab_size):
      raise UserError('model.copy and model.share_embeddings need token inputs and one '
                      f'vocabulary for both sides (sizes {self.src_vocab_size}, '
                      f'{self.tgt_vocab_size})')
    if self.copy and (self.attention == 'none' or self.max_oovs < 1):
      raise UserError('model.copy needs an attention (it copies by the attention weights) '
                      f'and model.max_oovs >= 1, got {self.attention!r}, {self.max_oovs}')
    if self.coverage and self.attention not in attn_lib.ADDITIVE:
      raise UserError(f'model.coverage needs an additive attention {attn_lib.ADDITIVE}, '
                      f'got {self.attention!r}')
    if self.tie_output and self.out_width != self.emb_dim:
      raise UserError(f'tie_output needs the readout size ({self.out_width}) == emb_dim')
    if not 0 <= self.pyramid < self.encoder_layers:
      raise UserError(f'model.pyramid must be in [0, encoder_layers) (the bottom layer reads '
                      f'the frontend), got {self.pyramid} with {self.encoder_layers} layers')
    if self.pyramid and self.residual:
      raise UserError('model.pyramid and model.residual do not combine (a pyramid layer '
                      'changes the length)')
    if not 0.0 <= self.ctc_weight < 1.0:
      raise UserError(f'model.ctc_weight must be in [0, 1), got {self.ctc_weight}')

  def setup(self):
    self._check()
    dt = layers.dtype_of(self.dtype)
    init = _uniform(self.init_scale) if self.init_scale > 0 else None
    self._init, self._dt = init, dt
    # The token frontend keeps the name 'src_embed' (checkpoints and initial values).
    self.src_embed = None if self.share_embeddings else frontends.build(
        self.frontend, vocab_size=self.src_vocab_size, features=self.emb_dim, dtype=dt,
        init_fn=init, module_name='src_embed' if self._tokens else 'frontend')
    self.tgt_embed = layers.Embed(self.tgt_vocab_size, self.emb_dim, dtype=dt, init_fn=init)
    self.encoder = [EncoderLayer(self.cell, self.hidden_dim, self.emb_dim if i == 0 else
                                 self.enc_out * (2 if self._pyramid(i) else 1),
                                 self.bidirectional, init, dt, self.remat)
                    for i in range(self.encoder_layers)]
    if self.ctc_weight > 0:
      self.ctc_proj = layers.dense(self.tgt_vocab_size, ('embed', 'vocab'), dtype=dt, init=init)
    if self.bridge == 'dense':
      self.bridge_proj = [layers.dense(self.dec_hidden, ('hidden', 'embed'), dtype=dt, init=init)
                          for _ in range(self.decoder_layers)]
    if self.bridge == 'reduce':
      self.reduce_proj = [{k: layers.dense(self.dec_hidden, ('hidden', 'embed'), dtype=dt,
                                           init=init)
                           for k in zero_carry(self.cell, 1, 1)}
                          for _ in range(self.decoder_layers)]
    if self.attention not in ('none', 'dot'):
      self.source_keys = attn_lib.SourceKeys(attn_lib.key_width(
          self.attention, self.dec_hidden, self.attention_dim or self.dec_hidden), init, dt)
    if not self.tie_output:
      self.out_proj = layers.dense(self.tgt_vocab_size, ('embed', 'vocab'), dtype=dt, init=init)
    self.drop = nn.Dropout(self.dropout_rate)

  def encode(self, inputs: jax.Array, *, inputs_mask: jax.Array | None = None,
             train: bool = False):
    """inputs (what model.frontend reads: ids [B, S], features [B, T, F] with inputs_mask,
    images [B, H, W, C]) -> (memory [B, S', enc_out], mask [B, S'], per-layer final carries).
    """
    if self._tokens:
      mask = inputs > 0
      lengths = jnp.sum(mask, axis=1).astype(jnp.int32)
      if self.reverse_source:
        inputs = reverse_valid(inputs, lengths)
      x = (self.tgt_embed if self.share_embeddings else self.src_embed).embed(
          self._in_vocab(inputs))
    else:
      x, mask = self.src_embed(inputs, inputs_mask, train=train)
      lengths = jnp.sum(mask, axis=1).astype(jnp.int32)
      if self.reverse_source:
        x = reverse_valid(x, lengths)
    finals = []
    for i, layer in enumerate(self.encoder):
      if self._pyramid(i):
        x, mask = pyramid_halve(x, mask)
        lengths = jnp.sum(mask, axis=1).astype(jnp.int32)
      out, final = layer(self.drop(x, deterministic=not train), mask, lengths)
      x = out + x if (self.residual and i >= 2) else out
      x = constrain(x.astype(self._dt), ('batch', 'length', 'embed'))
      finals.append(final)
    return x, mask, finals

  def _pyramid(self, layer: int) -> bool:
    return layer >= self.encoder_layers - self.pyramid

  def ctc_logits(self, inputs: jax.Array, inputs_mask: jax.Array | None = None,
                 memory=None, mask=None) -> tuple[jax.Array, jax.Array]:
    """The CTC head: (logits float32 [B, S', tgt_vocab_size], mask [B, S'])."""
    if self.ctc_weight <= 0:
      raise UserError("model.ctc_weight is 0: the model has no CTC head (decode.method="
                      "'ctc_greedy' and decode.ctc_weight need one)")
    if memory is None:
      memory, mask, _ = self.encode(inputs, inputs_mask=inputs_mask, train=False)
    return self.ctc_proj(memory).astype(jnp.float32), mask

  def _in_vocab(self, ids: jax.Array) -> jax.Array:
    """Temporary copy ids (>= the vocabulary: a source's OOV words) embed as UNK."""
    return jnp.where(ids >= self.tgt_vocab_size, UNK_ID, ids) if self.copy else ids

  def _source(self, memory, mask, finals) -> dict[str, jax.Array]:
    """What every decoder step reads from the encoder."""
    if self.attention == 'dot':    # the keys are the annotations themselves
      return {'memory': memory, 'mask': mask}
    if self.attention != 'none':
      return {'memory': memory, 'keys': self.source_keys(memory), 'mask': mask}
    if self._cho:  # c: the top layer's final state(s)
      fwd, bwd = finals[-1]
      return {'context': fwd['h'] if bwd is None else jnp.concatenate([fwd['h'], bwd['h']], -1)}
    return {}

  def _initial_carry(self, batch: int, finals, source):
    zero = zero_carry(self.cell, batch, self.dec_hidden)
    states = []
    for i in range(self.decoder_layers):
      if self.bridge == 'final':
        fwd, bwd = finals[i]
        states.append(fwd if bwd is None else jax.tree.map(
            lambda a, b: jnp.concatenate([a, b], -1), fwd, bwd))
      elif self.bridge == 'reduce':   # See et al. 2017: ReLU(W [fwd; bwd] + b), for c and h
        fwd, bwd = finals[max(0, i + self.encoder_layers - self.decoder_layers)]
        both = fwd if bwd is None else jax.tree.map(lambda a, b: jnp.concatenate([a, b], -1),
                                                    fwd, bwd)
        states.append({k: jax.nn.relu(self.reduce_proj[i][k](v)).astype(jnp.float32)
                       for k, v in both.items()})
      elif self.bridge == 'dense':
        # Stacks aligned at the top: the top decoder layer reads the top encoder layer.
        fwd, bwd = finals[max(0, i + self.encoder_layers - self.decoder_layers)]
        h = source['context'] if self._cho else (fwd if bwd is None else bwd)['h']
        states.append({**zero, 'h': jnp.tanh(self.bridge_proj[i](h)).astype(jnp.float32)})
      else:
        states.append(zero)
    carry = {'layers': tuple(states)}
    if self._feeds:
      carry['feed'] = jnp.zeros((batch, self.out_width), jnp.float32)
    if self.coverage:
      carry['coverage'] = jnp.zeros(source['mask'].shape, jnp.float32)
    if self.attention == 'see':   # the previous context vector, fed to the next input
      carry['context'] = jnp.zeros((batch, self.enc_out), jnp.float32)
    return carry

  @nn.compact
  def _decode(self, carry, y_emb, source, train: bool):
    """Runs the decoder cell over y_emb [B, T, E] (T = 1 in decode_step)."""
    return _scan_decoder(self.remat)(
        self.cell, self.dec_hidden, self.decoder_layers, self.attention,
        self.attention_dim or self.dec_hidden, self.readout, self.out_width, self.residual,
        self.dropout_rate, not train, self._init, self._dt, copy=self.copy,
        coverage=self.coverage, name='decoder')(carry, y_emb, source)

  def _logits(self, out, source=None):
    """Vocabulary logits [B, T, V]; with copy, log-probabilities over the extended vocabulary
    [B, T, V + max_oovs] (`out` then carries the step's attention and p_gen logit)."""
    extras = None
    if isinstance(out, tuple):
      out, extras = out
    logits = self.tgt_embed.attend(out) if self.tie_output else self.out_proj(out)
    logits = constrain(logits.astype(jnp.float32), ('batch', 'length', 'vocab'))
    if not self.copy:
      return logits
    return layers.copy_log_probs(logits, extras['p_gen_logit'], extras['attention'],
                          source['ext_ids'], self.max_oovs)

  # --- the model contract (seq2seq_jax/models/__init__.py) ---------------------------------
  def __call__(self, batch: dict[str, jax.Array], *, train: bool = False) -> jax.Array:
    """Teacher forcing: logits float32 [B, T, tgt_vocab_size]."""
    if 'inputs_segmentation' in batch:
      raise UserError('RNN models read one sentence pair per row: set data.packing=False')
    memory, mask, finals = self.encode(batch['inputs'], inputs_mask=batch.get('inputs_mask'),
                                       train=train)
    if self.ctc_weight > 0:
      logits, _ = self.ctc_logits(None, memory=memory, mask=mask)
      if 'targets' in batch:
        self.sow('losses', 'ctc', self.ctc_weight * layers.ctc_loss_sum(
            logits, mask, batch['targets']))
    source = self._source_for(batch['inputs'], memory, mask, finals)
    carry = self._initial_carry(memory.shape[0], finals, source)
    _, out = self._decode(carry, self.tgt_embed(self._in_vocab(batch['decoder_inputs'])),
                          source, train)
    if self.coverage:
      # sum_t sum_i min(a_i^t, c_i^t) over real target steps (Eq. 12), summed over rows.
      steps = out[1]['coverage_loss'] * (batch['decoder_inputs'] > 0)
      self.sow('losses', 'coverage', self.coverage_loss_weight * jnp.sum(steps))
    return self._logits(out, source)

  def _source_for(self, inputs, memory, mask, finals) -> dict[str, jax.Array]:
    source = self._source(memory, mask, finals)
    if self.copy:   # where each source position's copy probability goes
      source['ext_ids'] = inputs
    return source

  def init_cache(self, inputs: jax.Array, max_len: int, beam_size: int = 1,
                 inputs_mask: jax.Array | None = None) -> dict[str, Any]:
    """The encoder's part for decoding: {'source': ..., 'carry': ...}, leading dim B.

    Beam search tiles and reorders all of it, so one cache serves any beam_size.
    """
    del max_len, beam_size  # the recurrent state has a fixed size
    memory, mask, finals = self.encode(inputs, inputs_mask=inputs_mask, train=False)
    source = self._source_for(inputs, memory, mask, finals)
    return {'source': source, 'carry': self._initial_carry(inputs.shape[0], finals, source)}

  def decode_step(self, last_tokens: jax.Array,
                  cache: dict[str, Any]) -> tuple[jax.Array, dict[str, Any]]:
    """last_tokens [B] -> (logits float32 [B, tgt_vocab_size], the cache one step on)."""
    y = self.tgt_embed(self._in_vocab(last_tokens[:, None]))
    carry, out = self._decode(cache['carry'], y, cache['source'], False)
    # The same `source` leaves go back, so beam search need not reorder them.
    return self._logits(out, cache['source'])[:, 0], {'source': cache['source'], 'carry': carry}


def pyramid_halve(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """LAS's pyramid step: x [B, T, D] -> [B, ceil(T / 2), 2D], steps 2i and 2i+1 side by side;
  a pair is real iff its first step is (padded steps are zeros, so an odd last step pairs with
  zeros whatever the batch's padding)."""
  b, t, d = x.shape
  x = x * mask[..., None].astype(x.dtype)
  if t % 2:
    x = jnp.pad(x, ((0, 0), (0, 1), (0, 0)))
    mask = jnp.pad(mask, ((0, 0), (0, 1)))
  return x.reshape(b, (t + t % 2) // 2, 2 * d), mask[:, ::2]


def _uniform(scale: float) -> Callable:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init
