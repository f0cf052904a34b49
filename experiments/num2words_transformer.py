r"""Offline translation: English number words -> French number words (num2words).

The whole MT path on data that exists without a download: corpus -> SentencePiece (BPE,
trained into DIR/spm/) -> packed batches -> Transformer -> beam search -> sacreBLEU / chrF.
The numbers 0..19999 are split by a hash of the number (data/corpus.py num2words_split:
90% train, 5% validation, 5% test), so every test number is unseen in training. A few
minutes on a laptop CPU; a broken pipeline (misaligned packing, lost EOS, a decoding bug)
shows as a BLEU far below the ~99 this reaches.

  python launch.py --config=experiments/num2words_transformer.py --workdir=runs/num2words
  python launch.py --config=experiments/num2words_transformer.py:smoke --workdir=/tmp/n2w
  echo "four hundred and two" | python launch.py \
      --config=experiments/num2words_transformer.py --mode=predict --workdir=runs/num2words
German instead of French: --config.data.tgt_lang=de (one long word per number, so chrF is
the more telling metric there).
"""
import ml_collections

from common import base_config, decode, smoke, translation_data


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = base_config(
      task='translation',
      batch_size=64,  # packed rows: ~4000 tokens per side per step
      train_steps=600,
      eval_every_steps=200)
  c.data = translation_data(
      source='num2words', src_lang='en', tgt_lang='fr', num2words_max=20000,
      vocab_size=256, shared_vocab=True, spm_model_type='bpe',
      max_len=64, packing=True,       # rows of 64 tokens hold ~7 pairs each
      eval_batch_size=128, eval_max_examples=0)  # the whole validation/test split (~1000)
  c.model = dict(name='transformer', emb_dim=128, num_heads=4, qkv_dim=128, mlp_dim=512,
                 num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.1,
                 attention_dropout_rate=0.0, positions='sinusoidal',
                 pre_norm=True,       # stabler than the paper's post-LN at a high lr
                 share_embeddings=True, tie_output=True, max_len=64)
  c.optimizer = dict(name='adam', learning_rate=2e-3, b1=0.9, b2=0.98, eps=1e-9,
                     weight_decay=0.0, schedule='rsqrt', warmup_steps=200, grad_clip_norm=1.0)
  c.decode = decode(beam_size=4, alpha=0.6, max_len=32)  # French outputs: at most 13 pieces
  if arg == 'smoke':  # seconds: checks the whole path, learns little
    c.data.update(num2words_max=2000, eval_max_examples=32, eval_batch_size=32)
    smoke(c, batch_size=16, model=dict(emb_dim=32, qkv_dim=32, mlp_dim=64, num_encoder_layers=1,
                                       num_decoder_layers=1))
  elif arg:
    raise ValueError(f'unknown config variant {arg!r} (known: smoke)')
  return c
