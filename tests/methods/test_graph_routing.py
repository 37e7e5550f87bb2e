"""graph_routing: scenario labels, the layer maths, the learning signal on scripted specialists, tiny
models end to end. Its agreement with MoCo is tests/parity/test_parity_graph_routing.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moco_lit.dev_table import DEV_ANSWERS, DevTable
from moco_lit.methods.api.graph_routing import EdgeConv, GraphRouting, first_best, macro_f1
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
        for edge_cost in ("constant", "tokens"):
            method = GraphRouting(
                ["callable:a.big", "callable:a.small"], scenario=scenario, edge_cost=edge_cost
            )
            _, _, values = method.edge_values(table)
            labels[scenario, edge_cost] = first_best(values)[0]
    # MoCo's constant cost: the scenario changes no label (ties go to the first model)
    assert labels == {
        ("Performance First", "constant"): 0,
        ("Cost First", "constant"): 0,
        ("Performance First", "tokens"): 0,
        ("Cost First", "tokens"): 1,
    }


def test_macro_f1_is_scikit_learns():
    truth, predicted = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]
    # per class F1: 0 -> 1/2, 1 -> 2/3, 2 -> 4/5
    assert macro_f1(truth, predicted) == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)
    assert macro_f1([1, 1], [0, 0]) == 0.0


def test_edge_conv_adds_messages_to_target_nodes():
    conv = EdgeConv(width=2, edge_dim=1)
    with torch.no_grad():
        conv.message.weight.copy_(torch.eye(2))
        conv.message.bias.zero_()
        conv.edge.weight.fill_(1.0)
        conv.edge.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0]])
    out = conv(x, torch.tensor([0, 1]), torch.tensor([2, 2]), torch.tensor([[0.5], [0.0]]))
    # node 2 keeps itself and gains both messages (source + edge); nodes without in-edges stay
    assert out[2].tolist() == [4.5, 7.5] and out[0].tolist() == [1.0, 0.0]


def test_graph_router_sends_each_skill_to_its_specialist(run_cli, tiny_models):
    model_args = ["--model.collaborators", SPECIALISTS, "--model.embedding_model", tiny_models[0]]
    model_args += [
        "--model.learning_rate",
        "0.01",
        "--model.train_epochs",
        "30",
        "--model.masks_per_step",
        "4",
    ]
    fitted, tested = _fit_then_test(run_cli, model_args, [], ["--data.limit", "30"])
    assert fitted.trainer.global_step == 30 and fitted.model.best_step is not None
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
    model_args += [
        "--model.max_new_tokens",
        "4",
        "--model.scenario",
        "Balance",
        "--model.edge_cost",
        "tokens",
    ]
    model_args += ["--model.train_epochs", "20", "--model.test_graph", "dev"]
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


def test_a_resumed_fit_keeps_the_best_weights_found_before_it(run_cli, tiny_models, tmp_path):
    # a checkpoint after every step; the fit resumed from step 7's ends as the uninterrupted one
    model_args = ["--model.collaborators", SPECIALISTS, "--model.embedding_model", tiny_models[0]]
    model_args += [
        "--model.learning_rate",
        "0.01",
        "--model.train_epochs",
        "8",
        "--model.masks_per_step",
        "2",
    ]
    common = ["--model", "graph_routing", *model_args, "--data.benchmark", "quickstart"]
    every_step = [
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={tmp_path / 'every_step'}",
        "--trainer.callbacks.save_top_k=-1",
    ]
    _, straight = run_cli("fit", *common, *every_step)
    (after_step7,) = (tmp_path / "every_step").glob("epoch=6-*.ckpt")
    mid = torch.load(after_step7, weights_only=False)
    # the kept weights were found before the resume: only the checkpoint carries them over
    assert mid["graph_routing_best"]["step"] == straight.model.best_step <= 7
    resumed_dir = f"--trainer.callbacks.dirpath={tmp_path / 'resumed'}"
    _, resumed = run_cli(
        "fit", *common, *every_step[:1], resumed_dir, *every_step[2:], "--ckpt_path", str(after_step7)
    )
    uninterrupted, again = straight.model, resumed.model
    assert again.trainer.global_step == uninterrupted.trainer.global_step == 8
    assert again._best[:2] == uninterrupted._best[:2] and again.best_step == uninterrupted.best_step
    state = uninterrupted.net.state_dict()
    assert all(torch.equal(v, again.net.state_dict()[k]) for k, v in state.items())
    routes = []
    for fitted in (straight, resumed):
        checkpoint = fitted.trainer.checkpoint_callback.best_model_path
        _, tested = run_cli("test", *common, "--data.limit", "6", "--ckpt_path", checkpoint)
        routes.append([(r["answered_by"], r["details"]["edge_scores"]) for r in run_records(tested)])
    assert routes[0] == routes[1] and len(routes[0]) == 6
