r"""Attention LSTM G2P on CMUdict: bidirectional LSTM encoder, Luong attention decoder.

In the spirit of Toshniwal & Livescu 2016 (attention encoder-decoder G2P); data, split,
evaluation and parallelism as in the Transformer G2P baseline (only the model and optimizer
differ). Trains on a 2-core CPU in under 30 minutes.

  python launch.py --config=experiments/g2p_cmudict_lstm_attention.py --workdir=runs/g2p_lstm
  python launch.py --config=experiments/g2p_cmudict_lstm_attention.py:smoke --workdir=/tmp/l
"""
import ml_collections

import g2p_cmudict_transformer as base


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = base.get_config('smoke' if arg == 'smoke' else '')
  c.model = dict(
      name='rnn', cell='lstm',
      emb_dim=128,
      hidden_dim=192,              # per direction; the decoder gets 2 x 192 = 384
      encoder_layers=2, decoder_layers=1,
      bidirectional=True,
      reverse_source=False,
      dropout_rate=0.2,
      attention='general',         # Luong et al. 2015, Eq. 8; try none/bahdanau/dot/concat
      input_feeding=True,
      readout='linear',
      bridge='dense',              # decoder starts from tanh(W h_1 backward) (Bahdanau et al.)
      tie_output=False)
  c.label_smoothing = 0.1
  c.optimizer.update(name='adam', learning_rate=2e-3, b2=0.999, eps=1e-8, schedule='cosine',
                     warmup_steps=200)
  if arg == 'smoke':
    c.model.update(emb_dim=16, hidden_dim=16)
  elif arg:
    raise ValueError(f'unknown config variant {arg!r} (known: smoke)')
  return c
