"""The Transformer encoder-decoder (Vaswani et al. 2017, "Attention Is All You Need").

Options beyond the paper: pre-LayerNorm (Xiong et al. 2020; the paper is post-LN,
`pre_norm=False`), learned positions (for both sides, or only the decoder's with
`target_positions='learned'`), unscaled token embeddings (`scale_embeddings=False`), the
normalisation and the MLP as registered parts (`norm`, `mlp`: blocks.py), a compute dtype
(config.dtype), rematerialised layers (`remat`). Whisper (seq2seq_jax/pretrained/whisper.py)
is a preset of these with its own frontend; Marian (pretrained/marian.py) one with
post-LN, Marian's sinusoids (`positions=dict(name='sinusoidal', endpoint=False)`), the 'swish'
MLP and a learned bias on the tied logits (`logits_bias`: blocks.LOGITS_BIASES); BART
(pretrained/bart.py) adds a normalisation of the embedded tokens plus positions (`embed_norm`,
a blocks.NORMS spec); T5 (pretrained/t5.py) has RMS norms (`norm='rms_norm'`), relative
position biases in the self-attention logits (`positions='relative'`), no biases anywhere
(`use_bias=False`), unscaled attention logits (`scale_attention=False`), a plain or gated MLP
without biases ('relu', 'gated_gelu', ...) and, with its tied output (v1.0), the decoder
output times emb_dim**-0.5 before it (`scale_output`). Packed rows (several pairs per row,
with segment ids and positions) are supported: attention never crosses segments. The encoder reads any input through `frontend`
(models/frontends/: a name or a group of settings with a name, e.g. dict(name='audio_conv',
channels=32)): token embeddings (scaled by sqrt(d_model), Sec. 3.4), image patches (with their own learned positions, as ViT), a conv
net's feature grid or subsampled audio features (both given the model's positions); the
source mask comes from the frontend.

Copying (`copy=True`, as the pointer-generator of See et al. 2017 but with attention heads): the
first head of the top decoder layer's cross-attention is also the copy distribution over the
source positions; p_gen = sigmoid(w [y_t; x_t] + b) from the decoder output and its input
embedding mixes it with the vocabulary distribution over the extended vocabulary (source ids
>= tgt_vocab_size are the source's OOV words: embedded as UNK, copied by id), and the model
returns log-probabilities [B, T, tgt_vocab_size + max_oovs] as its logits (layers.copy_log_probs).

Joint CTC-attention (`ctc_weight` > 0; Kim, Hori and Watanabe 2017): a linear CTC head on the
encoder outputs (models/ctc.py, shared with the RNN; blank = the padding id 0) adds
ctc_weight * CTC to (1 - ctc_weight) times the cross entropy; it also decodes alone
(decode.method='ctc_greedy'). Audio inputs: the audio frontends' own settings (num_mels,
spec_augment, vtlp) set their features (models/frontends/audio.py).

Incremental decoding uses an explicit cache pytree (see Model.init_cache): per decoder layer,
self-attention K/V slots for every beam and the precomputed cross-attention K/V, held once per
item (decoding.PerItem); the source mask; per hypothesis, its position and slot history.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from seq2seq_jax.decoding import search as decoding
from seq2seq_jax.data.vocab import UNK_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.models import ctc
from seq2seq_jax.models import frontends
from seq2seq_jax.models import layers
from seq2seq_jax.models.layers import constrain
from seq2seq_jax.models.registry import freeze, spec_dict
from seq2seq_jax.models.transformer.blocks import LOGITS_BIASES, POSITIONS
from seq2seq_jax.models.transformer.blocks import DecoderLayer, EncoderLayer, layer_norm


class Model(nn.Module):
  """Transformer encoder-decoder. Defaults: the paper's base model (Table 3), but pre-LN."""
  src_vocab_size: int
  tgt_vocab_size: int
  emb_dim: int = 512
  num_heads: int = 8
  qkv_dim: int = 0              # total attention width; 0 -> emb_dim
  mlp_dim: int = 2048
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  positions: Any = 'sinusoidal'  # 'learned' | blocks.POSITIONS: 'sinusoidal' (Sec. 3.5), ...
  target_positions: Any = ''    # the decoder's, if not `positions` (the same choices)
  scale_embeddings: bool = True  # token embeddings times sqrt(emb_dim) (Sec. 3.4)
  norm: Any = freeze('layer_norm')  # blocks.NORMS: the layer normalisation and its settings
  mlp: Any = freeze('relu')      # blocks.MLPS: the position-wise MLP
  logits_bias: Any = freeze('none')  # blocks.LOGITS_BIASES: a bias on the output logits
  embed_norm: Any = ''          # blocks.NORMS after embeddings + positions (BART); '' none
  pre_norm: bool = True
  share_embeddings: bool = False
  tie_output: bool = True
  max_len: int = 256
  dtype: str = 'float32'
  remat: str = 'none'           # 'none' | 'full' | 'dots': activations recomputed per layer
  frontend: Any = freeze('tokens')  # models/frontends/: what the encoder reads, and its settings
  copy: bool = False            # copy from the source through a cross-attention head
  max_oovs: int = 0             # copy: temporary ids per source for its OOV words
  ctc_weight: float = 0.0       # joint CTC-attention: weight of a CTC head on the encoder
  use_bias: bool = True         # biases in attention, the MLP and an untied output (T5: none)
  scale_attention: bool = True  # attention logits q.k / sqrt(head_dim) (Eq. 1); T5: q.k
  scale_output: bool = False    # decoder output times emb_dim**-0.5 before the output (T5 v1.0)
  # The token the decoder reads at target position 0 whatever the batch holds there (BOS):
  # a pretrained checkpoint's decoder start token when it is also another special token
  # (Marian's and T5's <pad>, BART's </s>), so BOS's own id can be an ordinary token.
  # -1: the batch's own first token.
  decoder_start: int = -1
  # The train step's batch may carry the encoder's outputs instead of its inputs
  # (trainer/encoder_cache.py); a plain class attribute, not a setting.
  reads_encoded = True

  @property
  def _target_positions(self) -> Any:
    return self.target_positions or self.positions

  @staticmethod
  def _learned(spec: Any) -> bool:
    return spec_dict(spec).get('name') == 'learned'

  @staticmethod
  def _relative(spec: Any) -> bool:
    """Positions that bias the attention logits instead of adding to the embeddings."""
    name = spec_dict(spec).get('name')
    return (name in POSITIONS.names()
            and getattr(POSITIONS.get(name), 'adds_encoding', True) is False)

  @property
  def _tokens(self) -> bool:
    return frontends.name_of(self.frontend) == 'tokens'

  def setup(self):
    dt = layers.dtype_of(self.dtype)
    fe = frontends.name_of(self.frontend)
    width = self.qkv_dim or self.emb_dim
    for key in ('num_heads', 'emb_dim', 'mlp_dim'):
      if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
        raise UserError(f'model.{key} must be a positive int, got {getattr(self, key)!r}')
    if width % self.num_heads:
      raise UserError(f'attention width {width} is not divisible by num_heads {self.num_heads}')
    for key in ('positions', 'target_positions'):
      spec = getattr(self, key)
      if (key, spec) == ('target_positions', '') or self._learned(spec):
        continue
      name = spec_dict(spec).get('name')
      if name not in POSITIONS.names():
        raise UserError(f"model.{key} must be 'learned' or one of "
                        f'{", ".join(POSITIONS.names())}, got {name!r}')
      # A setting the encoding does not have: one clear error.
      POSITIONS.build(spec, supplied=('num_heads', 'bidirectional') if self._relative(spec)
                      else ())
    if self.share_embeddings and fe != 'tokens':
      raise UserError(f"share_embeddings needs model.frontend 'tokens', got {fe!r}")
    if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
      raise UserError('share_embeddings needs one vocabulary for source and target '
                      f'({self.src_vocab_size} != {self.tgt_vocab_size})')
    if self.copy and (fe != 'tokens' or self.src_vocab_size != self.tgt_vocab_size
                      or self.max_oovs < 1):
      raise UserError('model.copy needs token inputs, one vocabulary for both sides and '
                      f'model.max_oovs >= 1 (got {fe!r}, vocabularies '
                      f'{self.src_vocab_size} and {self.tgt_vocab_size}, {self.max_oovs})')
    kw = dict(num_heads=self.num_heads, head_dim=width // self.num_heads, emb_dim=self.emb_dim,
              mlp_dim=self.mlp_dim, attention_dropout_rate=self.attention_dropout_rate,
              pre_norm=self.pre_norm, dropout_rate=self.dropout_rate, dtype=dt,
              norm=self.norm, mlp_spec=self.mlp, use_bias=self.use_bias,
              scale_attention=self.scale_attention)
    # The token frontend keeps the name 'src_embed' (checkpoints and initial values).
    self.src_embed = frontends.build(
        self.frontend, vocab_size=self.src_vocab_size, features=self.emb_dim, dtype=dt,
        module_name='src_embed' if fe == 'tokens' else 'frontend')
    if not self.share_embeddings:
      self.tgt_embed = layers.Embed(self.tgt_vocab_size, self.emb_dim, dtype=dt)
    init = layers.partitioned(nn.initializers.normal(0.02), (None, 'embed'))
    if self._learned(self.positions):
      self.src_pos = self.param('src_pos', init, (self.max_len, self.emb_dim), jnp.float32)
    if self._learned(self._target_positions):
      self.tgt_pos = self.param('tgt_pos', init, (self.max_len, self.emb_dim), jnp.float32)
    if self._relative(self.positions):   # T5: the encoder's bias looks both ways
      self.src_pos_bias = POSITIONS.build(self.positions, num_heads=self.num_heads,
                                          bidirectional=True)
    if self._relative(self._target_positions):   # the decoder's only back
      self.tgt_pos_bias = POSITIONS.build(self._target_positions, num_heads=self.num_heads,
                                          bidirectional=False)
    # `deterministic` is a Python bool (argument 3 and 5, counting self): static for remat.
    encoder_layer = layers.remat(EncoderLayer, self.remat, static_argnums=(3,))
    decoder_layer = layers.remat(DecoderLayer, self.remat, static_argnums=(5,))
    self.encoder_layers = [encoder_layer(**kw) for _ in range(self.num_encoder_layers)]
    self.decoder_layers = [
        decoder_layer(**kw, copy_head=self.copy and i == self.num_decoder_layers - 1)
        for i in range(self.num_decoder_layers)]
    if self.copy:   # p_gen from the decoder output and the input embedding
      self.p_gen = layers.dense(1, ('embed', None), dtype=dt)
    self.ctc_proj = ctc.head(self.ctc_weight, self.tgt_vocab_size, dt)
    if self.pre_norm:
      self.encoder_norm = layer_norm(dt, self.norm)
      self.decoder_norm = layer_norm(dt, self.norm)
    if not self.tie_output:
      self.logits_dense = layers.dense(self.tgt_vocab_size, ('embed', 'vocab'), dtype=dt,
                                       use_bias=self.use_bias)
    self.output_bias = LOGITS_BIASES.build(self.logits_bias, vocab_size=self.tgt_vocab_size)
    if self.embed_norm:   # BART's layernorm_embedding, one per side
      self.src_embed_norm = layer_norm(dt, self.embed_norm)
      self.tgt_embed_norm = layer_norm(dt, self.embed_norm)
    self.drop = nn.Dropout(self.dropout_rate)

  # --- pieces ---------------------------------------------------------------------
  def _target_embed(self) -> layers.Embed:
    return self.src_embed if self.share_embeddings else self.tgt_embed

  def _embed(self, table, pos_table_name, ids, positions, deterministic):
    x = table.embed(ids)
    if self.scale_embeddings:
      x = x * jnp.sqrt(self.emb_dim).astype(table.dtype)  # Sec. 3.4
    return self._add_positions(x, pos_table_name, positions, deterministic)

  def _add_positions(self, x, pos_table_name, positions, deterministic):
    kind = self.positions if pos_table_name == 'src_pos' else self._target_positions
    if self._relative(kind):
      pass          # the positions enter as attention biases (_position_bias)
    elif self._learned(kind):
      # A learned table has max_len rows; a longer row would read past it (NaN).
      self._check_length(x.shape[1], 'a batch of length', kind)
      x = x + jnp.take(getattr(self, pos_table_name), positions, axis=0).astype(x.dtype)
    else:
      x = x + POSITIONS.build(kind)(positions, self.emb_dim).astype(x.dtype)
    if self.embed_norm:
      x = (self.src_embed_norm if pos_table_name == 'src_pos' else self.tgt_embed_norm)(x)
    x = self.drop(x, deterministic=deterministic)
    return constrain(x, ('batch', 'length', 'embed'))

  def _position_bias(self, side: str, bias: jax.Array, q_positions: jax.Array,
                     k_positions: jax.Array) -> jax.Array:
    """The self-attention `bias` of one side ('src' or 'tgt') plus its relative position
    bias, if its positions are relative (one per stack, shared by all its layers)."""
    kind = self.positions if side == 'src' else self._target_positions
    if not self._relative(kind):
      return bias
    return bias + getattr(self, f'{side}_pos_bias')(q_positions, k_positions)

  def _check_length(self, length: int, what: str, kind: Any) -> None:
    if self._learned(kind) and length > self.max_len:
      raise UserError(f'{what} {length} exceeds model.max_len={self.max_len} (the size of the '
                      "learned position table); raise model.max_len or use 'sinusoidal'")

  def _in_vocab(self, ids: jax.Array) -> jax.Array:
    """Temporary copy ids (>= the vocabulary: a source's OOV words) embed as UNK."""
    return jnp.where(ids >= self.tgt_vocab_size, UNK_ID, ids) if self.copy else ids

  def _copy(self, logits, y, x_in, copy_weights, ext_ids):
    """The final distribution of a copying model (layers.copy_log_probs): p_gen from the
    decoder output y and its input x_in mixes the vocabulary with the copy head."""
    p_gen_logit = self.p_gen(jnp.concatenate([y, x_in.astype(y.dtype)], -1))[..., 0]
    return layers.copy_log_probs(logits, p_gen_logit.astype(jnp.float32), copy_weights,
                                 ext_ids, self.max_oovs)

  def _logits(self, y):
    # Tied (Sec. 3.4, Press & Wolf 2017): y @ E^T with no extra factor. The paper multiplies
    # by sqrt(d_model) only in the embedding layers; with E ~ N(0, 1/d_model) and y
    # layer-normalised, these logits already have unit variance.
    if self.scale_output:   # T5 v1.0 (Mesh TensorFlow): the tied logits of y / sqrt(d)
      y = y * jnp.asarray(self.emb_dim ** -0.5, y.dtype)
    logits = (self._target_embed().attend(y) if self.tie_output else self.logits_dense(y))
    logits = self.output_bias(logits.astype(jnp.float32))
    return constrain(logits.astype(jnp.float32), ('batch', 'length', 'vocab'))

  def _start(self, ids: jax.Array, positions: jax.Array) -> jax.Array:
    """Decoder input ids with `decoder_start` at every target position 0 (if set)."""
    if self.decoder_start < 0:
      return ids
    return jnp.where(positions == 0, self.decoder_start, ids).astype(ids.dtype)

  @staticmethod
  def _positions(ids, positions):
    if positions is not None:
      return positions
    return jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape[:2])

  # --- the contract -------------------------------------------------------------
  def encode(self, inputs: jax.Array, *, inputs_mask: jax.Array | None = None,
             inputs_segmentation: jax.Array | None = None,
             inputs_position: jax.Array | None = None,
             train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Runs the frontend and the encoder.

    Args:
      inputs: what model.frontend reads: source ids [B, S] (0 = padding), features [B, T, F]
        or images [B, H, W, C].
      inputs_mask: features: true on real frames [B, T].
      inputs_segmentation: packed token rows: the pair each token belongs to [B, S] (0 =
        padding).
      inputs_position: packed token rows: each token's position within its pair [B, S].
      train: enables dropout (the 'dropout' rng stream).

    Returns:
      (encoder states [B, S', emb_dim] in the compute dtype, source mask bool [B, S']).
    """
    if self._tokens:
      mask = inputs > 0
      positions = self._positions(inputs, inputs_position)
      x = self._embed(self.src_embed, 'src_pos', self._in_vocab(inputs), positions, not train)
    else:
      if inputs_segmentation is not None:
        raise UserError("packed rows need model.frontend 'tokens', got "
                        f'{frontends.name_of(self.frontend)!r}')
      x, mask = self.src_embed(inputs, inputs_mask, train=train)
      positions = self._positions(x, None)
      if getattr(self.src_embed, 'own_positions', False):  # ViT: its own learned positions
        x = constrain(self.drop(x, deterministic=not train), ('batch', 'length', 'embed'))
      else:
        x = self._add_positions(x, 'src_pos', positions, not train)
    keep = mask[:, None, :]
    if inputs_segmentation is not None:
      keep = keep & (inputs_segmentation[:, :, None] == inputs_segmentation[:, None, :])
    bias = self._position_bias('src', layers.mask_bias(keep), positions, positions)
    for layer in self.encoder_layers:
      x = layer(x, bias, not train)
    return (self.encoder_norm(x) if self.pre_norm else x), mask

  def decode(self, encoded: jax.Array, src_mask: jax.Array, decoder_inputs: jax.Array, *,
             inputs_segmentation: jax.Array | None = None,
             targets_segmentation: jax.Array | None = None,
             targets_position: jax.Array | None = None, train: bool = False,
             ext_ids: jax.Array | None = None) -> jax.Array:
    """Runs the decoder with teacher forcing.

    Args:
      encoded: encoder states [B, S, emb_dim] from `encode`.
      src_mask: the source mask [B, S] from `encode` (padding is not attended).
      decoder_inputs: target ids shifted right, BOS first [B, T], 0 = padding.
      inputs_segmentation: packed rows: source segment ids [B, S].
      targets_segmentation: packed rows: target segment ids [B, T]; a target token attends
        only to earlier target tokens and source tokens of the same segment.
      targets_position: packed rows: positions within each target [B, T].
      train: enables dropout.
      ext_ids: copy: the source ids [B, S] (temporary ids for its OOVs included).

    Returns:
      Logits [B, T, tgt_vocab_size], float32; with copy, log-probabilities [B, T,
      tgt_vocab_size + max_oovs] over the extended vocabulary.
    """
    if (targets_segmentation is None) != (inputs_segmentation is None):
      raise UserError('packed batches need both inputs_segmentation and targets_segmentation')
    t = decoder_inputs.shape[1]
    keep_self = jnp.tril(jnp.ones((t, t), bool))[None]
    keep_cross = src_mask[:, None, :]
    if targets_segmentation is not None:
      tgt_seg = targets_segmentation[:, :, None]
      keep_self = keep_self & (tgt_seg == targets_segmentation[:, None, :])
      keep_cross = keep_cross & (tgt_seg == inputs_segmentation[:, None, :])
    positions = self._positions(decoder_inputs, targets_position)
    self_bias = self._position_bias('tgt', layers.mask_bias(keep_self), positions, positions)
    cross_bias = layers.mask_bias(keep_cross)
    y = x_in = self._embed(self._target_embed(), 'tgt_pos',
                           self._in_vocab(self._start(decoder_inputs, positions)), positions,
                           not train)
    copy_weights = None
    for layer in self.decoder_layers:
      y = layer(y, self_bias, encoded, cross_bias, not train)
      if isinstance(y, tuple):
        y, copy_weights = y
    if self.pre_norm:
      y = self.decoder_norm(y)
    if self.copy:
      if ext_ids is None:
        raise ValueError('a copying model decodes with the source ids (ext_ids)')
      return self._copy(self._logits(y), y, x_in, copy_weights, ext_ids)
    return self._logits(y)

  def __call__(self, batch: dict[str, jax.Array], *, train: bool = False) -> jax.Array:
    """Teacher-forced logits [B, T, tgt_vocab_size] (float32) for a (possibly packed) batch."""
    seg = batch.get('inputs_segmentation')
    if self.copy and seg is not None:
      raise UserError('model.copy reads one pair per row (temporary ids are per source): '
                      'set data.packing=False')
    if 'encoded' in batch:   # the encoder's outputs, cached (trainer/encoder_cache.py)
      encoded, src_mask = batch['encoded'].astype(layers.dtype_of(self.dtype)), batch['encoded_mask']
    else:
      encoded, src_mask = self.encode(batch['inputs'], inputs_mask=batch.get('inputs_mask'),
                                      inputs_segmentation=seg,
                                      inputs_position=batch.get('inputs_position'), train=train)
    if self.ctc_proj is not None:
      if seg is not None:
        raise UserError('model.ctc_weight reads one pair per row: set data.packing=False')
      ctc.sow_loss(self, self.ctc_weight, ctc.logits(self.ctc_proj, encoded), src_mask, batch)
    return self.decode(encoded, src_mask, batch['decoder_inputs'],
                       inputs_segmentation=seg,
                       targets_segmentation=batch.get('targets_segmentation'),
                       targets_position=batch.get('targets_position'), train=train,
                       ext_ids=batch['inputs'] if self.copy else None)

  def ctc_logits(self, inputs: jax.Array, inputs_mask: jax.Array | None = None,
                 memory=None, mask=None) -> tuple[jax.Array, jax.Array]:
    """The CTC head: (logits float32 [B, S', tgt_vocab_size], mask [B, S'])."""
    if memory is None and self.ctc_proj is not None:
      memory, mask = self.encode(inputs, inputs_mask=inputs_mask, train=False)
    return ctc.logits(self.ctc_proj, memory), mask

  def init_cache(self, inputs: jax.Array, max_len: int, beam_size: int = 1,
                 inputs_mask: jax.Array | None = None) -> dict[str, Any]:
    """Encodes `inputs` and allocates the decoder cache for `max_len` steps of `beam_size`
    hypotheses per item (1 for greedy search and sampling).

    Beam search would tile a plain cache to batch * beam rows and gather every buffer as beams
    are reselected; here the large buffers are `decoding.PerItem` entries instead, one per
    item, which beam search leaves in place: at position m beam j writes its self-attention
    K/V to slot m * J + j, and a small per-hypothesis mask `history` (which beam search does
    reorder) records which beam's slot holds each of its past positions. Keys are stored transposed, in the
    layouts the attention dots read without a transpose (see layers.attention_step).

    Args:
      inputs: what model.frontend reads (ids [B, S] with 0 = padding, unpacked; features
        [B, T, F]; images [B, H, W, C]).
      max_len: the most decoder steps that will be taken (static).
      beam_size: hypotheses per item J (static); the search must use the same.
      inputs_mask: features: true on real frames [B, T].

    Returns:
      {'index': int32 [B], the next position; 'history': bool [B, max_len, J], position m of
      a hypothesis was computed by beam j (slot m * J + j); PerItem entries 'src_mask' bool
      [B, S] and, per decoder layer in 'layers', self-attention slots 'k' [B, H, head_dim,
      max_len * J] and 'v' [B, H, max_len * J, head_dim], source keys 'ck' [B, H, head_dim, S]
      and values 'cv' [B, H, S, head_dim]}. Every array has leading dim B.
    """
    self._check_length(max_len, 'decoding length', self._target_positions)
    if beam_size < 1:
      raise UserError(f'beam_size must be >= 1, got {beam_size}')
    encoded, src_mask = self.encode(inputs, inputs_mask=inputs_mask, train=False)
    b = inputs.shape[0]
    heads = self.num_heads
    head_dim = (self.qkv_dim or self.emb_dim) // heads
    wrap = lambda x: decoding.PerItem(x, beam_size)
    per_layer = []
    for layer in self.decoder_layers:
      ck, cv = layer.cross_attn.project_kv(encoded)
      per_layer.append({
          'k': wrap(jnp.zeros((b, heads, head_dim, max_len * beam_size), encoded.dtype)),
          'v': wrap(jnp.zeros((b, heads, max_len * beam_size, head_dim), encoded.dtype)),
          'ck': wrap(ck.transpose(0, 2, 3, 1)), 'cv': wrap(cv.transpose(0, 2, 1, 3))})
    cache = {'index': jnp.zeros((b,), jnp.int32),
             'history': jnp.zeros((b, max_len, beam_size), bool),
             'src_mask': wrap(src_mask), 'layers': per_layer}
    if self.copy:
      cache['ext_ids'] = wrap(inputs)
    return cache

  def decode_step(self, last_tokens: jax.Array,
                  cache: dict[str, Any]) -> tuple[jax.Array, dict[str, Any]]:
    """One incremental decoder step (no dropout).

    Args:
      last_tokens: int32 [B * J], the token at position cache['index'] (BOS first), item-major
        (the J hypotheses of item 0 first).
      cache: from `init_cache` or the previous step, with the per-hypothesis entries ('index',
        'history') tiled to B * J rows and reordered by the search. All rows must be at the
        same position (the searches in seq2seq_jax/decoding/search.py advance them together).

    Returns:
      (logits float32 [B * J, tgt_vocab_size] for the next token, the updated cache).
    """
    index, history = cache['index'], cache['history']
    rows, max_len, beams = history.shape
    src_mask = cache['src_mask'].value
    b = src_mask.shape[0]
    if rows != b * beams or last_tokens.shape != (rows,):
      raise UserError(f'decode_step got {last_tokens.shape[0]} tokens for a cache of {b} items '
                      f'x {beams} beams ({rows} hypothesis rows)')
    pos = index[0]
    own_slot = (jnp.arange(rows) % beams)[:, None] == jnp.arange(beams)[None, :]   # [R, J]
    history = lax.dynamic_update_slice(history, own_slot[:, None, :], (0, pos, 0))
    self_bias = layers.mask_bias(history.reshape(b, beams, max_len * beams))  # [B, 1, J, M*J]
    # Relative positions: slot m * J + j holds position m.
    self_bias = self._position_bias('tgt', self_bias, index[:1, None],
                                    (jnp.arange(max_len * beams) // beams)[None])
    cross_bias = layers.mask_bias(src_mask[:, None, :])                       # [B, 1, 1, S]
    tokens = self._start(last_tokens[:, None], index[:, None])
    y = x_in = self._embed(self._target_embed(), 'tgt_pos', self._in_vocab(tokens),
                           index[:, None], True)
    new_layers = []
    for layer, lc in zip(self.decoder_layers, cache['layers']):
      y, k, v, copy_weights = layer.step(y, {name: x.value for name, x in lc.items()}, pos,
                                         self_bias, cross_bias)
      new_layers.append({**lc, 'k': decoding.PerItem(k, beams), 'v': decoding.PerItem(v, beams)})
    if self.pre_norm:
      y = self.decoder_norm(y)
    new_cache = {**cache, 'index': index + 1, 'history': history, 'layers': new_layers}
    if self.copy:   # each hypothesis row copies from its item's source
      ext_ids = jnp.repeat(cache['ext_ids'].value, beams, axis=0)
      return self._copy(self._logits(y), y, x_in, copy_weights[:, None], ext_ids)[:, 0], new_cache
    return self._logits(y)[:, 0], new_cache
