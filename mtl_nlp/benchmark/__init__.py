"""Benchmark pieces: the Hugging Face Trainer baseline and inference timing (recipes/benchmark.py)."""
