"""Benchmark pieces (not installed with the library): the Hugging Face Trainer baseline, inference
and step timing, served scores, the GLUE and strategy tables, the profile breakdown. Run one from
the repository root as `python -m recipes.benchmarks.NAME`; recipes/*.py import them as
`benchmarks.NAME`."""
