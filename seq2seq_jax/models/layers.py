"""Building blocks shared by the models: embeddings, positions, dense layers, attention core.

Every parameter carries logical axis names; nothing here knows about meshes.
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from seq2seq_jax.errors import UserError

NEG_INF = -1e9  # additive mask value; finite so fully masked rows give a uniform softmax


def dtype_of(name: str) -> jnp.dtype:
  """The compute dtype named by a model config's `dtype` string.

  Args:
    name: 'float32', 'bfloat16' or 'float16'.

  Returns:
    The jnp dtype.

  Raises:
    UserError: any other name.
  """
  if name not in ('float32', 'bfloat16', 'float16'):
    raise UserError(f"model.dtype must be 'float32', 'bfloat16' or 'float16', got {name!r}")
  return jnp.dtype(name)


REMAT = ('none', 'full', 'dots')


def remat(target: Any, mode: str, **kwargs) -> Any:
  """`target` (a Module class or a function of a module) rematerialised as `mode` says.

  'none' keeps every activation for the backward pass; 'full' keeps only the inputs and
  recomputes the rest (least memory, one more forward pass); 'dots' keeps the outputs of
  matmuls against weights (jax.checkpoint_policies.dots_with_no_batch_dims_saveable) and
  recomputes the cheap elementwise work and the attention scores, whose size grows with the
  square of the length. Parameter names and values are those of the plain module.

  Args:
    target: what nn.remat wraps.
    mode: 'none', 'full' or 'dots'.
    **kwargs: more nn.remat arguments (static_argnums for a `deterministic` flag).

  Raises:
    UserError: any other mode.
  """
  policy = _remat_policy(mode)
  return target if mode == 'none' else nn.remat(target, policy=policy, **kwargs)


def remat_fn(fn: Callable, mode: str) -> Callable:
  """A pure function (no Flax module) rematerialised as `remat` does for modules."""
  policy = _remat_policy(mode)
  return fn if mode == 'none' else jax.checkpoint(fn, policy=policy)


def _remat_policy(mode: str):
  """The jax.checkpoint policy of a remat mode (None: save nothing); UserError for others."""
  if mode not in REMAT:
    raise UserError(f'model.remat must be one of {REMAT}, got {mode!r}')
  return jax.checkpoint_policies.dots_with_no_batch_dims_saveable if mode == 'dots' else None


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """Sharding constraint by logical names (a no-op without logical axis rules)."""
  return nn.with_logical_constraint(x, tuple(names))


def partitioned(init: Callable, names: Sequence[str | None]) -> Callable:
  """Wraps an initialiser so the parameter is boxed with logical axis `names`."""
  return nn.with_logical_partitioning(init, tuple(names))


class Embed(nn.Module):
  """A token embedding table that can also produce tied output logits (`attend`).

  The default N(0, features^-0.5) initialiser is that of the paper's reference code
  (tensor2tensor): with the sqrt(d_model) input scaling of Vaswani et al. 2017, Sec. 3.4,
  embedded tokens have unit-variance entries, and tied logits of a layer-normalised
  decoder state have unit variance too.
  """
  num_embeddings: int
  features: int
  stddev: float | None = None  # default features ** -0.5
  dtype: jnp.dtype = jnp.float32
  init_fn: Any = None          # overrides the normal initialiser

  def setup(self):
    std = self.stddev if self.stddev is not None else self.features ** -0.5
    init = self.init_fn or nn.initializers.normal(stddev=std)
    self.embedding = self.param('embedding', partitioned(init, ('vocab', 'embed')),
                                (self.num_embeddings, self.features), jnp.float32)

  def embed(self, ids: jax.Array) -> jax.Array:
    """The rows of `ids` [...] -> [..., features] in the compute dtype."""
    return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

  def __call__(self, ids: jax.Array) -> jax.Array:
    return self.embed(ids)

  def attend(self, x: jax.Array) -> jax.Array:
    """Logits x @ E^T (Press & Wolf 2017 weight tying), accumulated in float32."""
    return jnp.einsum('...d,vd->...v', x, self.embedding.astype(self.dtype),
                      preferred_element_type=jnp.float32)


def sinusoidal(positions: jax.Array, dim: int, max_timescale: float = 1e4) -> jax.Array:
  """Sinusoidal position encodings (Vaswani et al. 2017, Sec. 3.5).

  Laid out as tensor2tensor's `get_timing_signal_1d` (the paper's code): all sines, then all
  cosines, timescales geometric from 1 to `max_timescale`. The paper interleaves sin/cos;
  that is only a fixed permutation of the model dimension, which learned weights absorb.

  Args:
    positions: integer positions, any shape [...].
    dim: encoding width (d_model).
    max_timescale: the longest wavelength over 2*pi (the paper's 10000).

  Returns:
    float32 encodings [..., dim].
  """
  half = dim // 2
  freqs = np.exp(-np.log(max_timescale) * np.arange(half) / max(half - 1, 1)).astype(np.float32)
  angles = positions[..., None].astype(jnp.float32) * freqs
  enc = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  if dim % 2:
    enc = jnp.pad(enc, [(0, 0)] * (enc.ndim - 1) + [(0, 1)])
  return enc


def xavier(num_in_axes: int = 1, fused: int = 1) -> Callable:
  """Xavier-uniform (Glorot & Bengio 2010) for a kernel [*in_dims, *out_dims].

  For a fused projection (e.g. QKV, fused=3) the fan-out is that of ONE projection, so a
  fused kernel is initialised exactly like separate ones.

  Args:
    num_in_axes: how many leading kernel axes are inputs (fan-in).
    fused: how many independent projections the output axes stack.

  Returns:
    An initialiser `init(key, shape, dtype)`.
  """
  def init(key, shape, dtype=jnp.float32):
    fan_in = int(np.prod(shape[:num_in_axes]))
    fan_out = int(np.prod(shape[num_in_axes:])) // fused
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


class DenseGeneral(nn.Module):
  """y = x . W (+ b) contracting the last `num_in_axes` axes of x into `features` axes.

  Written here rather than using nn.DenseGeneral, whose initialiser sees a flattened kernel
  and so cannot carry per-dimension logical axis names.
  """
  features: tuple[int, ...]
  names: tuple[str | None, ...]   # logical names of the kernel's axes (in..., out...)
  num_in_axes: int = 1
  use_bias: bool = True
  fused: int = 1                  # >1: the leading out axis stacks independent projections
  dtype: Any = jnp.float32
  init_fn: Any = None             # overrides Xavier (kernel) and zeros (bias), e.g. uniform

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_shape = x.shape[x.ndim - self.num_in_axes:]
    shape = tuple(in_shape) + tuple(self.features)
    kernel_init = self.init_fn or xavier(self.num_in_axes, self.fused)
    kernel = self.param('kernel', partitioned(kernel_init, self.names), shape, jnp.float32)
    letters = 'abcdefghijklmnopqrstuvwxyz'
    n_in, n_out = self.num_in_axes, len(self.features)
    batch = letters[:x.ndim - n_in]
    ins = letters[x.ndim - n_in:x.ndim]
    outs = letters[x.ndim:x.ndim + n_out]
    y = jnp.einsum(f'{batch}{ins},{ins}{outs}->{batch}{outs}', x.astype(self.dtype),
                   kernel.astype(self.dtype))
    if self.use_bias:
      bias_init = self.init_fn or nn.initializers.zeros_init()
      bias = self.param('bias', partitioned(bias_init, self.names[n_in:]),
                        tuple(self.features), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


def dense(features: int | Sequence[int], names: Sequence[str | None], *,
          num_in_axes: int = 1, use_bias: bool = True, fused: int = 1, dtype: Any = jnp.float32,
          init: Callable | None = None, name: str | None = None) -> DenseGeneral:
  """A dense layer whose kernel (and bias) carry logical axis names.

  Args:
    features: output size, or a tuple of output axes (e.g. (heads, head_dim)).
    names: logical names of the kernel axes, inputs then outputs.
    num_in_axes: how many trailing axes of x are contracted.
    use_bias: add a bias (named like the output axes).
    fused: >1 when the first output axis stacks independent projections (Xavier fan-out).
    dtype: compute dtype (parameters are always float32).
    init: overrides Xavier for the kernel and zeros for the bias.
    name: the submodule name.

  Returns:
    An unbound DenseGeneral.
  """
  feats = tuple(features) if isinstance(features, (tuple, list)) else (features,)
  return DenseGeneral(features=feats, names=tuple(names), num_in_axes=num_in_axes,
                      use_bias=use_bias, fused=fused, dtype=dtype, init_fn=init, name=name)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array | None,
              dropout: nn.Module | None = None, deterministic: bool = True,
              sow_in: nn.Module | None = None, scale: bool = True,
              blocked: bool | None = None) -> jax.Array:
  """Scaled dot-product attention (Vaswani et al. 2017, Eq. 1) over [B, L, H, D] arrays.

  Args:
    q: queries [B, Q, H, D]. k, v: keys and values [B, K, H, D].
    bias: additive mask broadcastable to [B, H, Q, K] (0 keep, NEG_INF drop).
    dropout: an nn.Dropout applied to the attention weights, or None.
    deterministic: disables dropout.
    sow_in: a module that sows the weights [B, H, Q, K] (before dropout) as
      'intermediates'/'attention_weights' (kept only when that collection is mutable).
    scale: queries times D**-0.5 (Eq. 1); False: unscaled dot products (T5, whose
      initialisation plays that part).
    blocked: compute it one (item, head) at a time (_blocked_attention; not with active
      dropout or sowing); None: when `deterministic` (no training) on a single-device CPU run
      with at least BLOCKED_MIN_SCORES scores per (item, head).

  Returns:
    [B, Q, H, D] in q's dtype. The softmax runs in float32 for stability.
  """
  sowing = sow_in is not None and sow_in.is_mutable_collection('intermediates')
  no_dropout = dropout is None or deterministic or dropout.rate == 0.0
  if blocked is None:   # inference and evaluation (training keeps remat's view of the dots)
    blocked = deterministic and _use_blocked(q.shape[1], k.shape[1])
  if blocked and no_dropout and not sowing:
    return _blocked_attention(scaled(q, scale), k, v, bias)
  # Scores accumulate and come out in float32 even for bfloat16 inputs: a bfloat16 logit
  # has ~3 significant digits, too coarse for a softmax over long rows.
  logits = jnp.einsum('bqhd,bkhd->bhqk', scaled(q, scale), k,
                      preferred_element_type=jnp.float32)
  if bias is not None:
    logits = logits + bias
  weights = jax.nn.softmax(logits, axis=-1)
  if sow_in is not None:
    sow_in.sow('intermediates', 'attention_weights', weights)
  weights = weights.astype(q.dtype)
  if dropout is not None:
    weights = dropout(weights, deterministic=deterministic)
  return jnp.einsum('bhqk,bkhd->bqhd', weights, v)


# Scores per (item, head) from which a single-device CPU run evaluates attention one (item,
# head) at a time (_blocked_attention): Whisper's encoder (1,500 x 1,500), not a G2P model
# (at 20 x 20 the batched form is faster; from 64 x 64 the per-head one; benchmarks/attention_cpu.py).
BLOCKED_MIN_SCORES = 256 * 256


def _use_blocked(q_len: int, k_len: int) -> bool:
  return (q_len * k_len >= BLOCKED_MIN_SCORES and jax.default_backend() == 'cpu'
          and jax.device_count() == 1)


def _blocked_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                       bias: jax.Array | None) -> jax.Array:
  """`attention` without dropout, one (item, head) at a time under lax.map.

  The same function (scores in float32, softmax, weighted values) in another order: on
  XLA:CPU the batched [B, H, Q, K] scores of a long sequence (Whisper's encoder: 8 x 8 x 1,500
  x 1,500 floats, 576 MB for 8 windows) go to memory and back between the dots and the
  softmax, while one head's [Q, K] (9 MB) stays in cache: 2.4 to 2.7 times faster for Whisper
  base's encoder self-attention on a 2-core host (benchmarks/attention_cpu.py). Differentiable
  (lax.map is a scan; its gradient is 1.15 times faster there, but inside remat='dots' the
  per-head dots would count as saveable, so training keeps the batched form). q is already
  scaled.
  """
  b, qn, h, d = q.shape
  kn = k.shape[1]
  heads_first = lambda x, n: x.transpose(0, 2, 1, 3).reshape(b * h, n, d)
  rows = jnp.arange(b * h)
  if bias is not None:
    bias = jnp.asarray(bias).reshape((1,) * (4 - jnp.ndim(bias)) + jnp.shape(bias))

  def one(args):
    qq, kk, vv, r = args
    s = jnp.einsum('qd,kd->qk', qq, kk, preferred_element_type=jnp.float32)
    if bias is not None:
      bi = r // h if bias.shape[0] > 1 else 0
      hi = r % h if bias.shape[1] > 1 else 0
      s = s + lax.dynamic_index_in_dim(bias, bi, 0, False)[hi]
    w = jax.nn.softmax(s, axis=-1).astype(q.dtype)
    return jnp.einsum('qk,kd->qd', w, vv)

  out = lax.map(one, (heads_first(q, qn), heads_first(k, kn), heads_first(v, kn), rows))
  return out.reshape(b, h, qn, d).transpose(0, 2, 1, 3)


def scaled(q: jax.Array, scale: bool = True) -> jax.Array:
  """Queries [..., D] times D**-0.5 (Eq. 1), or as they are without `scale`."""
  return q * (q.shape[-1] ** -0.5) if scale else q


def attention_step(q: jax.Array, k_t: jax.Array, v: jax.Array, bias: jax.Array,
                   scale: bool = True) -> jax.Array:
  """Attention of a few queries per item over cached keys, in decode-friendly layouts.

  The cache layouts are the ones XLA's CPU dot wants as they are, so no step transposes a
  (large) K/V buffer: keys are stored transposed.

  Args:
    q: queries [B, H, J, D] (J = the beams of an item, or 1).
    k_t: keys [B, H, D, N]. v: values [B, H, N, D].
    bias: additive mask broadcastable to [B, H, J, N].
    scale: as in `attention`.

  Returns:
    [B, H, J, D] in q's dtype (scores and softmax in float32, as in `attention`).
  """
  logits = jnp.einsum('bhjd,bhdn->bhjn', scaled(q, scale), k_t.astype(q.dtype),
                      preferred_element_type=jnp.float32)
  weights = jax.nn.softmax(logits + bias, axis=-1).astype(q.dtype)
  return jnp.einsum('bhjn,bhnd->bhjd', weights, v.astype(q.dtype))


PREFIX_SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048)


def attention_prefix(q: jax.Array, k_t: jax.Array, v: jax.Array, bias: jax.Array,
                     pos: jax.Array, beams: int, scale: bool = True) -> jax.Array:
  """`attention_step` over a decoder's self-attention slots, reading only those written so far.

  Slot m * beams + j holds position m (Model.init_cache), so at step `pos` only the first
  (pos + 1) * beams slots can be attended to; the rest are masked by `bias`. The step reads
  the first P * beams slots, P the smallest of PREFIX_SIZES (or the cache's length) >= pos + 1,
  chosen by lax.switch: the same result (masked slots weigh exactly 0) without reading
  (and scoring) a whole max_len-long cache at every step.

  Args:
    q, k_t, v, bias, scale: as attention_step's (k_t [B, H, D, M * beams], v [B, H, M * beams,
      D], bias [..., M * beams]).
    pos: int32 scalar, the step.
    beams: hypotheses per item.
  """
  m = k_t.shape[-1] // beams
  sizes = [p for p in PREFIX_SIZES if p < m] + [m]

  def upto(p):
    n = p * beams
    return lambda: attention_step(q, k_t[..., :n], v[:, :, :n], bias[..., :n], scale)

  if len(sizes) == 1:
    return upto(m)()
  return lax.switch(jnp.sum(jnp.asarray(sizes[:-1]) < pos + 1), [upto(p) for p in sizes])


def mask_bias(mask: jax.Array) -> jax.Array:
  """Boolean keep-mask [B, Q, K] -> additive float32 bias [B, 1, Q, K]."""
  return jnp.where(mask, 0.0, NEG_INF).astype(jnp.float32)[:, None]


def copy_log_probs(logits: jax.Array, p_gen_logit: jax.Array, attention: jax.Array,
                   ext_ids: jax.Array, max_oovs: int) -> jax.Array:
  """The pointer-generator's final distribution (See et al. 2017, Eq. 9), as log-probabilities.

  P(w) = p_gen P_vocab(w) + (1 - p_gen) sum_{i: w_i = w} a_i over the extended vocabulary: the
  V vocabulary ids, then max_oovs temporary ids for each source's OOV words.

  Args:
    logits: vocabulary logits [B, T, V].
    p_gen_logit: [B, T]; p_gen = sigmoid(p_gen_logit).
    attention: [B, T, S] over the source positions (0 on padding).
    ext_ids: [B, S] each source position's id in the extended vocabulary.
    max_oovs: the temporary ids per source.

  Returns:
    float32 [B, T, V + max_oovs]: log P, floored at log(1e-30) (ids no source or vocabulary
    can produce), so it is also valid as logits: log_softmax changes it by < 1e-24.
  """
  p_gen = jax.nn.sigmoid(p_gen_logit)[..., None]
  vocab = jax.nn.softmax(logits, axis=-1) * p_gen
  dist = jnp.pad(vocab, ((0, 0), (0, 0), (0, max_oovs)))
  copied = attention.astype(jnp.float32) * (1.0 - p_gen)
  # Scatter-add every position's copy probability onto its token (repeats accumulate).
  dist = jax.vmap(lambda d, ids, a: d.at[:, ids].add(a))(dist, ext_ids, copied)
  return jnp.log(jnp.maximum(dist, 1e-30))


def ctc_label_paddings(tokens: jax.Array, eos_id: int) -> jax.Array:
  """CTC label paddings of output sequences [B, T] (ids, then EOS, then 0 padding, or no EOS
  at all): float32 [B, T], 1 on EOS, every position after it and padding."""
  after_eos = jnp.cumsum(tokens == eos_id, axis=1) > 0
  return (after_eos | (tokens == 0)).astype(jnp.float32)


def ctc_log_likelihood(logits: jax.Array, mask: jax.Array, tokens: jax.Array,
                       eos_id: int) -> jax.Array:
  """log P_ctc(labels | input) per row, float32 [B] (optax.ctc_loss; blank = 0): the labels
  are the ids of `tokens` before EOS. A row whose labels cannot be aligned to its positions
  (fewer positions than labels plus repeated neighbours, which need a blank between them) gets
  -inf, not optax's finite stand-in."""
  import optax  # pylint: disable=g-import-not-at-top
  paddings = ctc_label_paddings(tokens, eos_id)
  nll = optax.ctc_loss(logits.astype(jnp.float32), 1.0 - mask.astype(jnp.float32), tokens,
                       paddings, blank_id=0)
  return jnp.where(ctc_feasible(mask, tokens, paddings), -nll, -jnp.inf)


def ctc_feasible(mask: jax.Array, labels: jax.Array, paddings: jax.Array) -> jax.Array:
  """Whether each row's labels fit its real positions: bool [B]. A CTC path emits every
  label once and a blank between equal neighbours, so it needs that many positions."""
  real = paddings == 0
  repeats = real[:, 1:] & (labels[:, 1:] == labels[:, :-1])
  needed = jnp.sum(real, axis=1) + jnp.sum(repeats, axis=1)
  return jnp.sum(mask.astype(jnp.int32), axis=1) >= needed


def ctc_loss_sum(logits: jax.Array, mask: jax.Array, targets: jax.Array) -> jax.Array:
  """CTC negative log-likelihood summed over the batch's rows (optax.ctc_loss; blank = 0).

  Rows without labels (batch padding) and rows whose labels cannot be aligned to their
  positions (too short an input after subsampling: optax would give them a huge finite
  loss whose gradient swamps the batch's) contribute nothing, as PyTorch's
  `zero_infinity=True`.

  Args:
    logits: [B, S, V] over the encoder's positions; id 0 (padding, never a target) is blank.
    mask: [B, S] true on real positions.
    targets: [B, T] the attention decoder's targets (ids, then EOS, then 0 padding): the CTC
      labels are the ids before EOS.
  """
  from seq2seq_jax.data.vocab import EOS_ID  # pylint: disable=g-import-not-at-top
  ll = ctc_log_likelihood(logits, mask, targets, EOS_ID)
  has_labels = ~jnp.all(ctc_label_paddings(targets, EOS_ID) > 0, axis=1)
  return -jnp.sum(jnp.where(has_labels & jnp.isfinite(ll), ll, 0.0))


def ctc_greedy(logits: jax.Array, mask: jax.Array, max_len: int, eos_id: int) -> jax.Array:
  """Best-path CTC decoding: the argmax per position, repeats merged, blanks (0) dropped,
  packed left and followed by EOS: int32 [B, max_len] (0 after EOS), as the searches give."""
  best = jnp.argmax(logits, axis=-1).astype(jnp.int32)                 # [B, S]
  prev = jnp.pad(best, ((0, 0), (1, 0)), constant_values=-1)[:, :-1]
  keep = (best != 0) & (best != prev) & mask
  keep = keep & (jnp.cumsum(keep, axis=1) < max_len)                    # room for EOS
  slot = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, max_len)        # max_len: dropped
  out = jnp.zeros((best.shape[0], max_len + 1), jnp.int32)
  out = jax.vmap(lambda o, s, v: o.at[s].set(v))(out, slot, best)
  n = jnp.sum(keep, axis=1)
  out = jax.vmap(lambda o, i: o.at[i].set(eos_id))(out, n)
  return out[:, :max_len]
