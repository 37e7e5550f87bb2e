"""Logit-level collaboration methods, one per file."""
