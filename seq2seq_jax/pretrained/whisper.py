"""Whisper (Radford et al. 2022) as a preset of the Transformer's registered parts, its
weights from CTranslate2 (faster-whisper's model.bin) or Hugging Face (safetensors), and
greedy transcription with Whisper's prompt.

The preset (`preset(size)`, `model_config(...)`) is `model.name='transformer'` with:
  frontend  'whisper_conv' (models/frontends/whisper_conv.py): faster-whisper's log-mel of a
            30 s window, two kernel-3 convolutions with GELU (the second stride 2)
  positions sinusoidal on the encoder (Whisper's are the tensor2tensor layout ours have:
            sines then cosines, timescales 1..10^4), learned on the decoder (448 rows:
            `target_positions='learned'`, `max_len=448`)
  blocks    pre-LayerNorm (epsilon 1e-5: `norm`), exact-GELU MLP (`mlp='gelu'`), final
            LayerNorms on both stacks, no dropout
  tokens    unscaled embeddings (`scale_embeddings=False`), tied output: logits = y E^T
Whisper's key projections have no bias; ours have one, loaded as zeros (a key bias would
not change attention anyway: q.b is the same for every key, and softmax ignores it).

Weights: `load_ctranslate2(dir)` reads a CTranslate2 Whisper directory (model.bin,
config.json; pretrained/ctranslate2.py, any of its dtypes), `load_hf(dir)` a Hugging Face one
(model.safetensors, config.json); both give (model config, params) for `build_model(config,
vocab, vocab)` and `model.apply({'params': params}, ...)`. Hugging Face names are first renamed
to CTranslate2's (`hf_to_ct2`), so one mapping (`ct2_to_params`) fills our tree.

Transcription (`Transcriber`): the log-mel of the whole recording cut into 30 s windows (as
faster-whisper's transcribe without timestamps and with condition_on_previous_text=False),
each decoded from the prompt <|startoftranscript|><|lang|><|transcribe|><|notimestamps|>
by greedy decoding in one jitted `lax.while_loop` over the model's
cache (`Model.init_cache` / `decode_step`) until <|endoftext|>, as CTranslate2 decodes with
beam_size=1: the tokens `suppressed_ids` names never (config.json's suppress_ids and the
task tokens, as faster-whisper's get_suppressed_tokens), config.json's suppress_ids_begin
not first (suppress_blank), at most min(448 / 2, 448 - prompt) new tokens. It works in
Whisper's own token ids and cuts long recordings into 30 s windows; the speech task
(`model.pretrained`, checkpoints.py) runs the same model through the trainer's searches with
the ids permuted (whisper_tokens.py), and the tests check the one against the other. Text:
tokens below <|endoftext|> decoded by the `tokenizers` package from tokenizer.json.
"""
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seq2seq_jax.errors import UserError
from seq2seq_jax.models import audio
from seq2seq_jax.models import layers
from seq2seq_jax.pretrained import ctranslate2
from seq2seq_jax.pretrained import hf_text

# size: (width, heads, encoder layers, decoder layers, mel bins, vocabulary)
SIZES = {
    'tiny': (384, 6, 4, 4, 80, 51865),
    'base': (512, 8, 6, 6, 80, 51865),
    'small': (768, 12, 12, 12, 80, 51865),
    'medium': (1024, 16, 24, 24, 80, 51865),
    'large-v3': (1280, 20, 32, 32, 128, 51866),
}
TEXT_POSITIONS = 448     # the decoder's learned positions (n_text_ctx)
AUDIO_FRAMES = 3000      # the 30 s log-mel window (n_audio_ctx = 1500 after the stride)


def model_config(width: int, heads: int, encoder_layers: int, decoder_layers: int,
                 num_mels: int = 80, text_positions: int = TEXT_POSITIONS,
                 audio_frames: int = AUDIO_FRAMES) -> dict[str, Any]:
  """The Transformer config of a Whisper of these dimensions (see the module docstring)."""
  return dict(
      name='transformer', emb_dim=width, num_heads=heads, mlp_dim=4 * width,
      num_encoder_layers=encoder_layers, num_decoder_layers=decoder_layers,
      dropout_rate=0.0, attention_dropout_rate=0.0, positions='sinusoidal',
      target_positions='learned', max_len=text_positions, pre_norm=True, tie_output=True,
      scale_embeddings=False, norm=dict(name='layer_norm', epsilon=1e-5),
      mlp=dict(name='gelu'),
      frontend=dict(name='whisper_conv', num_mels=num_mels, frames=audio_frames))


def preset(size: str) -> dict[str, Any]:
  """The model config of an OpenAI Whisper size ('tiny', 'base', 'small', 'medium',
  'large-v3'); its vocabulary: vocab_size(size)."""
  if size not in SIZES:
    raise UserError(f'unknown Whisper size {size!r} (one of {", ".join(SIZES)})')
  width, heads, enc, dec, mels, _ = SIZES[size]
  return model_config(width, heads, enc, dec, mels)


def vocab_size(size: str) -> int:
  preset(size)
  return SIZES[size][5]


# --- parameter names -------------------------------------------------------------------
def _linear(w: np.ndarray, b: np.ndarray | None, in_dim: int, out_shape: tuple[int, ...]):
  """PyTorch/CTranslate2 weight [out, in] (+ bias [out]) -> our kernel [in, *out_shape]."""
  kernel = np.asarray(w, np.float32).T.reshape((in_dim,) + out_shape)
  bias = np.zeros(out_shape, np.float32) if b is None else np.asarray(b, np.float32)
  return {'kernel': kernel, 'bias': bias.reshape(out_shape)}


def _norm(v: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
  return {'scale': v[prefix + '/gamma'], 'bias': v[prefix + '/beta']}


def ct2_to_params(v: dict[str, np.ndarray], heads: int, encoder_layers: int,
                  decoder_layers: int) -> dict[str, Any]:
  """CTranslate2 WhisperSpec variables (float arrays, aliases resolved) -> our param tree."""
  def get(name):
    if name not in v:
      raise UserError(f'the Whisper checkpoint has no variable {name!r}')
    return np.asarray(v[name], np.float32)

  d = get('decoder/embeddings/weight').shape[1]
  hd = d // heads

  def lin(prefix, out_shape):
    bias = v.get(prefix + '/bias')
    return _linear(get(prefix + '/weight'), bias, d, out_shape)

  def mlp(prefix):
    return {'wi': _linear(get(prefix + '/linear_0/weight'), get(prefix + '/linear_0/bias'),
                          d, (get(prefix + '/linear_0/weight').shape[0],)),
            'wo': _linear(get(prefix + '/linear_1/weight'), get(prefix + '/linear_1/bias'),
                          get(prefix + '/linear_1/weight').shape[1], (d,))}

  def out_proj(prefix):
    w = get(prefix + '/weight')   # [d, heads * hd]
    return {'kernel': w.T.reshape(heads, hd, d), 'bias': get(prefix + '/bias')}

  def conv(prefix):
    return {'kernel': get(prefix + '/weight').transpose(2, 1, 0), 'bias': get(prefix + '/bias')}

  params: dict[str, Any] = {
      'frontend': {'conv1': conv('encoder/conv1'), 'conv2': conv('encoder/conv2')},
      'tgt_embed': {'embedding': get('decoder/embeddings/weight')},
      'tgt_pos': get('decoder/position_encodings/encodings'),
      'encoder_norm': _norm(v, 'encoder/layer_norm'),
      'decoder_norm': _norm(v, 'decoder/layer_norm'),
  }
  for i in range(encoder_layers):
    p = f'encoder/layer_{i}'
    params[f'encoder_layers_{i}'] = {
        'attn': {'qkv': lin(p + '/self_attention/linear_0', (3, heads, hd)),
                 'out': out_proj(p + '/self_attention/linear_1')},
        'ln_attn': _norm(v, p + '/self_attention/layer_norm'),
        'mlp': mlp(p + '/ffn'), 'ln_mlp': _norm(v, p + '/ffn/layer_norm')}
  for i in range(decoder_layers):
    p = f'decoder/layer_{i}'
    params[f'decoder_layers_{i}'] = {
        'self_attn': {'qkv': lin(p + '/self_attention/linear_0', (3, heads, hd)),
                      'out': out_proj(p + '/self_attention/linear_1')},
        'cross_attn': {'q': lin(p + '/attention/linear_0', (heads, hd)),
                       'kv': lin(p + '/attention/linear_1', (2, heads, hd)),
                       'out': out_proj(p + '/attention/linear_2')},
        'ln_self': _norm(v, p + '/self_attention/layer_norm'),
        'ln_cross': _norm(v, p + '/attention/layer_norm'),
        'mlp': mlp(p + '/ffn'), 'ln_mlp': _norm(v, p + '/ffn/layer_norm')}
  proj = v.get('decoder/projection/weight')
  if proj is not None and not np.array_equal(np.asarray(proj, np.float32),
                                             params['tgt_embed']['embedding']):
    raise UserError('the Whisper checkpoint has an output projection that differs from its '
                    'token embedding; only tied outputs (every OpenAI Whisper) are supported')
  return params


def hf_to_ct2(t: dict[str, np.ndarray], encoder_layers: int,
              decoder_layers: int) -> dict[str, np.ndarray]:
  """Hugging Face WhisperForConditionalGeneration tensors -> CTranslate2's names (q, k, v
  fused as CTranslate2's converter fuses them, the missing key bias as zeros)."""
  def get(name):
    for key in (name, name.replace('model.', '', 1)):
      if key in t:
        return np.asarray(t[key], np.float32)
    raise UserError(f'the Hugging Face Whisper checkpoint has no tensor {name!r}')

  out = {}

  def norm(src, dst):
    out[dst + '/gamma'], out[dst + '/beta'] = get(src + '.weight'), get(src + '.bias')

  def lin(src, dst):
    out[dst + '/weight'], out[dst + '/bias'] = get(src + '.weight'), get(src + '.bias')

  def fused(src, names, dst):
    ws = [get(f'{src}.{n}.weight') for n in names]
    bs = [get(f'{src}.{n}.bias') if n != 'k_proj' else np.zeros(w.shape[0], np.float32)
          for n, w in zip(names, ws)]
    out[dst + '/weight'], out[dst + '/bias'] = np.concatenate(ws), np.concatenate(bs)

  for conv in ('conv1', 'conv2'):
    lin(f'model.encoder.{conv}', f'encoder/{conv}')
  out['encoder/position_encodings/encodings'] = get('model.encoder.embed_positions.weight')
  norm('model.encoder.layer_norm', 'encoder/layer_norm')
  out['decoder/embeddings/weight'] = get('model.decoder.embed_tokens.weight')
  out['decoder/position_encodings/encodings'] = get('model.decoder.embed_positions.weight')
  norm('model.decoder.layer_norm', 'decoder/layer_norm')
  for side, n in (('encoder', encoder_layers), ('decoder', decoder_layers)):
    for i in range(n):
      src, dst = f'model.{side}.layers.{i}', f'{side}/layer_{i}'
      fused(src + '.self_attn', ('q_proj', 'k_proj', 'v_proj'), dst + '/self_attention/linear_0')
      lin(src + '.self_attn.out_proj', dst + '/self_attention/linear_1')
      norm(src + '.self_attn_layer_norm', dst + '/self_attention/layer_norm')
      if side == 'decoder':
        fused(src + '.encoder_attn', ('q_proj',), dst + '/attention/linear_0')
        fused(src + '.encoder_attn', ('k_proj', 'v_proj'), dst + '/attention/linear_1')
        lin(src + '.encoder_attn.out_proj', dst + '/attention/linear_2')
        norm(src + '.encoder_attn_layer_norm', dst + '/attention/layer_norm')
      lin(src + '.fc1', dst + '/ffn/linear_0')
      lin(src + '.fc2', dst + '/ffn/linear_1')
      norm(src + '.final_layer_norm', dst + '/ffn/layer_norm')
  if 'proj_out.weight' in t:
    out['decoder/projection/weight'] = get('proj_out.weight')
  return out


def check_encoder_positions(table: np.ndarray, tol: float = 2e-3) -> None:
  """The checkpoint's encoder positions must be the sinusoids the model computes."""
  ours = np.asarray(layers.sinusoidal(jnp.arange(table.shape[0]), table.shape[1]))
  diff = float(np.max(np.abs(ours - table)))
  if diff > tol:
    raise UserError(f'the checkpoint\'s encoder positions differ from Whisper\'s sinusoids by '
                    f'{diff:.3g}; this model computes sinusoids')


def _from_ct2_names(v: dict[str, np.ndarray], heads: int, num_mels_hint: int | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
  enc = sum(1 for k in v if k.startswith('encoder/layer_') and k.endswith('ffn/linear_0/weight'))
  dec = sum(1 for k in v if k.startswith('decoder/layer_') and k.endswith('ffn/linear_0/weight'))
  if not enc or not dec or 'encoder/conv1/weight' not in v:
    raise UserError('the checkpoint is not a Whisper model (no encoder/decoder layers or conv1)')
  width, num_mels = v['encoder/conv1/weight'].shape[:2]
  del num_mels_hint
  frames = 2 * v['encoder/position_encodings/encodings'].shape[0]
  text_positions = v['decoder/position_encodings/encodings'].shape[0]
  check_encoder_positions(np.asarray(v['encoder/position_encodings/encodings'], np.float32))
  config = model_config(int(width), heads, enc, dec, int(num_mels), int(text_positions),
                        int(frames))
  return config, ct2_to_params(v, heads, enc, dec)


def load_ctranslate2(directory: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """(model config, params, config.json) of a CTranslate2 Whisper directory."""
  header, v = ctranslate2.read(os.path.join(directory, 'model.bin'))
  if header['spec'] != 'WhisperSpec':
    raise UserError(f'{directory}/model.bin holds a {header["spec"] or "pre-v2"} model, not '
                    'WhisperSpec')
  heads = int(v['encoder/num_heads'])
  if int(v.get('decoder/num_heads', heads)) != heads:
    raise UserError('encoder and decoder head counts differ; this preset has one')
  config_json = hf_text.read_json(os.path.join(directory, 'config.json'))
  config, params = _from_ct2_names(v, heads)
  return config, params, config_json


def load_hf(directory: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """(model config, params, config.json) of a Hugging Face Whisper directory
  (model.safetensors + config.json)."""
  cfg = hf_text.read_json(os.path.join(directory, 'config.json'))
  path = os.path.join(directory, 'model.safetensors')
  if not os.path.isfile(path):
    raise UserError(f'no model.safetensors in {directory!r}')
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    tensors = load_file(path)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{path} is not a safetensors file: {e}') from None
  try:
    heads = int(cfg['encoder_attention_heads'])
    enc, dec = int(cfg['encoder_layers']), int(cfg['decoder_layers'])
  except KeyError as e:
    raise UserError(f'{directory}/config.json has no {e} (not a Whisper config)') from None
  if int(cfg.get('decoder_attention_heads', heads)) != heads:
    raise UserError('encoder and decoder head counts differ; this preset has one')
  v = hf_to_ct2(tensors, enc, dec)
  config, params = _from_ct2_names(v, heads)
  return config, params, cfg


# --- transcription -----------------------------------------------------------------------
class Transcriber:
  """Greedy Whisper transcription of 16 kHz waveforms (see the module docstring).

  Args:
    config: the model config (load_ctranslate2 / load_hf / preset).
    params: the parameter tree.
    config_json: CTranslate2's config.json (suppress_ids, suppress_ids_begin) or Hugging
      Face's (suppress_tokens, begin_suppress_tokens), or {}.
    tokenizer_path: tokenizer.json.
    language: the language code of the prompt ('en').
  """

  def __init__(self, config: dict[str, Any], params: Any, config_json: dict[str, Any],
               tokenizer_path: str, language: str = 'en'):
    from seq2seq_jax.models import build_model  # pylint: disable=g-import-not-at-top
    if not os.path.isfile(tokenizer_path):
      raise UserError(f'no tokenizer at {tokenizer_path!r}')
    from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
    self.tokenizer = Tokenizer.from_file(tokenizer_path)
    vocab = params['tgt_embed']['embedding'].shape[0]
    self.model = build_model(config, vocab, vocab)
    self.params = jax.tree.map(jnp.asarray, params)
    tid = self._id
    self.eot = tid('<|endoftext|>')
    self.prompt = [tid('<|startoftranscript|>'), tid(f'<|{language}|>'), tid('<|transcribe|>'),
                   tid('<|notimestamps|>')]
    self.suppress = suppressed_ids(self.tokenizer, config_json)
    self.suppress_begin = [int(i) for i in config_json.get(
        'suppress_ids_begin', config_json.get('begin_suppress_tokens') or [])]
    self.text_positions = config['max_len']
    self.frames = int(dict(config['frontend'])['frames'])
    num_mels = int(dict(config['frontend'])['num_mels'])
    self.vocab = vocab
    self._run = jax.jit(self._greedy, static_argnames=('max_new',))
    self._log_mel = jax.jit(functools.partial(audio.whisper_log_mel, num_mels=num_mels),
                            static_argnames=('frames',))

  def _id(self, token: str) -> int:
    i = self.tokenizer.token_to_id(token)
    if i is None:
      raise UserError(f'tokenizer.json has no token {token!r}')
    return i

  def _greedy(self, params, inputs, mask, max_new: int):
    """Prompt, then greedy tokens [B, max_new] (EOT after the end) for the frontend's inputs
    (log-mel windows, or waveforms with their mask)."""
    model, prompt = self.model, jnp.asarray(self.prompt, jnp.int32)
    b, p = inputs.shape[0], len(self.prompt)
    total = p + max_new
    cache = model.apply({'params': params}, inputs, total, 1, mask,
                        method=model.init_cache)
    never = jnp.zeros((self.vocab,), bool).at[jnp.asarray(self.suppress, jnp.int32)].set(True)
    first = never.at[jnp.asarray(self.suppress_begin, jnp.int32)].set(True) \
        if self.suppress_begin else never

    def step(state):
      i, last, out, done, cache = state
      logits, cache = model.apply({'params': params}, last, cache, method=model.decode_step)
      banned = jnp.where(i == p - 1, first, never)
      best = jnp.argmax(jnp.where(banned, -jnp.inf, logits), axis=-1).astype(jnp.int32)
      forced = i + 1 < p
      nxt = jnp.where(forced, prompt[jnp.minimum(i + 1, p - 1)], jnp.where(done, self.eot, best))
      gen = i + 1 - p          # index of this token among the generated ones
      out = jnp.where((gen >= 0) & ~forced,
                      jax.lax.dynamic_update_slice(out, nxt[:, None], (0, jnp.maximum(gen, 0))),
                      out)
      done = done | ((~forced) & (nxt == self.eot))
      return i + 1, nxt, out, done, cache

    def cond(state):
      i, _, _, done, _ = state
      return (i < total - 1) & ~jnp.all(done)

    state = (jnp.int32(0), jnp.full((b,), prompt[0]), jnp.full((b, max_new), self.eot),
             jnp.zeros((b,), bool), cache)
    return jax.lax.while_loop(cond, step, state)[2]

  def max_new_tokens(self) -> int:
    """CTranslate2's limit: min(448 / 2, 448 - prompt length)."""
    return min(self.text_positions // 2, self.text_positions - len(self.prompt))

  def segments(self, waveforms: np.ndarray, lengths: np.ndarray | None = None
               ) -> list[list[list[int]]]:
    """Generated ids (up to, not including, <|endoftext|>) per row, per 30 s window.

    As faster-whisper's transcribe without timestamps and without conditioning on previous
    text: the log-mel of the whole recording (one maximum), cut into consecutive windows of
    `frames`, each decoded from the same prompt; a window exists where the recording has
    log-mel frames left (n // 160 frames in all)."""
    waveforms = np.asarray(waveforms, np.float32)
    if waveforms.ndim == 1:
      waveforms = waveforms[None]
    b = waveforms.shape[0]
    lengths = np.full(b, waveforms.shape[1]) if lengths is None else np.asarray(lengths)
    content = lengths // audio.WHISPER_HOP
    windows = max(1, -(-int(content.max()) // self.frames))
    mel = np.asarray(self._log_mel(jnp.asarray(waveforms), jnp.asarray(lengths),
                                   frames=windows * self.frames))
    mel = mel.reshape(b * windows, self.frames, -1)
    todo = [r * windows + k for r in range(b) for k in range(windows)
            if k * self.frames < content[r]]
    out: list[list[list[int]]] = [[] for _ in range(b)]
    if not todo:
      return out
    ids = np.asarray(self._run(self.params, jnp.asarray(mel[todo]), None,
                               max_new=self.max_new_tokens()))
    for i, row in zip(todo, ids):
      ends = np.nonzero(row == self.eot)[0]
      out[i // windows].append([int(t) for t in row[:ends[0] if len(ends) else len(row)]])
    return out

  def token_ids(self, waveforms: np.ndarray, lengths: np.ndarray | None = None
                ) -> list[list[int]]:
    """Generated ids per row, its windows' one after another."""
    return [sum(windows, []) for windows in self.segments(waveforms, lengths)]

  def text(self, ids: list[int]) -> str:
    """faster-whisper's decoding of ids: tokens below <|endoftext|>, stripped."""
    return self.tokenizer.decode([i for i in ids if i < self.eot]).strip()

  def transcribe(self, waveforms: np.ndarray, lengths: np.ndarray | None = None) -> list[str]:
    """One text per row: its windows' texts joined (as faster-whisper joins segments)."""
    return [''.join(self.tokenizer.decode([i for i in w if i < self.eot]) for w in windows
                    ).strip() for windows in self.segments(waveforms, lengths)]


def suppressed_ids(tokenizer, config_json: dict[str, Any]) -> list[int]:
  """The ids greedy decoding never emits: config.json's suppress_ids (Whisper's non-speech
  tokens) and the task tokens faster-whisper adds (get_suppressed_tokens)."""
  ids = set(int(i) for i in config_json.get('suppress_ids',
                                            config_json.get('suppress_tokens') or []))
  for token in ('<|transcribe|>', '<|translate|>', '<|startoftranscript|>', '<|startofprev|>',
                '<|startoflm|>', '<|nospeech|>', '<|nocaptions|>'):
    i = tokenizer.token_to_id(token)
    if i is not None:
      ids.add(i)
  return sorted(ids)
