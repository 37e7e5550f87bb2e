"""Recipes, presets (trainer, callbacks) and sweeps found by path or by name, in a clone or a wheel.

A clone keeps them at its root (``recipes/``, ``configs/``, ``callbacks/``, ``sweeps/``); a wheel
ships copies inside the package (``moco_lit/shipped/``, written by ``setup.py``). A ``-c`` value
that is not a file as given is looked up, in that order, relative to the checkout root and in the shipped
folder; a bare name (``majority_vote``, ``text/majority_vote``, ``ddp``) is the one
``<folder>/**/<name>.yaml`` it names.
"""

from __future__ import annotations

from pathlib import Path

import yaml

import moco_lit
from moco_lit.errors import UserError, did_you_mean
from moco_lit.method_registry import REGISTRY

# what each kind of -c value may name: Lightning commands take recipes, trainer and callback presets
LIGHTNING_FOLDERS = ("recipes", "configs", "callbacks")
SWEEP_FOLDERS = ("sweeps",)
SHIPPED_FOLDERS = ("recipes", "configs", "sweeps", "callbacks")
SUFFIXES = (".yaml", ".yml")


def checkout_root() -> Path | None:
    """The clone this package runs from (None for an installed wheel)."""
    root = Path(moco_lit.__file__).resolve().parent.parent
    return root if (root / "recipes").is_dir() else None


def shipped_root() -> Path | None:
    """The copies a wheel ships inside the package (None in a clone that was never built)."""
    root = Path(moco_lit.__file__).resolve().parent / "shipped"
    return root if root.is_dir() else None


def search_roots() -> list[Path]:
    return [root for root in (checkout_root(), shipped_root()) if root is not None]


def shipped_files(folders: tuple[str, ...] = SHIPPED_FOLDERS) -> dict[str, Path]:
    """Every YAML file under ``folders``, by its path below the root (``recipes/text/moa.yaml``);
    the checkout's copy wins over the shipped one."""
    found: dict[str, Path] = {}
    for root in search_roots():
        for folder in folders:
            for path in sorted((root / folder).rglob("*")):
                if path.suffix in SUFFIXES and path.is_file():
                    found.setdefault(path.relative_to(root).as_posix(), path)
    return found


def resolve(value: str, folders: tuple[str, ...] = LIGHTNING_FOLDERS, what: str = "recipe") -> str:
    """The file a ``-c`` value names: the value itself when it is a file (or not a path at all:
    inline YAML), else the checkout's or the shipped file at that relative path, else the one
    ``<folder>/**/<name>.yaml`` for a bare name. Anything else is a UserError with a suggestion."""
    if Path(value).is_file() or not _looks_like_path(value):
        return value
    for root in search_roots():
        if (root / value).is_file():
            return str(root / value)
    files = shipped_files(folders)
    name = _strip_suffix(value.replace("\\", "/")).strip("/")
    matches = sorted(rel for rel in files if _names(rel, name))
    if len(matches) == 1:
        return str(files[matches[0]])
    if matches:
        listed = ", ".join(_short(rel) for rel in matches)
        raise UserError(f"{what} {value!r} matches {len(matches)} files: {listed}; give one of them")
    choices = _choices(files)
    places = " or ".join(f"{folder}/" for folder in folders)
    raise UserError(
        f"{what} {value!r} not found: not a file, and no {places} file of that name"
        f"{did_you_mean(name, choices, cutoff=0.6)}"
    )


def resolve_sweep(value: str) -> str:
    return resolve(value, SWEEP_FOLDERS, what="sweep file")


def _looks_like_path(value: str) -> bool:
    # jsonargparse also takes a config as inline YAML or JSON text
    return bool(value) and not any(c in value for c in "{}[]:\n")


def _strip_suffix(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _names(rel: str, name: str) -> bool:
    """``recipes/text/moa.yaml`` is named by ``moa``, ``text/moa`` and ``recipes/text/moa``."""
    stem = _strip_suffix(rel)
    return stem == name or stem.endswith("/" + name)


def _short(rel: str) -> str:
    """A file's name below its folder, without suffix: ``recipes/text/moa.yaml`` → ``text/moa``."""
    return _strip_suffix(rel.split("/", 1)[1])


def _choices(files: dict[str, Path]) -> list[str]:
    """Names to suggest: a file's bare stem when no other file shares it, else its short path."""
    stems: dict[str, int] = {}
    for rel in files:
        stem = Path(rel).stem
        stems[stem] = stems.get(stem, 0) + 1
    return [Path(rel).stem if stems[Path(rel).stem] == 1 else _short(rel) for rel in files]


# -- python -m moco_lit recipes --------------------------------------------------------------------

RECIPE_COLUMNS = ("name", "method", "benchmark")


def recipe_rows() -> list[dict[str, str]]:
    """One row per recipe: its name for ``-c``, its method's short name and its benchmark."""
    short_names = {path: name for name, path in REGISTRY.items()}
    rows = []
    for rel, path in shipped_files(("recipes",)).items():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            data = {}
        model = data.get("model") if isinstance(data, dict) else None
        method = model.get("class_path") if isinstance(model, dict) else model
        benchmark = (data.get("data") or {}).get("benchmark") if isinstance(data, dict) else None
        rows.append(
            {
                "name": _short(rel),
                "method": short_names.get(method, method or "-"),
                "benchmark": str(benchmark or "-"),
            }
        )
    return sorted(rows, key=lambda row: row["name"])


def format_recipes() -> str:
    """The recipes as an aligned table, then the trainer presets and sweeps by name."""
    rows = recipe_rows()
    cells = [[row[column] for column in RECIPE_COLUMNS] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(RECIPE_COLUMNS)]
    lines = [RECIPE_COLUMNS, tuple("-" * width for width in widths), *cells]
    table = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    for folder, label in (
        ("configs", "trainer presets"),
        ("callbacks", "callback presets"),
        ("sweeps", "sweeps"),
    ):
        names = sorted(Path(rel).stem for rel in shipped_files((folder,)))
        table.append(f"{label} (-c NAME): {', '.join(names) or '-'}")
    return "\n".join(table)
