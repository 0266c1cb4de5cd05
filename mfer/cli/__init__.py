"""Command-line entry points (thin Hydra shells over library functions)."""
