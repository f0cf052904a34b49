r"""Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to Align
and Translate": RNNsearch-50 on WMT'14 English->French. Needs the prepared TFDS dataset
wmt14_translate/fr-en.

  python launch.py --config=experiments/wmt14_enfr_bahdanau.py --mode=info   # 80,443,000
"""
import ml_collections

from common import base_config, decode, translation_data


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  if arg:  # no variants: a typo must not train the default silently
    raise ValueError(f'unknown config variant {arg!r} (known: none)')
  c = base_config(
      task='translation',
      batch_size=80,  # Sec. 4.2: minibatches of 80 sentences
      train_steps=400_000,  # ours: the paper trains ~5 days (Sec. 4.2)
      eval_every_steps=10_000,
      log_every_steps=100,
      keep_checkpoints=3,
      # App. B.1 initialises with Gaussians (W_a, U_a ~ N(0, 0.001^2), the rest N(0, 0.01^2)) and
      label_smoothing=0.0)  # orthogonal recurrent matrices; we keep the defaults (Xavier; orthogonal recurrent blocks).
  # Sec. 4.1: a shortlist of the 30,000 most frequent words per language; others -> UNK.
  # Sec. 4.2: RNNsearch-50 trains on sentences of up to 50 words.
  c.data = translation_data(tfds_name='wmt14_translate/fr-en', src_lang='en', tgt_lang='fr',
                            shared_vocab=False, src_vocab_size=30_000, tgt_vocab_size=30_000,
                            spm_model_type='word', packing=False, buckets=(16, 32, 51),
                            max_len=51)
  c.model = dict(
      name='rnn', cell='gru',              # App. A.1: gated hidden units (GRU)
      emb_dim=620,                         # App. A.2: word embedding dimensionality 620
      hidden_dim=1000,                     # App. A.2: 1000 hidden units, each direction
      decoder_hidden_dim=1000,
      encoder_layers=1, decoder_layers=1,
      bidirectional=True,                  # Sec. 3.2: bidirectional encoder
      reverse_source=False,
      dropout_rate=0.0,
      attention='bahdanau', attention_dim=1000,   # App. A.1.2: alignment model, n' = 1000
      readout='maxout', readout_dim=500,   # App. A.2.2: maxout hidden layer of 500 units (l)
      bridge='dense',                      # App. A.2.2: s_0 = tanh(W_s h_1 backward)
      tie_output=False)
  # App. B.2: Adadelta (eps 1e-6, rho 0.95); gradients renormalised to norm 1 when larger.
  c.optimizer = dict(name='adadelta', learning_rate=1.0, rho=0.95, eps=1e-6,
                     schedule='constant', warmup_steps=0, grad_clip_norm=1.0)
  c.decode = decode(beam_size=12, alpha=0.0, max_len=80)  # beam search; size ours (Sutskever's 12)
  return c
