"""model_swarms: improves a toy objective, resumes a killed search exactly, runs on LoRA adapters."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from moco_lit.methods.weight.model_swarms import ModelSwarms
from tests.conftest import collaborators_arg
from tests.test_merging import distance_score, load_tiny, make_lora_adapters, tensors

SMALL = ["--model.max_new_tokens", "4", "--data.benchmark", "quickstart", "--data.limit", "3"]


def _toy_goal(tiny_models: list[str]) -> dict[str, torch.Tensor]:
    """0.3·tiny0 + 0.7·tiny1: a point inside the swarm's span that no single model reaches."""
    a, b = tensors(load_tiny(tiny_models[0])), tensors(load_tiny(tiny_models[1]))
    return {name: 0.3 * a[name] + 0.7 * b[name] for name in a}


def _fit(run_cli, tiny_models, epochs: int, *extra: str):
    return run_cli(
        "fit",
        "--model",
        "model_swarms",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--trainer.max_epochs",
        str(epochs),
        *extra,
        *SMALL,
    )[1]


def test_the_swarm_improves_a_toy_objective(run_cli, tiny_models, monkeypatch):
    goal = _toy_goal(tiny_models)
    monkeypatch.setattr(
        ModelSwarms, "dev_score", lambda self, model, batches: distance_score(self, model, goal)
    )
    cli = _fit(run_cli, tiny_models, 8, "--model.max_iterations", "8")
    model: ModelSwarms = cli.model
    initial = max(h["score"] for h in model.history if h["iteration"] == 0)
    assert model.best["score"] > initial * 0.8  # a fifth closer to the goal than any collaborator
    assert distance_score(model, model.merged_index, goal) == model.best["score"]


def test_a_killed_search_resumes_to_the_same_weights(run_cli, tiny_models, monkeypatch, tmp_path):
    goal = _toy_goal(tiny_models)
    monkeypatch.setattr(
        ModelSwarms, "dev_score", lambda self, model, batches: distance_score(self, model, goal)
    )
    whole = _fit(run_cli, tiny_models, 3, "--run_dir", str(tmp_path / "whole"))
    killed = _fit(run_cli, tiny_models, 1, "--run_dir", str(tmp_path / "killed"))
    checkpoint = killed.trainer.checkpoint_callback.best_model_path
    assert Path(checkpoint).name.startswith("epoch=0")
    resumed = _fit(run_cli, tiny_models, 3, "--ckpt_path", checkpoint, "--run_dir", str(tmp_path / "resumed"))
    assert resumed.model.iteration == whole.model.iteration == 3
    assert resumed.model.history == whole.model.history
    assert torch.equal(resumed.model.swarm.positions, whole.model.swarm.positions)
    merged, reference = resumed.model.merged.model.state_dict(), whole.model.merged.model.state_dict()
    assert all(torch.equal(merged[n], reference[n]) for n in reference)


def test_lora_adapters_swarm_in_adapter_space_and_export(run_cli, tiny_models, tmp_path):
    adapters = make_lora_adapters(tiny_models[0], tmp_path, 2)
    collaborators = collaborators_arg([f"{tiny_models[0]}+{a}" for a in adapters])
    export = tmp_path / "export"
    code, cli = run_cli(
        "predict",
        "--model",
        "model_swarms",
        "--model.collaborators",
        collaborators,
        "--model.max_iterations",
        "1",
        "--model.export_dir",
        str(export),
        *SMALL,
    )
    model: ModelSwarms = cli.model
    assert model.merge_space() == "adapters" and len(model.history) == 2
    assert (export / "adapter_config.json").exists() and (export / "adapter_model.safetensors").exists()
    recipe = json.loads((export / "merge.json").read_text())["recipe"]
    from peft import PeftModel

    reloaded = PeftModel.from_pretrained(load_tiny(tiny_models[0]), str(export))
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
    sources = [dict(c.model.named_parameters())[name] for c in model.collaborators[:2]]
    expected = sum(w * s for w, s in zip(recipe["weights"], sources))
    assert torch.allclose(dict(reloaded.named_parameters())[name], expected, atol=1e-6)
