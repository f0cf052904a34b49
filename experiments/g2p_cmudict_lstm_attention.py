r"""Attention LSTM G2P on CMUdict: bidirectional LSTM encoder, Luong attention decoder.

In the spirit of Toshniwal & Livescu 2016, "Jointly learning to align and convert graphemes
to phonemes with neural attention models" (SLT; PER 5.0% / WER 21.7% on CMUdict) and Yao &
Zweig 2015 (LSTM G2P, WER about 23-25%). Data, split, evaluation, checkpointing and
parallelism are the Transformer G2P baseline's (only the model and the optimizer differ); our
split differs from the papers', and they score phonemes without stress markers as far as we
know (compare with `wer_nostress`). Trains on a 2-core CPU in under 30 minutes.

  python launch.py --config=experiments/g2p_cmudict_lstm_attention.py --workdir=runs/g2p_lstm
  python launch.py --config=experiments/g2p_cmudict_lstm_attention.py:smoke --workdir=/tmp/l
  python launch.py --config=experiments/g2p_cmudict_lstm_attention.py:long --workdir=runs/g2p_lstm_long
  python launch.py --config=experiments/g2p_cmudict_lstm_attention.py:paper --workdir=runs/g2p_lstm_paper
"""
import ml_collections

from common import check_variant

import g2p_cmudict_transformer as base


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, ('', 'smoke', 'long', 'paper'))
  c = base.get_config(arg)         # 'long': 12000 steps, as the Transformer's; 'paper': no stress
  c.model = dict(
      name='rnn', cell='lstm',
      emb_dim=128,
      hidden_dim=192,              # per direction; the decoder gets 2 x 192 = 384
      encoder_layers=2, decoder_layers=1,
      bidirectional=True,
      reverse_source=False,        # a bidirectional encoder reads both ways anyway
      dropout_rate=0.2,
      attention='general',         # Luong et al. 2015, Eq. 8; try none/bahdanau/dot/concat
      input_feeding=True,          # Luong et al. 2015, Sec. 3.3
      readout='linear',
      bridge='dense',              # decoder starts at tanh(W h_1 backward) (Bahdanau et al.)
      tie_output=False,
      max_len=64)
  c.label_smoothing = 0.1
  c.optimizer = dict(name='adam', learning_rate=2e-3, b1=0.9, b2=0.999, eps=1e-8,
                     schedule='cosine', warmup_steps=200, grad_clip_norm=1.0)
  if arg == 'smoke':               # seconds on a CPU: checks the whole path, learns little
    c.model.update(emb_dim=16, hidden_dim=16, encoder_layers=1)
    c.optimizer.warmup_steps = 5
  return c
