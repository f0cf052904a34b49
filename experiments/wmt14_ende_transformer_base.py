r"""Transformer base on WMT'14 English->German (Vaswani et al. 2017, Table 3 "base").

Needs the TFDS dataset wmt14_translate/de-en prepared as array_record in data.data_dir (once,
on a machine that can download it; then copy the directory if need be):
  tfds build wmt14_translate/de-en --file_format=array_record --data_dir=~/tensorflow_datasets
  python launch.py --config=experiments/wmt14_ende_transformer_base.py --workdir=runs/base
  python launch.py --config=experiments/wmt14_ende_transformer_base.py --mode=info
Other pairs and directions are overrides, e.g. --config.data.tfds_name=wmt14_translate/fr-en
--config.data.tgt_lang=fr, or --config.data.src_lang=de --config.data.tgt_lang=en.
Validation is newstest2013, test newstest2014. BLEU is sacreBLEU's detokenized score
(seq2seq_jax/metrics/bleu.py), not the tokenized, compound-split BLEU of the paper's Table 2 (27.3
base, 28.4 big), which runs higher on the same output.
"""
import ml_collections

from common import base_config, decode, translation_data

D_MODEL = 512
WARMUP = 4000                              # Sec. 5.3


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  if arg:  # no variants: a typo must not train the default silently
    raise ValueError(f'unknown config variant {arg!r} (known: none)')
  c = base_config(
      task='translation',
      # Sec. 5.1: batches of ~25000 source + ~25000 target tokens: 96 packed rows x 256 slots
      # = 24576 per side; the trainer logs how full the rows are (data/packing.py).
      batch_size=96,
      train_steps=100_000,  # Sec. 5.2: base models, 100,000 steps
      eval_every_steps=5000,
      log_every_steps=100,
      # Sec. 6.1 averages the last 5 checkpoints (written every 10 minutes); they are kept,
      # averaging them is left to the user.
      keep_checkpoints=5,
      label_smoothing=0.1)  # Sec. 5.4: eps_ls = 0.1
  # Sec. 5.1: byte-pair encoding, a shared source-target vocabulary of about 37000 tokens.
  c.data = translation_data(tfds_name='wmt14_translate/de-en', src_lang='en', tgt_lang='de',
                            shared_vocab=True, vocab_size=37000, spm_model_type='bpe',
                            max_len=256, packing=True, eval_batch_size=64)
  c.model = dict(
      name='transformer',
      emb_dim=D_MODEL, num_heads=8, qkv_dim=D_MODEL, mlp_dim=2048,   # Table 3: d_model, h, d_ff
      num_encoder_layers=6, num_decoder_layers=6,                     # Table 3: N = 6
      dropout_rate=0.1,                                               # Table 3: P_drop
      attention_dropout_rate=0.0,
      positions='sinusoidal',                                          # Sec. 3.5
      pre_norm=False,                                                  # Sec. 3.1: post-LN
      share_embeddings=True, tie_output=True,                          # Sec. 3.4
      max_len=256)
  # Sec. 5.3, Eq. 3: lr = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5); its peak,
  # d_model^-0.5 * warmup^-0.5, is our learning_rate with the 'rsqrt' schedule.
  c.optimizer = dict(name='adam', learning_rate=D_MODEL ** -0.5 * WARMUP ** -0.5,
                     b1=0.9, b2=0.98, eps=1e-9,          # Sec. 5.3
                     weight_decay=0.0, schedule='rsqrt', warmup_steps=WARMUP,
                     grad_clip_norm=0.0)
  c.decode = decode(beam_size=4, alpha=0.6, max_len=256)  # Sec. 6.1: beam 4, alpha 0.6
  return c
