"""Every recipe parses, every method has at least one recipe, and one on real models."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
import yaml

from moco_lit import methods
from moco_lit.cli import main
from tests.conftest import ROOT

RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_recipe_parses(recipe: Path, capsys):
    stage = "fit" if "trainer" in (yaml.safe_load(recipe.read_text()) or {}) else "test"
    with pytest.raises(SystemExit) as exit_info:
        main([stage, "-c", str(recipe), "--print_config"])
    assert exit_info.value.code == 0, capsys.readouterr().err


def test_every_method_has_a_recipe():
    named = {(yaml.safe_load(r.read_text()).get("model") or {}).get("class_path") for r in RECIPES}
    missing = [name for name in methods.names() if methods.class_path(name) not in named]
    assert not missing, f"methods without a recipe: {missing}"


def test_every_method_has_a_real_model_recipe():
    # recipes/real/ runs each method on package-shipped models and MoCo's data (`models fetch`)
    real = [r for r in RECIPES if r.parent == ROOT / "recipes" / "real"]
    named = {yaml.safe_load(r.read_text())["model"]["class_path"] for r in real}
    missing = [name for name in methods.names() if methods.class_path(name) not in named]
    assert not missing, f"methods without a recipe in recipes/real/: {missing}"
    # every real recipe says how to get its models and data, and how long it takes
    for recipe in real:
        header = recipe.read_text().split("\nmodel:")[0]
        assert "models fetch smollm2-135m-instruct" in header, recipe.name
        assert f"recipes/real/{recipe.name}" in header, recipe.name
        assert re.search(r"About \d[^#]* on a 2-core CPU", header), recipe.name


def _export_adapters_script():
    spec = importlib.util.spec_from_file_location("export_adapters", ROOT / "recipes/real/export_adapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("layout", ["shared_base", "one_by_one"])
def test_export_adapters_turns_a_fit_checkpoint_into_peft_folders(layout, tiny_models, tmp_path):
    from moco_lit.collaborators import load_collaborator
    from moco_lit.methods.text.arena import LoraAgents

    torch.manual_seed(0)
    base = load_collaborator(tiny_models[0])
    agents = LoraAgents({"agent0": base, "agent1": base}, layout=layout, lora_r=4, lora_alpha=8).eval()
    with torch.no_grad():  # as training would: each agent's B matrices become non-zero, differently
        for name, parameter in agents.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    checkpoint = tmp_path / "fit.ckpt"
    state = {f"agents.{key}": value for key, value in agents.state_dict().items()}
    torch.save(
        {"state_dict": state, "hyper_parameters": {"collaborators": [tiny_models[0]] * 2, "lora_alpha": 8}},
        checkpoint,
    )

    folders = _export_adapters_script().export(checkpoint, tmp_path / "adapters")

    assert [folder.name for folder in folders] == ["agent0", "agent1"]
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        plain = base.model(input_ids=ids).logits
        for key, folder in zip(["agent0", "agent1"], folders):
            tuned = load_collaborator(f"{tiny_models[0]}+{folder}")  # the recipe syntax: base+adapter
            expected = agents.activate(agents.agents[key])(input_ids=ids).logits
            assert torch.allclose(tuned.model(input_ids=ids).logits, expected, atol=1e-5)
            assert not torch.allclose(expected, plain, atol=1e-3)
