"""Watching the nights: each night described (`measure`, `statistics`), how far it drifts from a baseline
(`drift`), and its page (`page`, `charts`)."""
