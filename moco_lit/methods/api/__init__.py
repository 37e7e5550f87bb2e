"""Api-level collaboration methods, one per file."""
