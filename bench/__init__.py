"""Mnemo's benchmarks: `python -m bench` measures them and writes docs/benchmarks.md."""
