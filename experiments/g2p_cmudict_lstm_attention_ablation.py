r"""Ablation: which attention does the LSTM G2P model need? (none / additive / dot / general)

Everything else is the baseline experiments/g2p_cmudict_lstm_attention.py.
  python launch.py --config=experiments/g2p_cmudict_lstm_attention_ablation.py --mode=sweep --workdir=runs/abl_attention
  python launch.py --config=experiments/g2p_cmudict_lstm_attention_ablation.py --mode=sweep --workdir=runs/abl_attention --sweep_print_commands
"""
from g2p_cmudict_lstm_attention import get_config  # noqa: F401  (the baseline, unchanged)


def get_sweep() -> list[dict]:
  # 'none' keeps only the bridge from the encoder (Sutskever/Cho-style fixed context);
  # 'bahdanau' is additive (Bahdanau et al. 2015); dot/general are Luong et al. 2015, Eq. 8.
  return [{'model.attention': a} for a in ('none', 'bahdanau', 'dot', 'general')]
