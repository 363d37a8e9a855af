"""Beam pipelines (`score`, `train`) and their steps: extract -> validate -> score -> monitor -> load."""
