r"""Attention LSTM English -> French on Debian's package descriptions (DDTP).

Luong, Pham & Manning 2015 global attention ('general' score, Eq. 8) with input feeding
(Sec. 3.3) over a bidirectional LSTM encoder. Data, vocabulary, evaluation and decoding are
the Transformer's (ddtp_enfr_transformer.py); RNNs read unpacked, length-bucketed batches.
Sized like it (7,467,904 parameters against 7,578,624) for under an hour of a slow 2-core CPU
(README has the measured run).

  python launch.py --config=experiments/ddtp_enfr_lstm_attention.py --workdir=runs/ddtp_lstm
  python launch.py --config=experiments/ddtp_enfr_lstm_attention.py:smoke --workdir=/tmp/ddtp_l
  python launch.py --config=experiments/ddtp_enfr_lstm_attention.py --mode=eval \
      --workdir=runs/ddtp_lstm --config.decode.beam_size=1                # greedy
English -> German: --config.data.tgt_lang=de.
"""
import ml_collections

from common import check_variant, smoke

import ddtp_enfr_transformer as base


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, ('', 'smoke'))
  c = base.get_config(arg)
  # Pairs go to the smallest bucket holding both sides: padded to 40 tokens per side on
  # average (46 with buckets 16/32/64/128); each bucket compiles once.
  c.data.update(packing=False, buckets=(16, 24, 32, 48, 64, 96, 128))
  c.batch_size = 64                # pairs: ~2,000 real tokens per side per step
  # ~2.1 epochs of 712 batches, for well under an hour on a 1.5e11 FLOP/s host (README).
  c.train_steps = 1500
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.model = dict(
      name='rnn', cell='lstm',
      emb_dim=256,
      hidden_dim=192,              # per direction; the decoder gets 2 x 192 = 384
      encoder_layers=2, decoder_layers=1,
      bidirectional=True,
      reverse_source=False,        # a bidirectional encoder reads both ways anyway
      dropout_rate=0.2,            # Luong et al. 2015, Sec. 4.1
      attention='general',         # Luong et al. 2015, Eq. 8: score = h_t^T W_a h_s
      input_feeding=True,          # Luong et al. 2015, Sec. 3.3
      readout='linear', readout_dim=256,
      bridge='dense',              # decoder starts at tanh(W h_1 backward) (Bahdanau et al.)
      tie_output=True,             # readout (256) = emb_dim: the 8k x 256 output is shared
      max_len=128)
  c.optimizer = dict(name='adam', learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8,
                     schedule='cosine', warmup_steps=150, grad_clip_norm=1.0)
  if arg == 'smoke':               # a minute: checks the whole path, learns little
    c.data.buckets = (16, 32, 64, 128)
    smoke(c, batch_size=8, model=dict(emb_dim=16, hidden_dim=16, encoder_layers=1,
                                      readout_dim=16))
  return c
