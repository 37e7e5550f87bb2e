"""Collaboration methods, found by short name in one explicit registry.

``REGISTRY`` (:mod:`moco_lit.method_registry`, strings only) maps each method's short name (its
``method_name``) to its class path. ``get("majority_vote")`` imports only that method's module, so
``--model majority_vote`` works without importing every method. A new method is a module under
``moco_lit/methods/`` (``api/``, ``text/``, ``logit/``, ``weight/`` by level) with one
``CollaborationModule`` subclass, and one line in the registry.
"""

from __future__ import annotations

import importlib

from moco_lit.errors import UserError, did_you_mean
from moco_lit.method_registry import REGISTRY, names
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule

__all__ = ["REGISTRY", "Answer", "Batch", "CollaborationModule", "class_path", "get", "names"]


def get(name: str) -> type[CollaborationModule]:
    """The method class for a short name such as ``majority_vote``."""
    if name not in REGISTRY:
        raise UserError(
            f"unknown method {name!r}{did_you_mean(name, REGISTRY)}; available methods: {', '.join(names())}"
        )
    module_name, _, class_name = REGISTRY[name].rpartition(".")
    method = getattr(importlib.import_module(module_name), class_name, None)
    if not (
        isinstance(method, type) and issubclass(method, CollaborationModule) and method.method_name == name
    ):
        raise UserError(f"{REGISTRY[name]} is not a CollaborationModule with method_name {name!r}")
    return method


def class_path(name: str) -> str:
    method = get(name)
    return f"{method.__module__}.{method.__qualname__}"
