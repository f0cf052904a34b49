"""Analysis of runs: ablation sweeps (tables, plots) and attention maps."""
