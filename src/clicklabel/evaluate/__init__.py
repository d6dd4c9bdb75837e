"""Evaluation: label accuracy against ground truth, simulated annotators, comparison reports."""
