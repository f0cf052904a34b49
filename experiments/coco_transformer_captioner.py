r"""A Transformer captioner on MS COCO 2014 captions: image patches (ViT, Dosovitskiy et al.
2021: 16 x 16 patches of a 224 x 224 image, a 14 x 14 grid) or the `cnn` frontend's grid, read
by a Transformer encoder-decoder of the base size (Vaswani et al. 2017: 6 + 6 layers, d_model
512, 8 heads, d_ff 2048, dropout 0.1), word vocabulary of 10,000, beam 3.

  python launch.py --config=experiments/coco_transformer_captioner.py --workdir=runs/coco_tf
  python launch.py --config=experiments/coco_transformer_captioner.py:cnn --mode=info

Variants: '' patches, 'cnn' the cnn frontend (64-128-256-512 channels: the same 14 x 14 grid
as experiments/coco_show_attend_tell.py). Data (TFDS coco_captions, or COCO's JSON files): as in that file.
"""
import ml_collections

from common import base_config, check_variant, coco_captions_data, decode

VARIANTS = ('', 'cnn')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, VARIANTS)
  c = base_config(
      task='captioning',
      batch_size=64,
      train_steps=200_000,
      eval_every_steps=5000,
      log_every_steps=100,
      keep_checkpoints=3)
  c.data = coco_captions_data()
  frontend = (dict(name='cnn', channels=(64, 128, 256, 512)) if arg == 'cnn'
              else dict(name='patches', patch_size=16))
  c.model = dict(name='transformer', emb_dim=512, num_heads=8, qkv_dim=512, mlp_dim=2048,
                 num_encoder_layers=6, num_decoder_layers=6, dropout_rate=0.1,
                 attention_dropout_rate=0.0, positions='learned', pre_norm=True, max_len=256,
                 frontend=frontend)
  c.optimizer = dict(name='adam', learning_rate=5e-4, b1=0.9, b2=0.98, eps=1e-9,
                     schedule='rsqrt', warmup_steps=4000, grad_clip_norm=0.0)
  c.decode = decode(beam_size=3, alpha=0.6, max_len=40)
  return c
