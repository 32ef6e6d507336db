"""Reports: PNG figures (score explanations, token maps) and plots (training curves, benchmarks)."""
