"""Bi-objective search of the slicing strategy (accuracy vs. on-chip resources)."""
