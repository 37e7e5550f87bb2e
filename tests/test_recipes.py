"""Every recipe parses, every method has at least one recipe, and one on real models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
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
