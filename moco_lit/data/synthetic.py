"""Synthetic skill benchmarks made by the project: the quickstart's offline data.

Each skill is a tiny, deterministic task a 1M-parameter model can learn in under a minute on a CPU:
``multiply`` (single-digit products), ``reverse`` (four letters backwards) and ``next_letter``
(the letter after a given one). ``quickstart`` mixes the three; ``quickstart_<skill>`` is one skill.
All are ``exact_match`` benchmarks in MoCo's record format with a ``skill`` field and their own
short ``prompt`` (the bare question: tiny models read it faster than the boxed-answer template),
generated from a seed, so the same name always gives the same examples in the same order.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from moco_lit.data.benchmark import Benchmark

SKILLS = ("multiply", "reverse", "next_letter")
DEV_PER_SKILL = 40
TEST_PER_SKILL = 60


def _multiply(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return f"What is {a} times {b}?", str(a * b)


def _reverse(rng: random.Random) -> tuple[str, str]:
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(4))
    return f"Reverse the letters {word}.", word[::-1]


def _next_letter(rng: random.Random) -> tuple[str, str]:
    letter = rng.choice(string.ascii_lowercase[:-1])
    return f"Which letter comes after {letter}?", chr(ord(letter) + 1)


SKILL_MAKERS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "multiply": _multiply,
    "reverse": _reverse,
    "next_letter": _next_letter,
}


def skill_examples(skill: str, count: int, seed: int, split: str) -> list[dict]:
    """``count`` records of one skill; ``split`` enters the seed so dev, test and train differ."""
    rng = random.Random(f"{seed}:{skill}:{split}")
    records = []
    for index in range(count):
        question, answer = SKILL_MAKERS[skill](rng)
        records.append(
            {
                "id": f"{skill}-{split}-{index}",
                "input": question,
                "prompt": question,
                "output": answer,
                "skill": skill,
            }
        )
    return records


def _interleave(groups: list[list[dict]]) -> list[dict]:
    return [record for row in zip(*groups) for record in row]


def synthetic_benchmark(name: str, seed: int = 0) -> Benchmark | None:
    """The synthetic benchmark called ``name`` (``quickstart`` or ``quickstart_<skill>``), else None."""
    if name == "quickstart":
        skills = list(SKILLS)
    elif name.startswith("quickstart_") and name.removeprefix("quickstart_") in SKILLS:
        skills = [name.removeprefix("quickstart_")]
    else:
        return None
    dev = _interleave([skill_examples(s, DEV_PER_SKILL, seed, "dev") for s in skills])
    test = _interleave([skill_examples(s, TEST_PER_SKILL, seed, "test") for s in skills])
    return Benchmark(name=name, task_type="exact_match", dev=dev, test=test, source=f"synthetic(seed={seed})")


def synthetic_names() -> list[str]:
    return ["quickstart", *(f"quickstart_{skill}" for skill in SKILLS)]
