"""The recurrent encoder-decoder `Model` (model.name='rnn'): Sutskever et al. 2014, Cho et al.
2014, Bahdanau et al. 2015, Luong et al. 2015, See et al. 2017 and Listen, Attend and Spell
(Chan et al. 2016) as one chain of named parts, each paper a preset in its experiment file
(experiments/wmt14_*, cnndm_pointer_generator.py, spoken_digits.py):

  frontend   FRONTENDS (models/frontends/): what the encoder reads, a group of its settings
  cell       CELLS (cells.py): 'lstm' | 'gru', in the encoder and the decoder
  encoder    (bi)directional layers, optionally pyramidal (encoder.py)
  bridge     BRIDGES (bridge.py): the decoder's initial state
  attention  ATTENTIONS (attention/): 'none' | 'bahdanau' | 'concat' | 'see' | 'dot' | 'general';
             each names the decoder cell family that queries it (decoder.py: DECODERS)
  copy, coverage  the pointer-generator's parts (copy.py)
  ctc        the CTC head every model shares (seq2seq_jax/models/ctc.py)

Fields (config.model.*):
  src_vocab_size, tgt_vocab_size  from the task (build_model passes them first)
  cell               a name in CELLS
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
  attention          a name in ATTENTIONS
  attention_dim      additive scorer size (bahdanau/concat/see); 0 -> decoder size
  input_feeding      Luong Sec. 3.3: h~_{t-1} joins the first layer's input (decoder family
                     'luong' only; ignored otherwise)
  feed_context       Cho et al. 2014: the top encoder layer's final state(s) c enters every
                     decoder step and the readout (attention='none' only; Cho et al. squash it
                     once more, c = tanh(V h_N), which we leave out)
  readout            'linear' | 'maxout' (pool 2: Goodfellow et al. 2013; Bahdanau App. A.2.2)
  readout_dim        units the vocabulary projection reads (after maxout); 0 -> decoder size
                     (with attention='none' and a linear readout: no layer in between)
  bridge             a name in BRIDGES
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
  copy, max_oovs     the pointer-generator (copy.py): max_oovs temporary ids per source
  coverage, coverage_loss_weight   coverage attention and loss (copy.py; paper weight: 1.0)
  pyramid            Listen, Attend and Spell's pyramidal listener (Chan et al. 2016, Eq. 5):
                     each of the top `pyramid` encoder layers reads the previous layer's
                     outputs at consecutive steps 2i and 2i+1 concatenated, so time halves per
                     layer (3: 8x); an odd last step pairs with zeros; lengths ceil(n / 2)
  ctc_weight         > 0: joint CTC-attention training (seq2seq_jax/models/ctc.py)
  dtype              matmul dtype; parameters, recurrent states and gates stay float32
                     (set by config.dtype)
  remat              'none' | 'full' | 'dots' (layers.remat): each encoder and decoder time
                     step is rematerialised, so the backward pass keeps only the carries

Padding never changes results (encoder.py; attention gives padding zero weight). The decoder is
one cell, `nn.scan`-ned over time for teacher forcing and run for a single step by
`decode_step`: both compute the same function. Packed batches (several pairs per row) are
refused: set data.packing=False.

Where the time goes (benchmarks/train_throughput.py --model=rnn; README "Recurrent models
against PyTorch"): matmuls are about two thirds of a training step. The input part of every
encoder gate is one matmul over the whole sentence; both encoder directions advance in one
scan step; the attention keys are projected once per sentence; additive attention scores are
rematerialised in the backward pass (attention/additive.py), which keeps the step's
temporaries 43% smaller and the step faster.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import ctc
from seq2seq_jax.models import frontends
from seq2seq_jax.models import layers
from seq2seq_jax.models.layers import constrain
from seq2seq_jax.models.registry import freeze
from seq2seq_jax.models.rnn import copy as copy_lib
from seq2seq_jax.models.rnn.attention import ATTENTIONS, SourceKeys
from seq2seq_jax.models.rnn.bridge import BRIDGES
from seq2seq_jax.models.rnn.cells import CELLS, zero_carry
from seq2seq_jax.models.rnn.decoder import DECODERS, scan_decoder
from seq2seq_jax.models.rnn.encoder import EncoderLayer, pyramid_halve, reverse_valid


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
  def _tokens(self) -> bool:
    return frontends.name_of(self.frontend) == 'tokens'

  @property
  def out_width(self) -> int:
    return self.readout_dim or self.dec_hidden

  @property
  def _attention(self) -> type:
    return ATTENTIONS.get(self.attention)

  @property
  def _family(self) -> str:
    """The decoder cell family (decoder.DECODERS) that queries this attention."""
    return self._attention.family

  @property
  def _cho(self) -> bool:
    return self.feed_context and not self._attention.attends

  def _check(self):
    choices = dict(cell=CELLS.names(), attention=ATTENTIONS.names(),
                   readout=('linear', 'maxout'), bridge=BRIDGES.names())
    choices['remat'] = layers.REMAT
    for field, allowed in choices.items():
      if getattr(self, field) not in allowed:
        raise UserError(f'model.{field} must be one of {allowed}, got {getattr(self, field)!r}')
    if min(self.encoder_layers, self.decoder_layers, self.hidden_dim, self.emb_dim) < 1:
      raise UserError('model layers, hidden_dim and emb_dim must be positive')
    BRIDGES.build(self.bridge).check(self)
    if self._attention.attends and not self._attention.projects_keys and (
        self.dec_hidden != self.enc_out):
      raise UserError(f'attention={self.attention!r} needs decoder_hidden_dim == the encoder '
                      f"output size ({self.enc_out}); 'general' has no such constraint")
    if (self.copy or self.share_embeddings) and (
        not self._tokens or self.src_vocab_size != self.tgt_vocab_size):
      raise UserError('model.copy and model.share_embeddings need token inputs and one '
                      f'vocabulary for both sides (sizes {self.src_vocab_size}, '
                      f'{self.tgt_vocab_size})')
    if self.copy and (not self._attention.attends or self.max_oovs < 1):
      raise UserError('model.copy needs an attention (it copies by the attention weights) '
                      f'and model.max_oovs >= 1, got {self.attention!r}, {self.max_oovs}')
    if self.coverage and not self._attention.additive:
      additive = tuple(n for n in ATTENTIONS.names() if ATTENTIONS.get(n).additive)
      raise UserError(f'model.coverage needs an additive attention {additive}, '
                      f'got {self.attention!r}')
    if self.tie_output and self.out_width != self.emb_dim:
      raise UserError(f'tie_output needs the readout size ({self.out_width}) == emb_dim')
    if not 0 <= self.pyramid < self.encoder_layers:
      raise UserError(f'model.pyramid must be in [0, encoder_layers) (the bottom layer reads '
                      f'the frontend), got {self.pyramid} with {self.encoder_layers} layers')
    if self.pyramid and self.residual:
      raise UserError('model.pyramid and model.residual do not combine (a pyramid layer '
                      'changes the length)')
    ctc.check_weight(self.ctc_weight)

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
    self.ctc_proj = ctc.head(self.ctc_weight, self.tgt_vocab_size, dt, init)
    self._bridge = BRIDGES.build(self.bridge)
    if self._bridge.attr:   # its layers are the model's, named as checkpoints hold them
      setattr(self, self._bridge.attr, self._bridge.modules(self, dt, init))
    if self._attention.projects_keys:
      self.source_keys = SourceKeys(self._attention.key_width(
          self.dec_hidden, self.attention_dim or self.dec_hidden), init, dt)
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
    if memory is None and self.ctc_proj is not None:
      memory, mask, _ = self.encode(inputs, inputs_mask=inputs_mask, train=False)
    return ctc.logits(self.ctc_proj, memory), mask

  def _in_vocab(self, ids: jax.Array) -> jax.Array:
    return copy_lib.in_vocab(ids, self.tgt_vocab_size) if self.copy else ids

  def _source(self, inputs, memory, mask, finals) -> dict[str, jax.Array]:
    """What every decoder step reads from the encoder."""
    source = {}
    if self._attention.projects_keys:
      source = {'memory': memory, 'keys': self.source_keys(memory), 'mask': mask}
    elif self._attention.attends:   # 'dot': the keys are the annotations themselves
      source = {'memory': memory, 'mask': mask}
    elif self._cho:  # c: the top layer's final state(s)
      fwd, bwd = finals[-1]
      source = {'context': fwd['h'] if bwd is None else jnp.concatenate([fwd['h'], bwd['h']], -1)}
    if self.copy:   # where each source position's copy probability goes
      source['ext_ids'] = inputs
    return source

  def _initial_carry(self, batch: int, finals, source):
    zero = zero_carry(self.cell, batch, self.dec_hidden)
    states = tuple(self._bridge.state(self, i, finals, source, zero)
                   for i in range(self.decoder_layers))
    carry = {'layers': states, **DECODERS.get(self._family).carry_extras(self, batch)}
    if self.coverage:
      carry['coverage'] = jnp.zeros(source['mask'].shape, jnp.float32)
    return carry

  @nn.compact
  def _decode(self, carry, y_emb, source, train: bool):
    """Runs the decoder cell over y_emb [B, T, E] (T = 1 in decode_step)."""
    return scan_decoder(self._family, self.remat)(
        cell=self.cell, hidden=self.dec_hidden, num_layers=self.decoder_layers,
        attention=self.attention, attention_dim=self.attention_dim or self.dec_hidden,
        readout=self.readout, readout_dim=self.out_width, residual=self.residual,
        dropout_rate=self.dropout_rate, deterministic=not train, init_fn=self._init,
        dtype=self._dt, copy=self.copy, coverage=self.coverage,
        name='decoder')(carry, y_emb, source)

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
    return copy_lib.final_log_probs(logits, extras, source['ext_ids'], self.max_oovs)

  # --- the model contract (seq2seq_jax/models/__init__.py) ---------------------------------
  def __call__(self, batch: dict[str, jax.Array], *, train: bool = False) -> jax.Array:
    """Teacher forcing: logits float32 [B, T, tgt_vocab_size]."""
    if 'inputs_segmentation' in batch:
      raise UserError('RNN models read one sentence pair per row: set data.packing=False')
    memory, mask, finals = self.encode(batch['inputs'], inputs_mask=batch.get('inputs_mask'),
                                       train=train)
    if self.ctc_proj is not None:
      ctc.sow_loss(self, self.ctc_weight, ctc.logits(self.ctc_proj, memory), mask, batch)
    source = self._source(batch['inputs'], memory, mask, finals)
    carry = self._initial_carry(memory.shape[0], finals, source)
    _, out = self._decode(carry, self.tgt_embed(self._in_vocab(batch['decoder_inputs'])),
                          source, train)
    if self.coverage:
      self.sow('losses', 'coverage', copy_lib.coverage_loss(
          out[1], batch['decoder_inputs'], self.coverage_loss_weight))
    return self._logits(out, source)

  def init_cache(self, inputs: jax.Array, max_len: int, beam_size: int = 1,
                 inputs_mask: jax.Array | None = None) -> dict[str, Any]:
    """The encoder's part for decoding: {'source': ..., 'carry': ...}, leading dim B.

    Beam search tiles and reorders all of it, so one cache serves any beam_size.
    """
    del max_len, beam_size  # the recurrent state has a fixed size
    memory, mask, finals = self.encode(inputs, inputs_mask=inputs_mask, train=False)
    source = self._source(inputs, memory, mask, finals)
    return {'source': source, 'carry': self._initial_carry(inputs.shape[0], finals, source)}

  def decode_step(self, last_tokens: jax.Array,
                  cache: dict[str, Any]) -> tuple[jax.Array, dict[str, Any]]:
    """last_tokens [B] -> (logits float32 [B, tgt_vocab_size], the cache one step on)."""
    y = self.tgt_embed(self._in_vocab(last_tokens[:, None]))
    carry, out = self._decode(cache['carry'], y, cache['source'], False)
    # The same `source` leaves go back, so beam search need not reorder them.
    return self._logits(out, cache['source'])[:, 0], {'source': cache['source'], 'carry': carry}


def _uniform(scale: float) -> Callable:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init
