"""datasets and wandb are extras: without them, what needs them says so in one line and the rest runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from moco_lit.cli import main
from tests.conftest import collaborators_arg

ROOT = Path(__file__).resolve().parent.parent


def test_core_dependencies_leave_the_heavy_optional_packages_to_extras():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "datasets" not in core and "wandb" not in core and "gguf" in core
    extras = project["optional-dependencies"]
    assert any(d.startswith("datasets") for d in extras["hub"]) and any(
        d.startswith("wandb") for d in extras["wandb"]
    )
    # README's commands install .[dev]: everything the quickstart and the tests use
    assert {"datasets", "wandb", "matplotlib"} <= {d.split(">")[0].split("[")[0] for d in extras["dev"]}


def test_without_datasets_a_hub_benchmark_says_what_to_install(monkeypatch):
    from moco_lit.data.hub import datasets_row_loader
    from moco_lit.errors import UserError

    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    with pytest.raises(UserError, match=r"pip install 'moco-lit\[hub\]'"):
        datasets_row_loader("openai/gsm8k", "main", "test")


def test_without_wandb_a_run_goes_on_without_a_wandb_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setenv("WANDB_MODE", "offline")
    pool = collaborators_arg(["callable:tests.scripted.oracle", "callable:tests.scripted.wrong"])
    argv = ["test", "--model", "majority_vote", "--model.collaborators", pool, "--data.benchmark", "quickstart",
            "--data.limit", "2", "--run_dir", str(tmp_path / "runs"), "--progress", "false"]  # fmt: skip
    assert main(argv) == 0
    assert not list((tmp_path / "runs").rglob("wandb"))
    assert list((tmp_path / "runs").rglob("metrics.json"))
