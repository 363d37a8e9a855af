"""Model definition, export, version resolution and the RunInference model handler."""
