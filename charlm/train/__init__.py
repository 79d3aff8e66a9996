"""Training: the settings, the run directory, the loop, and choosing a model size."""
