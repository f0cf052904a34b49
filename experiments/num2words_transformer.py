r"""Offline translation: English number words -> French number words (num2words).

The whole MT path on data that exists offline: corpus -> SentencePiece (trained into the
workdir) -> packed batches -> Transformer -> beam search -> sacreBLEU / chrF.

  python launch.py --config=experiments/num2words_transformer.py --workdir=runs/num2words
  python launch.py --config=experiments/num2words_transformer.py:smoke --workdir=/tmp/n2w
"""
import ml_collections

from common import mesh_and_rules, translation_data


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = 'translation'
  c.data = translation_data(
      source='num2words', src_lang='en', tgt_lang='fr', num2words_max=20000,
      vocab_size=256, spm_model_type='bpe', max_len=64, eval_batch_size=128,
      eval_max_examples=500)
  c.batch_size = 64             # packed rows of 64 tokens (~3 pairs each)
  c.train_steps = 2000
  c.log_every_steps = 50
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 2
  c.model = dict(name='transformer', emb_dim=128, num_heads=4, mlp_dim=512,
                 num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.1,
                 attention_dropout_rate=0.0, positions='sinusoidal', pre_norm=True,
                 share_embeddings=True, tie_output=True, max_len=64)
  c.label_smoothing = 0.1
  c.optimizer = dict(name='adam', learning_rate=2e-3, b1=0.9, b2=0.98, eps=1e-9,
                     weight_decay=0.0, schedule='rsqrt', warmup_steps=200, grad_clip_norm=1.0)
  c.decode = dict(beam_size=4, alpha=0.6, max_len=40)
  mesh_and_rules(c)
  if arg == 'smoke':
    c.data.update(num2words_max=2000, eval_max_examples=32, eval_batch_size=32)
    c.batch_size = 16
    c.train_steps = 10
    c.log_every_steps = 5
    c.eval_every_steps = 10
    c.checkpoint_every_steps = 10
    c.model.update(emb_dim=32, mlp_dim=64, num_encoder_layers=1, num_decoder_layers=1)
    c.optimizer.warmup_steps = 5
  elif arg:
    raise ValueError(f'unknown config variant {arg!r} (known: smoke)')
  return c
