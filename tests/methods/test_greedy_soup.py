"""greedy_soup: end to end on tiny models (full weights and LoRA adapters), and the skip rule."""

from __future__ import annotations

import json
import shutil

import torch

from moco_lit.merging import lora_full_weights
from moco_lit.methods.weight.greedy_soup import GreedySoup
from tests.conftest import collaborators_arg, run_records
from tests.test_merging import distance_score, load_tiny, make_lora_adapters, tensors

SMALL = ["--model.max_new_tokens", "4", "--data.benchmark", "quickstart", "--data.limit", "4"]


def test_greedy_soup_searches_then_tests_on_tiny_models(run_cli, tiny_models):
    code, cli = run_cli(
        "test", "--model", "greedy_soup", "--model.collaborators", collaborators_arg(tiny_models), *SMALL
    )
    model: GreedySoup = cli.model
    assert code == 0 and model.finished and bool(model.calibrated)
    # three random models score alike on dev, so every model joins the soup (ties are kept)
    assert model.selection.selected == model.dev_ranking() and len(model.history) == 2
    records = run_records(cli)
    assert len(records) == 4 and all(
        r["answered_by"] == "greedy_soup-merge" and r["calls"] == 1 for r in records
    )
    assert records[0]["details"]["merge"]["weights"] == {
        "tiny0": 0.333333,
        "tiny1": 0.333333,
        "tiny2": 0.333333,
    }
    metrics = json.loads((model.runtime.run_folder.path / "metrics.json").read_text())
    assert metrics["n"] == 4 and 0.0 <= metrics["score"] <= 1.0


def test_a_model_that_lowers_the_dev_score_is_skipped(run_cli, tiny_models, tmp_path, monkeypatch):
    twin = shutil.copytree(tiny_models[0], tmp_path / "twin")
    goal = tensors(load_tiny(tiny_models[0]))
    # the dev score is read off the merged weights: closeness to tiny0 (tiny1 pulls the soup away)
    monkeypatch.setattr(
        GreedySoup, "dev_score", lambda self, model, batches: distance_score(self, model, goal)
    )
    collaborators = collaborators_arg([tiny_models[1], tiny_models[0], str(twin)])
    code, cli = run_cli(
        "fit",
        "--model",
        "greedy_soup",
        "--model.collaborators",
        collaborators,
        "--trainer.max_epochs",
        "5",
        *SMALL,
    )
    model: GreedySoup = cli.model
    assert model.dev_ranking() == [1, 2, 0]
    assert model.selection.selected == [1, 2] and model.selection.skipped == [0]
    assert cli.trainer.current_epoch == 2  # the search stopped once every model was tried
    merged = model.merged.model.state_dict()
    assert all(torch.equal(merged[n], goal[n]) for n in goal)
    checkpoint = cli.trainer.checkpoint_callback.best_model_path
    code, tested = run_cli(
        "test",
        "--model",
        "greedy_soup",
        "--model.collaborators",
        collaborators,
        "--ckpt_path",
        checkpoint,
        *SMALL,
    )
    assert tested.model.selection.selected == [1, 2] and tested.model.iteration == 2
    records = run_records(tested)
    assert records[0]["details"]["merge"]["weights"] == {"tiny1": 0.0, "tiny0": 0.5, "twin": 0.5}
    assert all(r["calls"] == 1 for r in records)


def test_greedy_soup_merges_lora_adapters_as_full_weights(run_cli, tiny_models, tmp_path):
    adapters = make_lora_adapters(tiny_models[0], tmp_path, 2)
    collaborators = collaborators_arg([f"{tiny_models[0]}+{a}" for a in adapters])
    code, cli = run_cli("test", "--model", "greedy_soup", "--model.collaborators", collaborators, *SMALL)
    model: GreedySoup = cli.model
    assert model.selection.selected == [0, 1]
    views = [lora_full_weights(c.model) for c in model.collaborators[:2]]
    merged = model.merged.model.state_dict()
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not hasattr(model.merged.model, "peft_config")
    assert torch.allclose(merged[name], (views[0].tensor(name) + views[1].tensor(name)) / 2, atol=1e-6)
