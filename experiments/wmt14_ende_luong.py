r"""Luong, Pham & Manning 2015, "Effective Approaches to Attention-based Neural Machine
Translation": global attention ('general' score) with input feeding, WMT'14 English->German.
Needs the prepared TFDS dataset wmt14_translate/de-en.

  python launch.py --config=experiments/wmt14_ende_luong.py --mode=info   # 221,082,000
"""
import ml_collections

from common import base_config, decode, translation_data

STEPS_PER_EPOCH = 4_500_000 // 128         # Sec. 4.1: 4.5M sentence pairs; batch 128


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  if arg:  # no variants: a typo must not train the default silently
    raise ValueError(f'unknown config variant {arg!r} (known: none)')
  c = base_config(
      task='translation',
      batch_size=128,  # Sec. 4.1
      train_steps=12 * STEPS_PER_EPOCH,  # Sec. 4.1: 12 epochs (with dropout)
      eval_every_steps=10_000,
      log_every_steps=100,
      keep_checkpoints=3,
      label_smoothing=0.0)
  # Sec. 4.1: the 50K most frequent words of each language; sentences over 50 words dropped.
  c.data = translation_data(tfds_name='wmt14_translate/de-en', src_lang='en', tgt_lang='de',
                            shared_vocab=False, src_vocab_size=50_000, tgt_vocab_size=50_000,
                            spm_model_type='word', packing=False, buckets=(16, 32, 51),
                            max_len=51)
  c.model = dict(
      name='rnn', cell='lstm',
      emb_dim=1000, hidden_dim=1000,       # Sec. 4.1: 1000 cells, 1000-dim embeddings
      encoder_layers=4, decoder_layers=4,  # Sec. 4.1: stacking LSTM, 4 layers
      bidirectional=False,
      reverse_source=True,                 # Table 1: "+reverse"
      dropout_rate=0.2,                    # Sec. 4.1: dropout 0.2
      attention='general',                 # Sec. 3.1, Eq. 8: score = h_t^T W_a h_s
      input_feeding=True,                  # Sec. 3.3
      readout='linear', bridge='final', tie_output=False,
      init_scale=0.1)                      # Sec. 4.1: uniform in [-0.1, 0.1]
  # Sec. 4.1: SGD, lr 1, after 8 epochs halve every epoch; gradient norm clipped at 5.
  c.optimizer = dict(name='sgd', learning_rate=1.0, schedule='step_halving',
                     halve_after_steps=8 * STEPS_PER_EPOCH, halve_every_steps=STEPS_PER_EPOCH,
                     warmup_steps=0, grad_clip_norm=5.0)
  c.decode = decode(beam_size=12, alpha=0.0, max_len=80)  # beam size ours (Sutskever's 12)
  return c
