"""multiagent_refine: end to end on tiny models; rounds, what each refiner reads, the dev-best summary."""

from __future__ import annotations

import pytest

from moco_lit.errors import UserError
from moco_lit.methods.text.multiagent_refine import MultiagentRefine
from tests.conftest import run_records
from tests.methods.discussion_agents import agents, metrics, prompt_log, read_prompts, record_asks


def test_multiagent_refine_runs_on_tiny_models(run_on_tiny_models):
    code, cli = run_on_tiny_models("multiagent_refine")
    assert code == 0 and bool(cli.model.calibrated)
    rows = run_records(cli)
    # 3 models x 3 rounds + 1 summary per question
    assert len(rows) == 2 and all(r["calls"] == 10 for r in rows)
    assert all(len(r["details"]["rounds"]) == 3 and len(r["details"]["rounds"][0]) == 3 for r in rows)
    assert all(r["answered_by"] == cli.model.collaborator_names[cli.model.dev_best] for r in rows)
    assert metrics(cli)["n"] == 2 and metrics(cli)["cost/calls"] == 20


def test_refiners_read_every_answer_and_the_dev_best_summarises(run_cli, monkeypatch, tmp_path):
    log = prompt_log(monkeypatch, tmp_path)
    asks = record_asks(monkeypatch)
    # `right` is last in the recipe: it summarises because of its dev score, not its position
    code, cli = run_cli(
        "test",
        "--model",
        "multiagent_refine",
        "--model.collaborators",
        agents("wrong_a", "wrong_b", "right"),
        "--data.limit",
        "4",
        "--data.dev_limit",
        "3",
    )
    rows = run_records(cli)
    assert cli.model.dev_best == 2
    assert all(r["answered_by"] == "right" and r["score"] == 1.0 and r["calls"] == 10 for r in rows)
    for row in rows:
        first, second, third = row["details"]["rounds"]
        assert row["details"]["round_answers"][0] == {
            "wrong_a": "zzz",
            "wrong_b": "zzz",
            "right": row["answer"],
        }
        for name in ("wrong_a", "wrong_b", "right"):
            # the round-2 prompt that carries this model's own round-1 answer holds everyone's
            (prompt,) = read_prompts(log, name, containing=first[name])
            assert all(text in prompt for text in first.values())
            (prompt,) = read_prompts(log, name, containing=second[name])
            assert all(text in prompt for text in second.values())
        (summary,) = read_prompts(log, containing=third["wrong_a"])
        assert all(text in summary for text in third.values())
        assert summary in read_prompts(log, "right")
    # one batched call per model and round, holding all 4 questions
    test_asks = [(m, step, n) for m, step, n in asks if step != "dev"]
    expected = [(m, f"round{r}", 4) for r in (1, 2, 3) for m in range(3)] + [(2, "summary", 4)]
    assert test_asks == expected


def test_one_round_is_answer_then_summary(run_cli):
    code, cli = run_cli(
        "test",
        "--model",
        "multiagent_refine",
        "--model.collaborators",
        agents("right", "wrong_a"),
        "--model.round",
        "1",
        "--data.limit",
        "2",
    )
    assert all(r["calls"] == 3 and len(r["details"]["rounds"]) == 1 for r in run_records(cli))


def test_bad_settings_fail_at_configuration():
    with pytest.raises(UserError, match="round must be >= 1"):
        MultiagentRefine(["callable:tests.scripted.oracle"], round=0)
    with pytest.raises(UserError, match="missing \\['others'\\]"):
        MultiagentRefine(["callable:tests.scripted.oracle"], refine_template="{question} {own}")
