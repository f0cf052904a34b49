r"""Ablation: what do copying and coverage add to code summarization? (copy x coverage)

Everything else is the baseline experiments/pydoc_summarization.py (attention LSTM, See et al.
2017's sizes scaled to a CPU).
  python launch.py --config=experiments/pydoc_summarization_ablation.py --mode=sweep --workdir=runs/abl_copy
  python launch.py --config=experiments/pydoc_summarization_ablation.py --mode=sweep --workdir=runs/abl_copy --sweep_print_commands
"""
from pydoc_summarization import get_config  # noqa: F401  (the baseline, unchanged)


def get_sweep() -> list[dict]:
  return [{'model.copy': copy, 'model.coverage': coverage}
          for copy in (False, True) for coverage in (False, True)]
