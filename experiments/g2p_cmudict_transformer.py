r"""Transformer G2P on the CMU Pronouncing Dictionary: the default (main) experiment.

Vaswani et al. 2017 encoder-decoder, small enough to train on a 2-core CPU in under
30 minutes. Characters in, ARPAbet phonemes with stress digits out. Split by word
(zlib.crc32 % 100: <10 test, 10-14 validation, rest train).

The paper baseline is Yolchuyeva et al. 2019, "Transformer based Grapheme-to-Phoneme
Conversion" (Interspeech): a small 3 + 3 layer Transformer, PER 5.2% / WER 22.1% on CMUdict.
Their split is not ours, and the usual CMUdict G2P setting (Bisani & Ney's split, used by the
papers we cite) scores phonemes without stress markers, as far as we know; compare with our
`per_nostress`/`wer_nostress`, which score the same predictions with stress digits removed.
`:long` (12000 steps, cosine decay) is the longer budget for that comparison; `:paper` trains
twice as long (24000 steps, about 2.7 hours on a 2-core CPU) in the papers' setting, phonemes
without stress digits: at 12000 steps this model was still improving on validation.

  python launch.py --config=experiments/g2p_cmudict_transformer.py --workdir=runs/g2p
  python launch.py --config=experiments/g2p_cmudict_transformer.py:smoke --workdir=/tmp/g2p
  python launch.py --config=experiments/g2p_cmudict_transformer.py:long --workdir=runs/g2p_long
  python launch.py --config=experiments/g2p_cmudict_transformer.py:paper --workdir=runs/g2p_paper
"""
import ml_collections

from common import base_config, decode, smoke


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = base_config(
      task='g2p',
      batch_size=256,  # global, across all devices and hosts
      train_steps=3500,
      eval_every_steps=1000,
      checkpoint_every_steps=500,
      keep_checkpoints=3)
  c.data = dict(
      name='cmudict_g2p',
      data_dir='',            # '' -> $TFDS_DATA_DIR or ~/tensorflow_datasets
      buckets=(10, 14, 20, 30),  # padded lengths (incl. BOS/EOS); longer pairs are dropped
      eval_batch_size=512,
      eval_max_examples=0,    # 0 = the whole split
      stress=True,            # False: phonemes without stress digits (the papers' setting)
  )

  c.model = dict(
      name='transformer',
      emb_dim=192,
      num_heads=4,
      mlp_dim=768,
      num_encoder_layers=3,
      num_decoder_layers=3,
      dropout_rate=0.1,
      attention_dropout_rate=0.0,
      positions='sinusoidal',   # or 'learned'
      pre_norm=True,            # pre-LayerNorm (more stable than the paper's post-LN)
      share_embeddings=False,   # graphemes and phonemes are different vocabularies
      tie_output=True,          # output projection = target embedding (Press & Wolf 2017)
      max_len=64,
  )
  c.optimizer = dict(
      name='adamw',
      learning_rate=2e-3,
      b1=0.9,
      b2=0.98,                 # Vaswani et al. 2017, Sec. 5.3
      eps=1e-9,
      weight_decay=0.0,
      schedule='rsqrt',        # linear warmup then inverse square root (Sec. 5.3)
      warmup_steps=400,
      grad_clip_norm=1.0,
  )
  c.decode = decode(beam_size=4, alpha=0.6, max_len=36)

  # Parallelism: mesh sizes (-1 = the remaining devices) and logical -> mesh axis rules.

  if arg == 'smoke':  # seconds on a CPU: checks the whole path, learns little
    smoke(c, batch_size=32, train_steps=20,
          model=dict(emb_dim=32, num_heads=2, mlp_dim=64, num_encoder_layers=1,
                     num_decoder_layers=1))
    c.data.eval_max_examples = 64
  elif arg in ('long', 'paper'):  # the paper-baseline budget: an hour or so of a 2-core CPU
    c.train_steps = 12000
    c.eval_every_steps = 2000
    c.optimizer.schedule = 'cosine'  # decays to 0 at train_steps
    if arg == 'paper':             # the papers' 39 phonemes (no stress digits), 2x the steps
      c.data.stress = False
      c.train_steps = 24000
      c.eval_every_steps = 4000
  elif arg:
    raise ValueError(f'unknown config variant {arg!r} (known: smoke, long, paper)')
  return c
