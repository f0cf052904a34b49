r"""Transformer big on WMT'14 English->German (Vaswani et al. 2017, Table 3 "big").

Only what differs from the base experiment.
  python launch.py --config=experiments/wmt14_ende_transformer_big.py --mode=info
"""
import ml_collections

import wmt14_ende_transformer_base as base

D_MODEL = 1024


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  if arg:  # no variants: a typo must not train the default silently
    raise ValueError(f'unknown config variant {arg!r} (known: none)')
  c = base.get_config()
  c.model.update(emb_dim=D_MODEL, qkv_dim=D_MODEL, num_heads=16, mlp_dim=4096,  # Table 3
                 dropout_rate=0.3)         # Table 3: P_drop 0.3 (0.1 for en-fr, Sec. 6.1)
  c.train_steps = 300_000                  # Sec. 5.2: big models, 300,000 steps
  c.optimizer.learning_rate = D_MODEL ** -0.5 * base.WARMUP ** -0.5  # Eq. 3 peak
  c.keep_checkpoints = 20                  # Sec. 6.1 averages the last 20 (not done here)
  return c
