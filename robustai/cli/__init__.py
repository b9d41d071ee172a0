"""Command-line layer: the only code that sees Hydra configs."""
