"""Collaboration methods, found by short name.

A method lives in one file named after it, under ``moco_lit/methods/`` (baselines) or one of
``api/``, ``text/``, ``logit/``, ``weight/``, and defines one ``CollaborationModule`` subclass whose
``method_name`` equals the file name (files without one are helpers shared by methods). ``get("majority_vote")`` imports only that file, so
``--model majority_vote`` works without importing every method.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from moco_lit.errors import UserError, did_you_mean
from moco_lit.methods.base import Answer, CollaborationModule

__all__ = ["Answer", "CollaborationModule", "class_path", "get", "names"]

LEVELS = ("", "api", "text", "logit", "weight")
_ROOT = Path(__file__).parent


def _module_names() -> dict[str, str]:
    found = {}
    for level in LEVELS:
        for file in sorted((_ROOT / level).glob("*.py")):
            # a method file declares `method_name = "<its stem>"`; other files are shared helpers
            if f'method_name = "{file.stem}"' in file.read_text(encoding="utf-8"):
                found[file.stem] = "moco_lit.methods." + (f"{level}." if level else "") + file.stem
    return found


def names() -> list[str]:
    """Every available method's short name."""
    return sorted(_module_names())


def get(name: str) -> type[CollaborationModule]:
    """The method class for a short name such as ``majority_vote``."""
    modules = _module_names()
    if name not in modules:
        raise UserError(
            f"unknown method {name!r}{did_you_mean(name, modules)}; available methods: {', '.join(sorted(modules))}"
        )
    module = importlib.import_module(modules[name])
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, CollaborationModule) and value.method_name == name:
            return value
    raise UserError(f"{modules[name]} defines no CollaborationModule with method_name {name!r}")


def class_path(name: str) -> str:
    method = get(name)
    return f"{method.__module__}.{method.__qualname__}"
