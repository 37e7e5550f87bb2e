"""Scripted collaborators for tests: ``callable:tests.scripted.NAME`` answers prompts by rule."""

from __future__ import annotations

import random
import re


def _question(rendered: str) -> str:
    return rendered.rsplit("User: ", 1)[-1]


def solve_quickstart(question: str) -> str | None:
    if match := re.search(r"What is (\d) times (\d)\?", question):
        return str(int(match.group(1)) * int(match.group(2)))
    if match := re.search(r"Reverse the letters (\w+)\.", question):
        return match.group(1)[::-1]
    if match := re.search(r"Which letter comes after (\w)\?", question):
        return chr(ord(match.group(1)) + 1)
    return None


def oracle(rendered: str) -> str:
    """Answers every quickstart question correctly."""
    return solve_quickstart(_question(rendered)) or "I do not know"


def multiplier(rendered: str) -> str:
    """Right on multiplication only; answers "7" to anything else."""
    question = _question(rendered)
    return solve_quickstart(question) if "times" in question else "7"


def reverser(rendered: str) -> str:
    """Right on reversal only; answers "7" to anything else."""
    question = _question(rendered)
    return solve_quickstart(question) if "Reverse" in question else "7"


def wrong(rendered: str) -> str:
    """Always wrong (and always the same)."""
    return "zzz"


def coin(rendered: str, seed: int) -> str:
    """Right when its sample's seed comes up heads, else "7": other seeds, other scores."""
    right = random.Random(seed).random() < 0.5
    return (solve_quickstart(_question(rendered)) or "7") if right else "7"
