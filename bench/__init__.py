"""Benchmarks: `make bench` (or `python -m bench.run --only NAME`), results in bench/results/."""
