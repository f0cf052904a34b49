r"""Sutskever, Vinyals & Le 2014, "Sequence to Sequence Learning with Neural Networks".

WMT'14 English->French, deep LSTM without attention, reversed source. Needs the prepared
TFDS dataset wmt14_translate/fr-en.
  python launch.py --config=experiments/wmt14_enfr_sutskever.py --mode=info   # 384,112,000
(Sec. 3.4: "384M parameters"; their Graves-2013 LSTM adds 24k peephole weights.)
"""
import ml_collections

from common import base_config, decode, translation_data

STEPS_PER_EPOCH = 12_000_000 // 128        # Sec. 3.1: 12M sentence pairs; Sec. 3.4: batch 128


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  if arg:  # no variants: a typo must not train the default silently
    raise ValueError(f'unknown config variant {arg!r} (known: none)')
  c = base_config(
      task='translation',
      batch_size=128,  # Sec. 3.4
      train_steps=int(7.5 * STEPS_PER_EPOCH),  # Sec. 3.4: 7.5 epochs
      eval_every_steps=10_000,
      log_every_steps=100,
      keep_checkpoints=3,
      label_smoothing=0.0)
  # Sec. 3.1: 160,000 most frequent source words, 80,000 target words; others -> UNK.
  c.data = translation_data(tfds_name='wmt14_translate/fr-en', src_lang='en', tgt_lang='fr',
                            shared_vocab=False, src_vocab_size=160_000, tgt_vocab_size=80_000,
                            spm_model_type='word', packing=False, buckets=(16, 32, 64, 128),
                            max_len=128)
  c.model = dict(
      name='rnn', cell='lstm',
      emb_dim=1000, hidden_dim=1000,       # Sec. 3.4: 1000 cells, 1000-dim word embeddings
      encoder_layers=4, decoder_layers=4,  # Sec. 3.4: 4 layers
      bidirectional=False,
      reverse_source=True,                 # Sec. 3.3
      dropout_rate=0.0,                    # no dropout in the paper
      attention='none', bridge='final',    # the decoder starts from the encoder's state
      readout='linear', tie_output=False,
      init_scale=0.08)                     # Sec. 3.4: uniform in [-0.08, 0.08]
  # Sec. 3.4: SGD without momentum, lr 0.7; after 5 epochs halve every half epoch;
  # rescale gradients whose norm exceeds 5.
  c.optimizer = dict(name='sgd', learning_rate=0.7, schedule='step_halving',
                     halve_after_steps=5 * STEPS_PER_EPOCH,
                     halve_every_steps=STEPS_PER_EPOCH // 2, warmup_steps=0, grad_clip_norm=5.0)
  c.decode = decode(beam_size=12, alpha=0.0, max_len=128)  # Sec. 3.2 / Table 1: beam 12
  return c
