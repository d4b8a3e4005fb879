"""Benchmarks: each module has a `main() -> dict` that prints a table and returns its figures."""
