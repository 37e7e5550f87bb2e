"""moa: end to end on tiny models; later layers and the dev-best aggregator see every proposal."""

from __future__ import annotations

import pytest

from moco_lit.errors import UserError
from moco_lit.methods.text.moa import Moa
from tests.conftest import run_records
from tests.methods.discussion_agents import agents, metrics, prompt_log, read_prompts, record_asks


def test_moa_runs_on_tiny_models(run_on_tiny_models):
    code, cli = run_on_tiny_models("moa")
    assert code == 0 and bool(cli.model.calibrated)
    rows = run_records(cli)
    # MoCo's default: one proposer layer, then the aggregator
    assert len(rows) == 2 and all(r["calls"] == 4 and len(r["details"]["rounds"]) == 1 for r in rows)
    assert metrics(cli)["cost/calls"] == 8


def test_every_layer_and_the_aggregator_see_every_proposal(run_cli, monkeypatch, tmp_path):
    log = prompt_log(monkeypatch, tmp_path)
    asks = record_asks(monkeypatch)
    code, cli = run_cli(
        "test",
        "--model",
        "moa",
        "--model.collaborators",
        agents("wrong_a", "wrong_b", "right"),
        "--model.round",
        "2",
        "--data.limit",
        "3",
        "--data.dev_limit",
        "3",
    )
    rows = run_records(cli)
    assert all(r["answered_by"] == "right" and r["score"] == 1.0 and r["calls"] == 7 for r in rows)
    for row in rows:
        first, second = row["details"]["rounds"]
        layer_two = read_prompts(log, containing=first["wrong_a"])
        assert len(layer_two) == 3 and all(all(p in prompt for p in first.values()) for prompt in layer_two)
        (aggregate,) = read_prompts(log, containing=second["wrong_a"])
        assert all(p in aggregate for p in second.values()) and aggregate in read_prompts(log, "right")
    test_asks = [(m, step, n) for m, step, n in asks if step != "dev"]
    layers = [(m, f"layer{k}", 3) for k in (1, 2) for m in range(3)]
    assert test_asks == layers + [(2, "aggregate", 3)]


def test_bad_settings_fail_at_configuration():
    with pytest.raises(UserError, match="round must be >= 1"):
        Moa(["callable:tests.scripted.oracle"], round=0)
    with pytest.raises(UserError, match="missing \\['references'\\]"):
        Moa(["callable:tests.scripted.oracle"], aggregate_template="{question}")
