r"""Captioning real pictures with real captions: Debian's Tux Paint stamps.

`apt-get install tuxpaint-stamps-default` (as root) installs about 950 stamps (photos and
drawings of animals, food, vehicles, ...) each with a human-written caption and its human
translations into ~77 languages. The 785 stamps in PNG are used (165 are SVG only); 10% held
out for test and 10% for validation by a hash of the stamp's path
(seq2seq_jax/datasets/tuxpaint_stamps.py): 620 / 87 / 78 images, one caption each. Pictures are
flattened onto white at 128 pixels and read at 64 x 64. `data.tuxpaint_stamps.lang` picks the
caption language (en, fr, de, ... any of the translations).

  python launch.py --config=experiments/tuxpaint_captions.py --workdir=runs/tuxpaint
  python launch.py --config=experiments/tuxpaint_captions.py:transformer --workdir=runs/tux_tf
  python launch.py --config=experiments/tuxpaint_captions.py --workdir=runs/tuxpaint_fr \
      --config.data.tuxpaint_stamps.lang=fr
  python launch.py --config=experiments/tuxpaint_captions.py:smoke --workdir=/tmp/tux

Variants: '' an attention LSTM over the cnn frontend's 8 x 8 annotation grid (Luong
attention), 'transformer' (the same cnn frontend + a Transformer encoder-decoder), 'sat' (Show,
Attend and Tell at a small size over the same grid), 'smoke', 'tsv' (the attention LSTM on
your own `image path<TAB>caption` files, several lines per image for several references:
--config.data.train_captions, eval_captions, test_captions; docs/own_data.md), 'tsv_smoke'
(the smoke model on your files).

  python launch.py --config=experiments/tuxpaint_captions.py:tsv --workdir=runs/my_captions \
      --config.data.train_captions=train.tsv --config.data.eval_captions=dev.tsv \
      --config.data.test_captions=test.tsv

  ls /usr/share/tuxpaint/stamps/animals/*/*.png | head -4 | python launch.py \
      --config=experiments/tuxpaint_captions.py:sat --mode=predict --workdir=runs/tux_sat \
      --attention_maps=runs/tux_sat/maps
With 620 training captions this is a small-data regime: expect low BLEU and CIDEr.
"""
import ml_collections

from common import base_config, check_variant, decode, own_data, smoke

VARIANTS = ('', 'transformer', 'sat', 'smoke', 'tsv', 'tsv_smoke')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, VARIANTS)
  c = base_config(
      task='captioning',
      batch_size=32,
      train_steps=2000,
      eval_every_steps=500)
  c.data = dict(
      tuxpaint_stamps=dict(lang='en', stamps_dir='/usr/share/tuxpaint/stamps', size=128),
      data_dir='', image_root='',
      image_size=(64, 64), channels=3,
      vocab_size=1024, min_count=2,   # words seen twice in the training captions
      target_len=24, bad_pairs='error',
      eval_batch_size=32, eval_max_examples=0)
  cnn = dict(name='cnn', channels=(32, 64, 128))
  if arg == 'transformer':
    c.model = dict(name='transformer', emb_dim=128, num_heads=4, qkv_dim=128, mlp_dim=512,
                   num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.3,
                   attention_dropout_rate=0.0, positions='learned', pre_norm=True,
                   max_len=64, frontend=cnn)
  elif arg == 'sat':
    # Show, Attend and Tell at a small size: the paper's structure (init MLPs, two-layer
    # attention MLP, beta, deep output, doubly stochastic penalty with lambda 1).
    c.model = dict(name='show_attend_tell', emb_dim=128, hidden_dim=256, context_dim=128,
                   attention_layers=2, init_layers=2, selector=True, prev2out=True,
                   ctx2out=True, doubly_stochastic=1.0, dropout_rate=0.3, max_len=64, frontend=cnn)
  else:
    c.model = dict(name='rnn', cell='lstm', emb_dim=128, hidden_dim=128, encoder_layers=1,
                   decoder_layers=1, bidirectional=True, attention='general',
                   input_feeding=True, dropout_rate=0.3, max_len=64, frontend=cnn)
  c.label_smoothing = 0.1
  c.optimizer = dict(name='adam', learning_rate=1e-3, b1=0.9, b2=0.98, eps=1e-9,
                     schedule='cosine', warmup_steps=100, grad_clip_norm=1.0)
  c.decode = decode(beam_size=3, alpha=0.6, max_len=24)   # Xu et al. 2015 used beam 3
  if arg.endswith('smoke'):
    smoke(c, batch_size=8, model=dict(emb_dim=16, hidden_dim=16))
    c.data.eval_max_examples = 16
    c.model.frontend.channels = (4, 8, 8)
  if arg.startswith('tsv'):
    own_data(c, 'captions', remove=('tuxpaint_stamps',))
  return c
