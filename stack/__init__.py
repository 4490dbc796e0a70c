"""Runs the whole embedded stack on one machine: `python -m stack` (what `make run` does)."""
