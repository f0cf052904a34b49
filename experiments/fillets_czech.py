r"""Real human speech: the Czech voice recordings of Fish Fillets NG (Debian packages).

  apt-get install fillets-ng-data fillets-ng-data-cs

About 1,700 lines (95 minutes, up to 12 s each) recorded by the game's voice actors, paired
with their Czech text (seq2seq_jax/datasets/fillets_speech.py), split by level: 1,381 training
lines (77 min), 72 validation (4 min), 250 test (13 min). Characters out (the Czech alphabet,
digits and space; the few Cyrillic letters of one level are UNK). A small corpus for speech
recognition from scratch: the result is whatever 77 minutes of speech teach, reported as test
CER and WER.

  python launch.py --config=experiments/fillets_czech.py --workdir=runs/fillets_tf
  python launch.py --config=experiments/fillets_czech.py:las --workdir=runs/fillets_las

Variants: '' the speech Transformer (conv subsampler, joint CTC 0.3), 'las' (the LAS model of
experiments/spoken_digits.py).
"""
import ml_collections

from common import base_config, check_variant, decode, speech_data

VARIANTS = ('', 'las')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, VARIANTS)
  c = base_config(
      task='speech',
      batch_size=16,
      train_steps=1500,
      eval_every_steps=500)
  c.data = speech_data(
      tfds_name='', cache_audio=True, fillets={},
      alphabet='abcdefghijklmnopqrstuvwxyzáčďéěíňóřšťúůýž0123456789 ',
      second_buckets=(2.0, 3.0, 4.0, 6.0, 8.0, 12.0),
      target_len=200, eval_batch_size=50)
  # Compile the train step for every length bucket before the first step, 2 at a time.
  c.precompile_threads = 2
  audio = dict(num_mels=80, spec_augment=(2, 27, 2, 40, 0.2))
  if arg == 'las':
    c.model = dict(name='rnn', cell='lstm', frontend=dict(name='log_mel', **audio),
                   emb_dim=96, hidden_dim=128,
                   encoder_layers=3, pyramid=2, bidirectional=True, decoder_layers=1,
                   decoder_hidden_dim=256, attention='concat', attention_dim=128,
                   input_feeding=True, dropout_rate=0.2)
  else:
    c.model = dict(name='transformer', frontend=dict(name='audio_conv', channels=32, **audio),
                   emb_dim=144,
                   num_heads=4, qkv_dim=144, mlp_dim=576, num_encoder_layers=6,
                   num_decoder_layers=2, dropout_rate=0.15, attention_dropout_rate=0.1,
                   positions='sinusoidal', pre_norm=True, tie_output=True, max_len=512,
                   ctc_weight=0.3)
  c.optimizer = dict(name='adam', learning_rate=1e-3, b1=0.9, b2=0.98, eps=1e-9,
                     schedule='cosine', warmup_steps=200, grad_clip_norm=5.0)
  c.label_smoothing = 0.1
  c.decode = decode(beam_size=4, alpha=0.6, max_len=200)
  return c
