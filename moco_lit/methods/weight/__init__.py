"""Weight-level collaboration methods, one per file."""
