"""Benchmarks and soak runs (`make soak`); not part of `make test` except a short soak."""
