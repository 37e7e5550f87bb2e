"""Text-level collaboration methods, one per file."""
