"""Watching the nights: feature statistics (`statistics`) and how far they drift from a baseline (`drift`)."""
