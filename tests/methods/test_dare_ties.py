"""dare_ties: end to end on tiny models (average and optimised weights, LoRA adapters)."""

from __future__ import annotations

import json

import torch

from moco_lit.merging import ties
from moco_lit.methods.weight.dare_ties import DareTies
from tests.conftest import collaborators_arg
from tests.test_merging import distance_score, load_tiny, make_lora_adapters, tensors

SMALL = ["--model.max_new_tokens", "4", "--data.benchmark", "quickstart", "--data.limit", "3"]
NAME = "model.layers.0.mlp.up_proj.weight"


def test_average_mode_adds_the_ties_of_task_vectors_to_the_base(run_cli, tiny_models):
    base, a, b = (tensors(load_tiny(p)) for p in tiny_models)
    code, cli = run_cli(
        "test",
        "--model",
        "dare_ties",
        "--model.collaborators",
        collaborators_arg(tiny_models[1:]),
        "--model.base_model_name",
        tiny_models[0],
        *SMALL,
    )
    model: DareTies = cli.model
    expected = base[NAME] + ties([a[NAME] - base[NAME], b[NAME] - base[NAME]], [0.5, 0.5])
    assert torch.allclose(model.merged.model.state_dict()[NAME], expected, atol=1e-6)
    assert model.history == []  # average: nothing searched
    records = [json.loads(line) for line in (model.runtime.run_folder.path / "predictions.jsonl").open()]
    assert len(records) == 3 and records[0]["details"]["merge"]["weights"] == {"tiny1": 0.5, "tiny2": 0.5}


def test_optimized_mode_searches_softmax_weights_with_a_swarm(run_cli, tiny_models, monkeypatch):
    goal = tensors(load_tiny(tiny_models[2]))
    monkeypatch.setattr(DareTies, "dev_score", lambda self, model, batches: distance_score(self, model, goal))
    code, cli = run_cli(
        "fit",
        "--model",
        "dare_ties",
        "--model.collaborators",
        collaborators_arg(tiny_models[1:]),
        "--model.base_model_name",
        tiny_models[0],
        "--model.mode",
        "optimized",
        "--model.population",
        "3",
        "--model.max_iterations",
        "2",
        "--trainer.max_epochs",
        "4",
        *SMALL,
    )
    model: DareTies = cli.model
    assert model.finished and cli.trainer.current_epoch == 2 and len(model.history) == 6
    weights = model.final_recipe()["weights"]
    assert abs(sum(weights) - 1.0) < 1e-9
    best = max(model.history, key=lambda h: h["score"])
    assert model.final_recipe() == best["recipe"]
    # toward tiny2, the search puts more weight on it
    assert weights[1] > weights[0]
    assert distance_score(model, model.merged_index, goal) == best["score"]


def test_lora_adapters_merge_against_their_base(run_cli, tiny_models, tmp_path):
    adapters = make_lora_adapters(tiny_models[0], tmp_path, 2)
    collaborators = collaborators_arg([f"{tiny_models[0]}+{a}" for a in adapters])
    code, cli = run_cli("test", "--model", "dare_ties", "--model.collaborators", collaborators, *SMALL)
    model: DareTies = cli.model
    name = "model.layers.0.self_attn.q_proj.weight"
    base = tensors(load_tiny(tiny_models[0]))[name]
    deltas = [s.tensor(name) - base for s in model.sources]
    expected = base + ties(deltas, [0.5, 0.5])
    assert torch.allclose(model.merged.model.state_dict()[name], expected, atol=1e-6)
    untouched = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(
        model.merged.model.state_dict()[untouched], tensors(load_tiny(tiny_models[0]))[untouched]
    )
