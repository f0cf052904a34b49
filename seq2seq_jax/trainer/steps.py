"""Pure step functions: train_step, eval_step and predict_step.

Each is built from (model, optimizer, config) by a factory and jit-compiled by the trainer
with explicit shardings. Randomness comes from the seed folded with the step, so a resumed run
draws exactly the same dropout masks as an uninterrupted one.
"""
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from jax import lax

from seq2seq_jax.decoding import search as decoding
from seq2seq_jax.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seq2seq_jax.errors import UserError
from seq2seq_jax.models.base import Model
from seq2seq_jax.models.layers import constrain, ctc_greedy, ctc_log_likelihood


@flax.struct.dataclass
class TrainState:
  step: jax.Array      # int32 scalar: number of updates applied so far
  params: Any
  opt_state: Any


def cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                  label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Summed label-smoothed cross entropy and summed plain NLL over weighted tokens.

  Smoothing spreads `label_smoothing` uniformly over the other classes (Szegedy et al. 2016),
  written without a one-hot tensor: -sum(q * logp) = -(c - l) logp[t] - l * sum(logp),
  with c = 1 - s and l = s / (V - 1). The constant entropy of q is subtracted so a perfect
  model reaches loss 0.
  """
  logits = logits.astype(jnp.float32)
  vocab = logits.shape[-1]
  logp = jax.nn.log_softmax(logits)
  logp_t = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  nll = -logp_t
  if label_smoothing:
    conf = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    const = -(conf * jnp.log(conf) + (vocab - 1) * low * jnp.log(low))
    loss = -(conf - low) * logp_t - low * jnp.sum(logp, axis=-1) - const
  else:
    loss = nll
  return jnp.sum(loss * weights), jnp.sum(nll * weights)


def _weights(batch: dict[str, jax.Array]) -> jax.Array:
  return (batch['targets'] > 0).astype(jnp.float32)


def split_microbatches(batch: dict[str, jax.Array], k: int) -> dict[str, jax.Array]:
  """[B, ...] arrays -> [k, B / k, ...]: microbatch i holds rows i, i + k, i + 2k, ...

  The batch is sharded over its rows in contiguous blocks, one per batch shard. Reshaping to
  [B / k, k, ...] splits each row index r into (r // k, r % k) and keeps the leading axis
  sharded exactly as before (a block of B / shards rows becomes B / (shards k) consecutive
  groups), so no row leaves its device; swapping the axes then gives microbatch i the rows
  r % k == i of every shard. The plain [k, B / k] reshape would instead give microbatch i
  the contiguous rows of only shards / k devices: all of its compute on a fraction of them
  and the rest of each microbatch moved across devices first.
  """
  def split(x):
    if x.shape[0] % k:
      raise UserError(f'a batch of {x.shape[0]} rows does not split into '
                      f'grad_accum_steps={k} microbatches')
    x = jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)
    return constrain(x, (None, 'batch') + (None,) * (x.ndim - 2))
  return jax.tree.map(split, batch)


def make_train_step(model: Model, tx: optax.GradientTransformation,
                    schedule: Callable[[jax.Array], jax.Array], config: Any) -> Callable:
  """Returns train_step(state, batch) -> (state, metrics).

  With config.grad_accum_steps = k > 1 the batch is run as k microbatches in a `lax.scan`
  (activations of one microbatch at a time) and their gradients summed before the one
  optimizer update. Every microbatch's summed loss is divided by the token count of the
  whole batch, so the sum over microbatches is exactly the k = 1 token-weighted mean (not a
  mean of per-microbatch means, which would weight tokens of short microbatches more).

  metrics['loss'] is what is minimised: the (label-smoothed) cross entropy, times
  1 - the model's ctc_weight (joint CTC-attention training: the model sows the weighted CTC loss),
  plus any losses the model sows into the 'losses' collection; metrics['nll'] is the plain NLL.
  """
  dropout_root = jax.random.fold_in(jax.random.key(config.seed), 0x5EED)
  smoothing = float(config.get('label_smoothing', 0.0))
  accum = int(config.get('grad_accum_steps', 1))
  attention_weight = 1.0 - float(model.ctc_weight)
  if accum < 1:
    raise UserError(f'grad_accum_steps must be >= 1, got {accum}')

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    rng = jax.random.fold_in(dropout_root, state.step)
    weights = _weights(batch)
    wsum = jnp.maximum(jnp.sum(weights), 1.0)

    def loss_fn(params, mb, mb_rng):
      logits, sown = model.apply({'params': params}, mb, train=True, rngs={'dropout': mb_rng},
                                 mutable=['losses'])
      loss_sum, nll_sum = cross_entropy(logits, mb['targets'], _weights(mb), smoothing)
      # Auxiliary losses a model sows (e.g. Show-Attend-Tell's attention penalty) are sums
      # over the microbatch's rows, divided by the batch's target tokens like the NLL.
      aux = sum(jnp.sum(x) for x in jax.tree.leaves(sown.get('losses', {})))
      return (attention_weight * loss_sum + aux) / wsum, nll_sum / wsum

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if accum == 1:
      (loss, nll), grads = grad_fn(state.params, batch, rng)
    else:
      def accumulate(total, xs):
        i, mb = xs
        # Each microbatch draws its own dropout masks (the step's key folded with i).
        (l, n), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, total, (l, n, g)), None

      zero = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32),
              jax.tree.map(jnp.zeros_like, state.params))
      (loss, nll, grads), _ = lax.scan(accumulate, zero,
                                       (jnp.arange(accum), split_microbatches(batch, accum)))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, 'nll': nll, 'grad_norm': optax.tree.norm(grads),
               'learning_rate': schedule(state.step), 'target_tokens': jnp.sum(weights)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def make_eval_step(model: Model) -> Callable:
  """Returns eval_step(params, batch) -> summed NLL, token count and token accuracy hits."""

  def eval_step(params, batch):
    weights = _weights(batch)
    logits = model.apply({'params': params}, batch, train=False)
    _, nll_sum = cross_entropy(logits, batch['targets'], weights)
    hits = jnp.sum((jnp.argmax(logits, -1) == batch['targets']) * weights)
    return {'nll_sum': nll_sum, 'tokens': jnp.sum(weights), 'hits': hits}

  return eval_step


DECODE_METHODS = ('beam', 'greedy', 'sample', 'ctc_greedy')
# The keys only sampling reads, with their neutral values.
_SAMPLING_KEYS = {'temperature': 1.0, 'top_k': 0, 'top_p': 1.0}


def check_decode_config(decode_config: Any) -> str:
  """The decoding method of `config.decode`, after checking nothing set would be ignored.

  beam_size and alpha are the beam search's (every experiment sets them, so other methods
  leave them be); temperature, top_k and top_p are sampling's and must keep their neutral
  values (1.0, 0, 1.0) with another method.

  Raises:
    UserError: an unknown method, or a sampling key set for another method.
  """
  method = decode_config.get('method', 'beam')
  if method not in DECODE_METHODS:
    raise UserError(f'decode.method must be one of {DECODE_METHODS}, got {method!r}')
  if method != 'sample':
    for key, neutral in _SAMPLING_KEYS.items():
      if decode_config.get(key, neutral) != neutral:
        raise UserError(f'decode.{key}={decode_config.get(key)!r} is read only by '
                        f"decode.method='sample' (the method is {method!r})")
  if int(decode_config.max_len) < 1:
    raise UserError(f'decode.max_len must be >= 1, got {decode_config.max_len}')
  if decode_config.get('length_norm', 'gnmt') not in decoding.LENGTH_NORMS:
    raise UserError(f'decode.length_norm must be one of {decoding.LENGTH_NORMS}, got '
                    f'{decode_config.get("length_norm")!r}')
  if float(decode_config.get('patience', 0.0)) < 0:
    raise UserError(f'decode.patience must be >= 0, got {decode_config.get("patience")}')
  ctc_weight = decode_config.get('ctc_weight', 0.0)
  if not 0.0 <= float(ctc_weight) <= 1.0:
    raise UserError(f'decode.ctc_weight must be in [0, 1], got {ctc_weight}')
  if ctc_weight and (method != 'beam' or int(decode_config.get('beam_size', 1)) < 2):
    raise UserError(f'decode.ctc_weight={ctc_weight} rescores the hypotheses of a beam '
                    "search: it needs decode.method='beam' and decode.beam_size >= 2")
  return method


def ctc_rescore(seqs: jax.Array, scores: jax.Array, logits: jax.Array, mask: jax.Array, *,
                weight: float, alpha: float) -> jax.Array:
  """The best of each item's beam by (1 - weight) log P_att + weight log P_ctc over the
  length penalty: int32 [B, T].

  Args:
    seqs: [B, K, T] beam search hypotheses (ids, EOS, 0s); scores: [B, K] their summed
      attention log-probabilities over decoding.length_penalty(length incl. EOS, alpha), -inf
      for empty slots.
    logits, mask: the CTC head's [B, S, V] logits and [B, S] mask for the same items.
  """
  b, k, t = seqs.shape
  has_eos = jnp.any(seqs == EOS_ID, axis=-1)
  length = jnp.where(has_eos, jnp.argmax(seqs == EOS_ID, axis=-1) + 1, t)
  penalty = decoding.length_penalty(length, alpha)
  tiled = lambda x: jnp.repeat(x, k, axis=0)                               # item-major
  ctc = ctc_log_likelihood(tiled(logits), tiled(mask), seqs.reshape(b * k, t), EOS_ID)
  joint = ((1.0 - weight) * scores * penalty + weight * ctc.reshape(b, k)) / penalty
  joint = jnp.where(jnp.isfinite(scores), joint, -jnp.inf)
  best = jnp.argmax(jnp.where(jnp.isnan(joint), -jnp.inf, joint), axis=1)
  return jnp.take_along_axis(seqs, best[:, None, None], axis=1)[:, 0]


def make_predict_step(model: Model, decode_config: Any,
                      rules: decoding.Rules | None = None) -> Callable:
  """Returns predict_step(params, inputs, rng) -> the output sequences int32 [B, max_len].

  `inputs` is a dict holding 'inputs' (ids [B, S], features [B, T, F], waveforms [B, N] or
  images [B, H, W, C]) and, for features and waveforms, 'inputs_mask'. decode.method picks
  beam search (the best beam; beam_size, alpha), greedy search, ancestral sampling
  (temperature, top_k, top_p) from `rng`, which the other methods ignore, or 'ctc_greedy':
  the best path of the model's CTC head (model.ctc_weight > 0), without the decoder.

  Beam search ranks finished hypotheses by decode.length_norm ('gnmt' by default; 'length':
  CTranslate2's for Whisper, the length counting the tokens after the rules' prefix without
  EOS; 'length_eos': CTranslate2's Translator's, with EOS) and stops exactly
  (decode.patience 0) or, with decode.patience p > 0, after round(beam_size * p) finished
  hypotheses per item (decoding.beam_search).

  Joint CTC-attention decoding (decode.ctc_weight = w > 0, beam search, a model with a CTC
  head): the beam's finished hypotheses are rescored by (1 - w) log P_att + w log P_ctc,
  divided by the search's length penalty, and the best one is returned (n-best rescoring, as
  the attention rescoring of WeNet turned around; Kim et al. 2017 and ESPnet score the CTC
  prefix inside the search instead). The CTC term runs the encoder a second time.

  `rules` (the task's decode_rules(), e.g. Whisper's prompt and suppressed tokens) constrain
  every method but 'ctc_greedy' (decoding.with_rules).
  """
  method = check_decode_config(decode_config)
  beam_size = int(decode_config.get('beam_size', 1)) if method == 'beam' else 1
  max_len = int(decode_config.max_len)
  alpha = float(decode_config.get('alpha', 0.6))
  ctc_weight = float(decode_config.get('ctc_weight', 0.0))
  length_norm = str(decode_config.get('length_norm', 'gnmt'))
  patience = float(decode_config.get('patience', 0.0))
  prefix_len = len(rules.prefix) if rules is not None else 0
  sampling = {k: decode_config.get(k, v) for k, v in _SAMPLING_KEYS.items()}
  # A model that reads its own start token at position 0 (a pretrained checkpoint's:
  # model.decoder_start) may emit BOS's id, an ordinary token there; PAD is never emitted.
  bos_id = BOS_ID if getattr(model, 'decoder_start', -1) < 0 else PAD_ID

  def predict_step(params, inputs: dict[str, jax.Array], rng: jax.Array):
    if method == 'ctc_greedy':
      logits, mask = model.apply({'params': params}, inputs['inputs'], inputs.get('inputs_mask'),
                                 method='ctc_logits')
      return ctc_greedy(logits, mask, max_len, EOS_ID)
    cache = model.apply({'params': params}, inputs['inputs'], max_len, max(beam_size, 1),
                        inputs_mask=inputs.get('inputs_mask'), method='init_cache')

    def model_step(tokens, c):
      return model.apply({'params': params}, tokens, c, method='decode_step')

    lengths = None
    if rules is not None and rules.max_new:
      mask = inputs.get('inputs_mask')
      lengths = (jnp.sum(mask.astype(jnp.int32), axis=1) if mask is not None else
                 jnp.full(inputs['inputs'].shape[:1], inputs['inputs'].shape[1], jnp.int32))
    tokens_to_logits, cache = decoding.with_rules(model_step, cache, rules, lengths, EOS_ID)

    kw = dict(batch_size=inputs['inputs'].shape[0], max_len=max_len, bos_id=bos_id,
              eos_id=EOS_ID)
    if method == 'sample':
      return decoding.sample(tokens_to_logits, cache, rng, **kw, **sampling)[0]
    if beam_size <= 1:
      return decoding.greedy_search(tokens_to_logits, cache, **kw)[0]
    seqs, scores = decoding.beam_search(tokens_to_logits, cache, beam_size=beam_size,
                                        alpha=alpha, length_norm=length_norm,
                                        patience=patience, prefix_len=prefix_len, **kw)
    if ctc_weight > 0:
      logits, mask = model.apply({'params': params}, inputs['inputs'], inputs.get('inputs_mask'),
                                 method='ctc_logits')
      return ctc_rescore(seqs, scores, logits, mask, weight=ctc_weight, alpha=alpha)
    return seqs[:, 0]

  return predict_step
