"""Benchmarks (``python -m bench [--quick] [--full]``); see bench/README.md. Nothing imports bench."""
