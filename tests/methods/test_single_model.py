"""single_model: each collaborator alone, one score each, best single model reported."""

from __future__ import annotations

import json

import pytest

from tests.conftest import collaborators_arg


def test_each_collaborator_gets_its_own_score(run_cli):
    scripted = collaborators_arg(["callable:tests.scripted.multiplier", "callable:tests.scripted.oracle"])
    code, cli = run_cli(
        "test",
        "--model",
        "single_model",
        "--model.collaborators",
        scripted,
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "9",
    )
    metrics = json.loads((cli.model.runtime.run_folder.path / "metrics.json").read_text())
    assert metrics["score/multiplier"] == 1 / 3
    assert metrics["score/oracle"] == 1.0
    assert metrics["score"] == 1.0 and metrics["best_single_model"] == "oracle"
    # Wilson intervals over the 9 examples: 9/9 → [0.7008, 1]; 3/9 → [0.1206, 0.6458]
    assert metrics["score_ci"] == pytest.approx([0.7008, 1.0], abs=5e-4)
    assert metrics["score_ci/oracle"] == metrics["score_ci"]
    assert metrics["score_ci/multiplier"] == pytest.approx([0.1206, 0.6458], abs=5e-4)
    assert (metrics["ci_method"], metrics["confidence"], metrics["ci_n"]) == ("wilson", 0.95, 9)


def test_single_model_on_tiny_models_records_tokens(run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "single_model",
        "--model.collaborators",
        collaborators_arg(tiny_models[:1]),
        "--model.max_new_tokens",
        "5",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "4",
    )
    lines = (cli.model.runtime.run_folder.path / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4
    assert all(0 < r["new_tokens"] <= 5 and r["tokens"] > r["new_tokens"] for r in records)
