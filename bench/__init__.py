"""Benchmarks run by `make bench` (`python -m bench [NAME ...] [--quick]`); results go to BENCHMARKS.md."""
