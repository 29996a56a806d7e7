"""CLI commands that are not DVC stages (predict, evaluate-external, ...)."""
