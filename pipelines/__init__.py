"""Beam pipelines (`score`, `train`) and their stages: extract -> validate -> score -> load."""
