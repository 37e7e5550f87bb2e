"""expo: extrapolation endpoints per mode, alpha optimised on dev, end to end on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from moco_lit.methods.weight.expo import Expo
from tests.conftest import collaborators_arg
from tests.test_merging import distance_score, load_tiny, tensors

SMALL = ["--model.max_new_tokens", "4", "--data.benchmark", "quickstart", "--data.limit", "3"]
NAME = "model.layers.0.mlp.up_proj.weight"


@pytest.fixture
def scored_by_closeness_to_tiny1(tiny_models, monkeypatch):
    goal = tensors(load_tiny(tiny_models[1]))
    monkeypatch.setattr(Expo, "dev_score", lambda self, model, batches: distance_score(self, model, goal))


def _run(run_cli, tiny_models, command: str, *extra: str) -> Expo:
    args = ["--model", "expo", "--model.collaborators", collaborators_arg(tiny_models), *extra, *SMALL]
    return run_cli(command, *args)[1].model


def test_worst_to_best_extrapolates_past_the_best_model(run_cli, tiny_models, scored_by_closeness_to_tiny1):
    model = _run(run_cli, tiny_models, "test")
    best, worst = model.dev_ranking()[0], model.dev_ranking()[-1]
    assert best == 1
    w = [tensors(load_tiny(p))[NAME] for p in tiny_models]
    assert torch.allclose(
        model.merged.model.state_dict()[NAME], w[best] + 0.3 * (w[best] - w[worst]), atol=1e-6
    )
    records = [json.loads(line) for line in (model.runtime.run_folder.path / "predictions.jsonl").open()]
    assert len(records) == 3 and records[0]["answered_by"] == "expo-merge"
    assert records[0]["details"]["merge"]["alpha"] == 0.3


def test_optimized_alpha_is_chosen_on_dev(run_cli, tiny_models, scored_by_closeness_to_tiny1):
    model = _run(
        run_cli,
        tiny_models,
        "fit",
        "--model.alpha_mode",
        "optimized",
        "--model.alpha_candidates",
        "[0.5, 0.0, 0.2]",
    )
    assert [h["recipe"]["alpha"] for h in model.history] == [0.5, 0.0, 0.2]
    assert model.chosen_alpha == 0.0  # alpha 0 is tiny1 itself, the closest to the goal
    assert torch.equal(model.merged.model.state_dict()[NAME], tensors(load_tiny(tiny_models[1]))[NAME])


def test_pairs_and_topk_bottomk_endpoints(run_cli, tiny_models, scored_by_closeness_to_tiny1):
    pairs = _run(run_cli, tiny_models[:2], "fit", "--model.mode", "pairs", "--model.alpha", "0.5")
    assert not bool(pairs.calibrated)  # one pair: nothing to choose on dev
    assert pairs.final_recipe()["weights"] == [-0.5, 1.5, 0.0][:2]
    topk = _run(run_cli, tiny_models, "fit", "--model.mode", "topk_bottomk", "--model.k", "1")
    ranking = topk.dev_ranking()
    weights = topk.final_recipe()["weights"]
    assert weights[ranking[0]] == pytest.approx(1.3) and weights[ranking[-1]] == pytest.approx(-0.3)


def test_expo_runs_on_tiny_models_with_real_dev_scores(run_cli, tiny_models):
    model = _run(run_cli, tiny_models, "test")
    assert bool(model.calibrated) and model.finished
    metrics = json.loads((model.runtime.run_folder.path / "metrics.json").read_text())
    assert metrics["n"] == 3 and metrics["dev_scores"] is not None
