"""Imports point down: every module of moco_lit sits in one layer, imports only its own layer or lower
ones, takes part in no import cycle, and imports inside functions only optional dependencies.

The layers, lowest first, are the table of docs/architecture.md (a test below keeps the two in step).
Imports under ``if TYPE_CHECKING:`` count for the layers but not for cycles (they never run).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "moco_lit"

# Lowest first. A package's name covers everything in it (the root package ``moco_lit`` only itself).
LAYERS: dict[str, tuple[str, ...]] = {
    "base": (
        "moco_lit",
        "moco_lit.errors",
        "moco_lit.paths",
        "moco_lit.processes",
        "moco_lit.network",
        "moco_lit.provenance",
        "moco_lit.argv",
        "moco_lit.quiet",
        "moco_lit.runs",
    ),
    "engine": (
        "moco_lit.collaborators",
        "moco_lit.models",
        "moco_lit.model_files",
        "moco_lit.generation",
        "moco_lit.cache",
        "moco_lit.decoding",
    ),
    "data and evaluation": ("moco_lit.data", "moco_lit.evaluation"),
    "training, search, merging": (
        "moco_lit.training",
        "moco_lit.dev_table",
        "moco_lit.search",
        "moco_lit.merging",
    ),
    "methods": ("moco_lit.methods", "moco_lit.method_registry"),
    "app": (
        "moco_lit.__main__",
        "moco_lit.cli",
        "moco_lit.lightning_cli",
        "moco_lit.callbacks",
        "moco_lit.tracking",
        "moco_lit.fit_reuse",
        "moco_lit.seeds",
        "moco_lit.tasks",
        "moco_lit.shipped",
        "moco_lit.quickstart",
        "moco_lit.sweep",
        "moco_lit.report",
        "moco_lit.variants",
        "moco_lit.figures",
        "moco_lit.export",
        "moco_lit.convert",
        "moco_lit.demo",
        "moco_lit.results",
        "moco_lit.score",
    ),
}

# Third-party packages a function may import on first use: the extras of pyproject.toml (read below)
# and these, which no extra installs.
LAZY_PACKAGES = {
    "vllm": "the GPU generation backend, installed by hand where CUDA is",
    "llama_cpp": "the llama.cpp generation backend (the llama extra installs llama-cpp-python)",
    "model_collaboration": "MoCo itself, only for its own scoring rules (--scoring moco)",
}

# Heavy or platform-bound packages one module may import on first use, and why.
LAZY_IMPORTS = {
    ("moco_lit.evaluation.sandbox", "resource"): "Unix only: the sandboxed child sets its limits with it",
}

# Imports still to move, each (kind, importer, imported), with docs/architecture.md saying why. The
# list only shrinks: a fixed entry left here fails the test, and so does a new violation.
KNOWN: set[tuple[str, str, str]] = set()


def _module_files() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def layer_of(module: str) -> int:
    found = [
        rank
        for rank, names in enumerate(LAYERS.values())
        for name in names
        if module == name or (name != "moco_lit" and module.startswith(name + "."))
    ]
    assert len(found) == 1, f"{module} is in {len(found)} layers of LAYERS; put it in exactly one"
    return found[0]


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules (or top-level packages) an import statement loads by name."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def collect_imports() -> list[tuple[str, str, str, int]]:
    """(importer, imported, kind, line) for every import; kind is "top", "typing" or "local"."""
    found = []

    def visit(module: str, node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((module, target, kind, child.lineno) for target in _targets(module, child))
            inner = kind
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = "local"
            elif isinstance(child, ast.If) and _is_type_checking(child) and kind == "top":
                inner = "typing"
            visit(module, child, inner)

    for module, path in MODULES.items():
        visit(module, ast.parse(path.read_text(encoding="utf-8")), "top")
    return found


def optional_packages() -> set[str]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {
        re.split(r"[^A-Za-z0-9_.-]", requirement, maxsplit=1)[0].lower().replace("-", "_")
        for group, requirements in extras.items()
        if group not in ("dev", "all")
        for requirement in requirements
    }
    return names | set(LAZY_PACKAGES)


def violations() -> set[tuple[str, str, str]]:
    imports = collect_imports()
    internal = [(a, b, kind, line) for a, b, kind, line in imports if b in MODULES]
    found = set()
    for importer, imported, _kind, _line in internal:
        if layer_of(imported) > layer_of(importer):
            found.add(("upward", importer, imported))
    optional = optional_packages()
    for importer, imported, kind, _line in imports:
        if kind != "local":
            continue
        package = imported.split(".")[0]
        if imported in MODULES or (package not in optional and (importer, package) not in LAZY_IMPORTS):
            found.add(("local", importer, imported))
    # an import already listed in KNOWN is not counted again through the cycles it closes
    listed = {(importer, imported) for _kind, importer, imported in KNOWN}
    graph = defaultdict(set)
    for importer, imported, kind, _line in internal:
        if kind != "typing" and importer != imported and (importer, imported) not in listed:
            graph[importer].add(imported)
    for cycle in _cycles(graph):
        found.add(("cycle", " ".join(sorted(cycle)), ""))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_every_module_sits_in_one_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_point_down_without_cycles_or_hidden_imports():
    found = violations()
    new = sorted(found - KNOWN)
    fixed = sorted(KNOWN - found)
    assert not new, "imports that point up, close a cycle or hide in a function:\n" + "\n".join(map(str, new))
    assert not fixed, "fixed, so remove from KNOWN in this test:\n" + "\n".join(map(str, fixed))


def test_the_checker_sees_each_kind_of_violation(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(c) for c in _cycles(graph)] == [["a", "b", "c"]]
    assert layer_of("moco_lit.errors") < layer_of("moco_lit.generation") < layer_of("moco_lit.data.sources")
    assert (
        layer_of("moco_lit.data.sources")
        < layer_of("moco_lit.merging")
        < layer_of("moco_lit.methods.core.module")
    )
    assert layer_of("moco_lit.methods.core.module") < layer_of("moco_lit.cli")
    assert {"datasets", "wandb", "matplotlib", "nevergrad", "deepspeed"} <= optional_packages()
    assert "torch" not in optional_packages()


def test_every_command_entry_point_exists():
    """cli.py imports a command's module only when it runs; each entry it names must be there."""
    from moco_lit.cli import COMMAND_MODULES, PROJECT_COMMANDS

    assert set(PROJECT_COMMANDS) <= set(COMMAND_MODULES)
    for command, target in COMMAND_MODULES.items():
        module, _, function = target.partition(":")
        assert module in MODULES, f"{command}: no module {module}"
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert function in defined, f"{command}: {module} defines no {function}()"


def test_help_imports_no_heavy_library():
    """``python -m moco_lit --help`` answers without torch, Lightning or transformers."""
    script = (
        "import sys, contextlib, io\n"
        "from moco_lit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "print(sorted(m for m in ('torch', 'lightning', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_docs_table_lists_the_same_layers():
    """docs/architecture.md's layers table names, row by row, the modules of LAYERS."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][
        1 : len(LAYERS) + 1
    ]
    assert len(rows) == len(LAYERS)
    for (layer, names), row in zip(LAYERS.items(), rows):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0] == layer, f"docs/architecture.md: row {cells[0]!r} where layer {layer!r} was expected"
        listed = {_stem(name) for name in re.findall(r"`([^`]+)`", cells[1])}
        expected = {_stem(_as_path(name)) for name in names}
        assert listed == expected, (
            f"docs/architecture.md, {layer}: lists {sorted(listed)}, LAYERS {sorted(expected)}"
        )


def _stem(path: str) -> str:
    """``callbacks.py`` and ``callbacks/`` name the same thing (a module that may become a package)."""
    return path.removesuffix("/").removesuffix(".py")


def _as_path(name: str) -> str:
    """How the docs table writes a module: ``generation.py``, ``data/``."""
    if name == "moco_lit":
        return "__init__.py"
    relative = name.removeprefix("moco_lit.")
    if MODULES[name].name == "__init__.py":
        return relative.replace(".", "/") + "/"
    return relative.replace(".", "/") + ".py"
