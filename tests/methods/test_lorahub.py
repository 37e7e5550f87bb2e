"""lorahub: scalar weights over LoRA adapters searched on a few dev examples, exported in PEFT format."""

from __future__ import annotations

import json

import pytest
import torch

from moco_lit.errors import UserError
from moco_lit.methods.weight.lorahub import LoraHub
from tests.conftest import collaborators_arg
from tests.test_merging import load_tiny, make_lora_adapters

SMALL = ["--model.max_new_tokens", "4", "--data.benchmark", "quickstart", "--data.limit", "3"]


def test_lorahub_searches_adapter_weights_then_exports_them(run_cli, tiny_models, tmp_path, monkeypatch):
    adapters = make_lora_adapters(tiny_models[0], tmp_path, 3)
    collaborators = collaborators_arg([f"{tiny_models[0]}+{a}" for a in adapters])
    seen_batches = []
    real_dev_score = LoraHub.dev_score

    def dev_score(self, model, batches):
        seen_batches.append(sum(len(b) for b in batches))
        return real_dev_score(self, model, batches)

    monkeypatch.setattr(LoraHub, "dev_score", dev_score)
    code, cli = run_cli(
        "fit",
        "--model",
        "lorahub",
        "--model.collaborators",
        collaborators,
        "--model.optimizer",
        "swarm",
        "--model.max_inference_step",
        "5",
        "--model.population",
        "3",
        "--model.lorahub_dev_samples",
        "2",
        "--trainer.max_epochs",
        "4",
        *SMALL,
    )
    model: LoraHub = cli.model
    assert model.finished and model.evaluations == 5 and len(model.history) == 5
    assert cli.trainer.current_epoch == 2 and set(seen_batches) == {2}  # only the first 2 dev examples
    assert all(max(abs(w) for w in h["recipe"]["weights"]) <= 1.5 for h in model.history)
    assert model.history[0]["recipe"]["weights"] == [0.0, 0.0, 0.0]  # LoraHub's starting point
    export = tmp_path / "export"
    checkpoint = cli.trainer.checkpoint_callback.best_model_path
    code, predicted = run_cli(
        "predict",
        "--model",
        "lorahub",
        "--model.collaborators",
        collaborators,
        "--model.export_dir",
        str(export),
        "--ckpt_path",
        checkpoint,
        *SMALL,
    )
    weights = json.loads((export / "merge.json").read_text())["recipe"]["weights"]
    assert weights == model.final_recipe()["weights"]
    from peft import PeftModel

    reloaded = dict(PeftModel.from_pretrained(load_tiny(tiny_models[0]), str(export)).named_parameters())
    for name in ("lora_A", "lora_B"):
        key = f"base_model.model.model.layers.0.self_attn.v_proj.{name}.default.weight"
        sources = [dict(c.model.named_parameters())[key] for c in model.collaborators[:3]]
        assert torch.allclose(reloaded[key], sum(w * s for w, s in zip(weights, sources)), atol=1e-6)


def test_lorahub_refuses_full_models(run_cli, tiny_models):
    with pytest.raises(UserError, match="lorahub combines LoRA adapters"):
        run_cli(
            "fit", "--model", "lorahub", "--model.collaborators", collaborators_arg(tiny_models[:2]), *SMALL
        )
