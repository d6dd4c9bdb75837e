"""Benchmarks: each measures its baseline (stock segment-anything, a plain loop) in the same run and prints a
table with the ratio. ``clicklabel bench ...`` runs them (``cli/bench.py``)."""
