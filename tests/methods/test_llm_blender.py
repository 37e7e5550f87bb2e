"""llm_blender: end to end on tiny models; the ranker's pairwise wins decide which top-k the fuser reads."""

from __future__ import annotations

import json
import re

import pytest

from moco_lit.errors import UserError
from moco_lit.methods.text.llm_blender import LlmBlender, parse_preference
from tests.conftest import collaborators_arg
from tests.scripted import solve_quickstart

FUSER_INPUTS: list[str] = []


def _records(cli) -> list[dict]:
    path = cli.model.runtime.run_folder.path / "predictions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def judge(rendered: str) -> str:
    """Prefers the answer that is right; no verdict when both or neither are."""
    right = solve_quickstart(rendered)
    a = re.search(r"Answer A:\n(.*?)\n\nAnswer B:", rendered, flags=re.DOTALL).group(1).strip()
    b = re.search(r"Answer B:\n(.*?)\n\nWhich answer", rendered, flags=re.DOTALL).group(1).strip()
    if (a == right) == (b == right):
        return "Both are equally good."
    return "A" if a == right else "B"


def first_candidate(rendered: str) -> str:
    """The fuser: repeats the best-ranked candidate (and remembers what it was shown)."""
    FUSER_INPUTS.append(rendered)
    return re.search(r"Candidate 1:\n(.*?)\n", rendered).group(1)


def test_llm_blender_runs_on_tiny_models(run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "llm_blender",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.ranker",
        "2",
        "--model.ranker_max_new_tokens",
        "2",
        "--model.max_new_tokens",
        "4",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
    )
    assert code == 0
    names = cli.model.collaborator_names
    for record in _records(cli):
        assert record["calls"] == 3 + 3 + 1  # three answers, three pairs, one fusion
        assert sum(record["details"]["wins"].values()) == 3.0  # one point per pair
        assert len(record["details"]["top"]) == 3 and record["answered_by"] == names[0]


def test_ranker_wins_decide_the_top_k(run_cli):
    FUSER_INPUTS.clear()
    scripted = collaborators_arg(
        [
            "callable:tests.scripted.wrong",
            "callable:tests.scripted.multiplier",
            "callable:tests.scripted.oracle",
        ]
    )
    code, cli = run_cli(
        "test",
        "--model",
        "llm_blender",
        "--model.collaborators",
        scripted,
        "--model.ranker",
        "callable:tests.methods.test_llm_blender.judge",
        "--model.fuser",
        "callable:tests.methods.test_llm_blender.first_candidate",
        "--model.top_k",
        "2",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "6",
    )
    records = {r["id"]: r for r in _records(cli)}
    for record_id, record in records.items():
        wins, top = record["details"]["wins"], record["details"]["top"]
        if record_id.startswith("multiply"):  # multiplier and oracle are both right
            assert wins == {"wrong": 0.0, "multiplier": 1.5, "oracle": 1.5} and top == [
                "multiplier",
                "oracle",
            ]
        else:  # only the oracle is right; wrong and multiplier tie, the recipe's order breaks it
            assert wins == {"wrong": 0.5, "multiplier": 0.5, "oracle": 2.0} and top == ["oracle", "wrong"]
        assert record["score"] == 1.0 and record["answered_by"] == "first_candidate"
        assert record["calls"] == 3 + 3 + 1
    # the fuser read exactly the top-k candidates, best first
    assert len(FUSER_INPUTS) == 6 and all("Candidate 3" not in text for text in FUSER_INPUTS)


def test_parse_preference_and_untrained_options():
    assert parse_preference("A") == "A" and parse_preference("**B** is better") == "B"
    assert parse_preference("Both are fine") is None
    with pytest.raises(UserError, match="trained methods"):
        LlmBlender(["x", "y"], train_ranker_on_dev=True)
