"""graph_routing: scenario labels, the learning signal on scripted specialists, tiny models end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moco_lit.dev_table import DEV_ANSWERS, DevTable
from moco_lit.methods.api.graph_routing import EdgeConv, GraphRouting
from tests.conftest import ROOT, collaborators_arg, run_records

SPECIALISTS = collaborators_arg(["callable:tests.scripted.multiplier", "callable:tests.scripted.reverser"])


def _fit_then_test(run_cli, model_args: list[str], fit_args: list[str], test_args: list[str]):
    common = ["--model", "graph_routing", *model_args, "--data.benchmark", "quickstart"]
    _, fitted = run_cli("fit", *common, *fit_args)
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    _, tested = run_cli("test", *common, *test_args, "--ckpt_path", checkpoint)
    return fitted, tested


def test_scenario_trades_score_for_cost():
    # both models right; model 0 spends ten times the tokens
    row = {"id": "a", "question": "q", "outputs": {}, "scores": {"big": 1.0, "small": 1.0}}
    table = DevTable(["big", "small"], [{**row, "tokens": {"big": 100, "small": 10}}])
    labels = {}
    for scenario in ("Performance First", "Cost First"):
        method = GraphRouting(["callable:a.big", "callable:a.small"], scenario=scenario)
        _, _, values = method.edge_values(table)
        labels[scenario] = table.best_models([0, 1], values)[0]
    assert labels == {"Performance First": 0, "Cost First": 1}


def test_edge_conv_averages_messages_into_target_nodes():
    conv = EdgeConv(width=2, edge_dim=1)
    with torch.no_grad():
        for linear in (conv.self_linear, conv.message_linear):
            linear.weight.copy_(torch.eye(2))
            linear.bias.zero_()
        conv.edge_linear.weight.zero_()
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 0.0]])
    out = conv(x, torch.tensor([0, 1]), torch.tensor([2, 2]), torch.zeros(2, 1))
    assert out[2].tolist() == [2.0, 1.0] and out[0].tolist() == [1.0, 0.0]  # mean of two; no in-edges


def test_graph_router_sends_each_skill_to_its_specialist(run_cli, tiny_models):
    model_args = ["--model.collaborators", SPECIALISTS, "--model.embedding_model", tiny_models[0]]
    model_args += ["--model.learning_rate", "0.01"]
    fitted, tested = _fit_then_test(
        run_cli, model_args, ["--trainer.max_epochs", "5"], ["--data.limit", "30"]
    )
    dev_rows = [json.loads(line) for line in (fitted.model.runtime.run_folder.path / DEV_ANSWERS).open()]
    assert len(dev_rows) == 120 and all("label" in r for r in dev_rows)
    records = run_records(tested)
    assert all(r["calls"] == 1 for r in records)
    for record in records:
        scores = record["details"]["edge_scores"]
        assert record["answered_by"] == max(scores, key=scores.get)
        if record["id"].startswith("multiply"):
            assert record["answered_by"] == "multiplier"
        if record["id"].startswith("reverse"):
            assert record["answered_by"] == "reverser"
    metrics = json.loads((tested.model.runtime.run_folder.path / "metrics.json").read_text())
    assert metrics["score"] == pytest.approx(2 / 3, abs=1e-6)  # each specialist alone: 1/3


def test_graph_routing_runs_on_tiny_models(run_cli, tiny_models):
    model_args = [
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.embedding_model",
        tiny_models[0],
    ]
    model_args += ["--model.max_new_tokens", "4", "--model.scenario", "Balance"]
    fitted, tested = _fit_then_test(
        run_cli, model_args, ["--data.dev_limit", "6", "--data.batch_size", "3"], ["--data.limit", "4"]
    )
    assert fitted.model.net is not None and bool(tested.model.trained)
    records = run_records(tested)
    names = {Path(p).name for p in tiny_models}
    assert len(records) == 4 and all(r["calls"] == 1 and r["answered_by"] in names for r in records)
    assert all(set(r["details"]["edge_scores"]) == names for r in records)


def test_recipe_parses(run_cli):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "-c", str(ROOT / "recipes/api/graph_routing.yaml"), "--print_config")
    assert exit_info.value.code == 0
