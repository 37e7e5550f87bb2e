"""Scripted agents for the discussion-method tests (refine, feedback, knowledge card, structure, MoA).

Each agent logs every prompt it reads (as one JSON line in the file named by ``PROMPT_LOG``) and
replies ``\\boxed{answer} <name>-<hash of the prompt>``: the tag makes every reply unique, so a test
can tell exactly which replies a later prompt contains. ``right`` solves quickstart questions; the
``wrong_*`` agents always answer ``zzz``. ``record_asks`` notes every batched ``ask`` of a method.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from moco_lit.methods.core.module import CollaborationModule
from tests.scripted import solve_quickstart

PROMPT_LOG = "MOCO_TEST_PROMPT_LOG"
AGENTS = "tests.methods.discussion_agents"


def _reply(name: str, rendered: str, correct: bool) -> str:
    if path := os.environ.get(PROMPT_LOG):
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"agent": name, "prompt": rendered}) + "\n")
    answer = (solve_quickstart(rendered) or "?") if correct else "zzz"
    return f"\\boxed{{{answer}}} {name}-{hashlib.sha1(rendered.encode()).hexdigest()[:8]}"


def right(rendered: str) -> str:
    return _reply("right", rendered, True)


def wrong_a(rendered: str) -> str:
    return _reply("wrong_a", rendered, False)


def wrong_b(rendered: str) -> str:
    return _reply("wrong_b", rendered, False)


def wrong_c(rendered: str) -> str:
    return _reply("wrong_c", rendered, False)


def agents(*names: str) -> str:
    """The ``--model.collaborators`` value for these agents, in this order."""
    return "[" + ", ".join(f"callable:{AGENTS}.{name}" for name in names) + "]"


def prompt_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Start logging prompts into a fresh file; returns its path."""
    path = tmp_path / "prompts.jsonl"
    monkeypatch.setenv(PROMPT_LOG, str(path))
    return path


def read_prompts(path: Path, agent: str | None = None, containing: str = "") -> list[str]:
    """The logged prompts (of one agent, and containing a text), in the order they were read."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["prompt"] for r in rows if (agent is None or r["agent"] == agent) and containing in r["prompt"]]


def record_asks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, int]]:
    """Note (model, step, number of prompts) of every ``CollaborationModule.ask`` from now on."""
    calls: list[tuple[int, str, int]] = []
    original = CollaborationModule.ask

    def spy(self, model, prompts, ids, *, step="", decoding=None):
        calls.append((model, step, len(prompts)))
        return original(self, model, prompts, ids, step=step, decoding=decoding)

    monkeypatch.setattr(CollaborationModule, "ask", spy)
    return calls


def metrics(cli) -> dict:
    return json.loads((cli.model.runtime.run_folder.path / "metrics.json").read_text())
