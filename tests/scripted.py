"""Scripted collaborators for tests: ``callable:tests.scripted.NAME`` answers prompts by rule.

The quickstart solvers live in ``moco_lit.demo`` (recipes and sweeps name them there); tests keep
naming them here.
"""

from __future__ import annotations

import random

from moco_lit.demo import last_question as _question
from moco_lit.demo import multiplier, oracle, reverser, solve_quickstart, wrong

__all__ = ["_question", "coin", "multiplier", "oracle", "reverser", "solve_quickstart", "wrong"]


def coin(rendered: str, seed: int) -> str:
    """Right when its sample's seed comes up heads, else "7": other seeds, other scores."""
    right = random.Random(seed).random() < 0.5
    return (solve_quickstart(_question(rendered)) or "7") if right else "7"
