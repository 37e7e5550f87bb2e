"""majority_vote: end to end on tiny models, and its voting rules on scripted collaborators."""

from __future__ import annotations

import json

from moco_lit.methods.text.majority_vote import MajorityVote
from tests.conftest import collaborators_arg, run_records


def test_majority_vote_runs_on_tiny_models(run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "majority_vote",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.max_new_tokens",
        "4",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "6",
    )
    assert code == 0
    records = run_records(cli)
    assert len(records) == 6 and {r["id"] for r in records} == {str(r["id"]) for r in records}
    assert all(r["calls"] == 3 for r in records)
    metrics = json.loads((cli.model.runtime.run_folder.path / "metrics.json").read_text())
    assert metrics["n"] == 6 and metrics["cost/calls"] == 18 and 0.0 <= metrics["score"] <= 1.0


def test_the_most_frequent_answer_wins(run_cli):
    scripted = collaborators_arg(
        ["callable:tests.scripted.oracle", "callable:tests.scripted.oracle", "callable:tests.scripted.wrong"]
    )
    code, cli = run_cli(
        "test",
        "--model",
        "majority_vote",
        "--model.collaborators",
        scripted,
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "9",
    )
    records = run_records(cli)
    assert all(r["score"] == 1.0 for r in records)
    assert all(r["details"]["votes"][r["answer"]] == 2 for r in records)
    assert json.loads((cli.model.runtime.run_folder.path / "metrics.json").read_text())["score"] == 1.0


def test_dev_based_tie_follows_the_better_dev_model(run_cli):
    # multiplier is right on a third of dev, wrong scores 0: every tie goes to multiplier's answer
    scripted = collaborators_arg(["callable:tests.scripted.wrong", "callable:tests.scripted.multiplier"])
    code, cli = run_cli(
        "test",
        "--model",
        "majority_vote",
        "--model.collaborators",
        scripted,
        "--model.tie",
        "dev-based",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "6",
        "--data.dev_limit",
        "6",
    )
    model: MajorityVote = cli.model
    assert bool(model.calibrated) and model.dev_ranking() == [1, 0]
    records = run_records(cli)
    assert all(r["details"]["tie"] for r in records)
    assert all(r["answered_by"] == ["multiplier"] for r in records)
