r"""Show, Attend and Tell (Xu et al. 2015), soft attention, on MS COCO 2014 captions.

The model has the sizes of the authors' COCO soft-attention model (arctic-captions,
evaluate_coco.py): word embeddings 512, annotation vectors 512 (VGG-19 conv5_4 in the paper:
a 14 x 14 grid), one LSTM of 1800 units, an attention MLP of two layers, initial state from
the mean annotation through two layers, the gating scalar beta (selector), the deep output
(prev2out, ctx2out), doubly stochastic attention with lambda = 1, dropout 0.5, a vocabulary of
10,000 words, Adam with learning rate 2e-4 (their optimizer's fixed rate), batch 64, beam
search at test time. The decoder has 35,333,450 parameters, exactly the authors' layer list
(tests/test_show_attend_tell.py); `--mode=info` prints the total with our frontend.

Paper's figures (Table 1, COCO, soft attention): BLEU-1 70.7, BLEU-2 49.2, BLEU-3 34.4,
BLEU-4 24.3, METEOR 23.90 (their 5,000-image test split, 5 references per image).

What differs: no ImageNet-pretrained VGG is available offline, so the annotation grid comes
from our `cnn` frontend (four 3x3 conv + 2x2 pool stages, 64-128-256-512 channels: 224 x 224
-> a 14 x 14 x 512 grid, projected to 512; 1,813,632 parameters) trained from scratch with the
decoder, unless model.frontend_init names an .npz of weights for it
(seq2seq_jax/trainer/frontend_weights.py). Our first step reads a BOS embedding where their code reads
zeros.

Data: TFDS `coco_captions` (COCO 2014 in the Karpathy splits: train + restval 113,287
images, val 5,000, test 5,000, five captions each), prepared once where it can be downloaded
with `tfds build coco_captions --file_format=array_record` and read without TensorFlow; images
are decoded when a batch needs them (data.cache_images=False), so host memory does not grow
with the dataset. Or COCO's own annotation JSONs and image folder:

  python launch.py --config=experiments/coco_show_attend_tell.py --workdir=runs/sat
  python launch.py --config=experiments/coco_show_attend_tell.py --workdir=runs/sat \
      --config.data.tfds_name= \
      --config.data.train_captions=/data/coco/annotations/captions_train2014.json \
      --config.data.eval_captions=/data/coco/karpathy_val.json \
      --config.data.test_captions=/data/coco/karpathy_test.json \
      --config.data.image_root=/data/coco/images
  python launch.py --config=experiments/coco_show_attend_tell.py --mode=info
"""
import ml_collections

from common import base_config, coco_captions_data, decode


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  if arg:
    raise ValueError(f'unknown config variant {arg!r} (known: none)')
  c = base_config(
      task='captioning',
      batch_size=64,
      train_steps=200_000,
      eval_every_steps=5000,
      log_every_steps=100,
      keep_checkpoints=3,
      label_smoothing=0.0)
  c.data = coco_captions_data()
  c.model = dict(name='show_attend_tell', emb_dim=512, hidden_dim=1800, context_dim=512,
                 attention_dim=0, attention_layers=2, init_layers=2, selector=True,
                 prev2out=True, ctx2out=True, doubly_stochastic=1.0, dropout_rate=0.5,
                 frontend=dict(name='cnn', channels=(64, 128, 256, 512)), max_len=64)
  c.optimizer = dict(name='adam', learning_rate=2e-4, b1=0.9, b2=0.999, eps=1e-8,
                     schedule='constant', warmup_steps=0, grad_clip_norm=0.0)
  c.decode = decode(beam_size=3, alpha=0.0, max_len=40)
  return c
