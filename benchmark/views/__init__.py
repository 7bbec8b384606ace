"""Researcher-facing pages of the benchmark app, one module per area."""
