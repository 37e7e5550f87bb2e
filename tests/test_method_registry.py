"""The explicit method registry: complete, importable, and what every recipe names."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import yaml

from moco_lit import methods
from moco_lit.methods import REGISTRY, CollaborationModule

ROOT = Path(__file__).resolve().parent.parent


def test_every_entry_imports_its_class_with_a_matching_method_name():
    for name, path in REGISTRY.items():
        method = methods.get(name)
        assert f"{method.__module__}.{method.__qualname__}" == path
        assert issubclass(method, CollaborationModule) and method.method_name == name


def test_no_method_module_is_left_out_of_the_registry():
    registered = set(REGISTRY.values())
    found = set()
    package = importlib.import_module("moco_lit.methods")
    for info in pkgutil.walk_packages(package.__path__, "moco_lit.methods."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, CollaborationModule)
                and value.__module__ == info.name
                and value.__dict__.get("method_name")
            ):
                found.add(f"{value.__module__}.{value.__qualname__}")
    assert found == registered


def test_every_recipe_names_a_registered_method():
    registered = set(REGISTRY.values()) | set(REGISTRY)
    recipes = sorted((ROOT / "recipes").rglob("*.yaml"))
    assert recipes
    for recipe in recipes:
        model = (yaml.safe_load(recipe.read_text()) or {}).get("model")
        named = model if isinstance(model, str) else (model or {}).get("class_path")
        assert named in registered, f"{recipe}: {named!r}"
