"""Corpora: training/eval data sets (MSR-VTT layout, JSONL manifests) and the synthetic video generator."""
