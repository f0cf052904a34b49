r"""Ablation: Transformer G2P depth x label smoothing.

Everything else is the baseline experiments/g2p_cmudict_transformer.py.
  python launch.py --config=experiments/g2p_cmudict_transformer_ablation.py --mode=sweep --workdir=runs/abl_transformer
"""
import itertools

from g2p_cmudict_transformer import get_config  # noqa: F401  (the baseline, unchanged)


def get_sweep() -> list[dict]:
  return [{'model.num_encoder_layers': n, 'model.num_decoder_layers': n, 'label_smoothing': ls}
          for n, ls in itertools.product((1, 2, 3), (0.0, 0.1))]
