"""Scripted collaborators for demos: ``callable:moco_lit.demo.NAME`` answers prompts by rule.

They answer the synthetic quickstart benchmarks (``quickstart``, ``quickstart_multiply``,
``quickstart_reverse``, ...) without a model, so a recipe or sweep runs in seconds offline and a
method's decisions can be read off its inputs: ``oracle`` is always right, ``multiplier`` and
``reverser`` are each right on one skill, ``wrong`` never is.
"""

from __future__ import annotations

import re


def last_question(rendered: str) -> str:
    """The last user turn of a rendered chat prompt (the whole text when it has no turns)."""
    return rendered.rsplit("User: ", 1)[-1]


def solve_quickstart(question: str) -> str | None:
    """The right answer to a quickstart question, or None for any other question."""
    if match := re.search(r"What is (\d) times (\d)\?", question):
        return str(int(match.group(1)) * int(match.group(2)))
    if match := re.search(r"Reverse the letters (\w+)\.", question):
        return match.group(1)[::-1]
    if match := re.search(r"Which letter comes after (\w)\?", question):
        return chr(ord(match.group(1)) + 1)
    return None


def oracle(rendered: str) -> str:
    """Answers every quickstart question correctly."""
    return solve_quickstart(last_question(rendered)) or "I do not know"


def multiplier(rendered: str) -> str:
    """Right on multiplication only; answers "7" to anything else."""
    question = last_question(rendered)
    return solve_quickstart(question) if "times" in question else "7"


def reverser(rendered: str) -> str:
    """Right on reversal only; answers "7" to anything else."""
    question = last_question(rendered)
    return solve_quickstart(question) if "Reverse" in question else "7"


def wrong(rendered: str) -> str:
    """Always wrong (and always the same)."""
    return "zzz"
