"""A built wheel ships the recipes, trainer presets and sweeps, and runs them by name from any folder;
``-c`` values resolve by path, relative to the checkout, in the shipped copies, or by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from moco_lit import demo, shipped
from moco_lit.cli import main
from moco_lit.errors import UserError
from tests.conftest import ROOT

SHIPPED_FOLDERS = ("recipes", "configs", "sweeps", "callbacks")
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "moco_lit", *SHIPPED_FOLDERS)


def root_yaml() -> list[str]:
    return sorted(
        p.relative_to(ROOT).as_posix() for folder in SHIPPED_FOLDERS for p in (ROOT / folder).rglob("*.yaml")
    )


# -- the wheel ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, Path]:
    """The wheel built from a copy of the sources (the checkout gets no build/), and the folder it
    is installed into."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "shipped")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(work / "dist")],
                   cwd=source, check=True)  # fmt: skip
    (built,) = (work / "dist").glob("*.whl")
    site = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(built)], check=True)
    return built, site


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m moco_lit ARGS`` from ``cwd`` with only the installed wheel on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_MODE")}
    env |= {"PYTHONPATH": str(site), "MOCO_LIT_HOME": str(cwd / "home"), "HF_HUB_OFFLINE": "1"}
    env |= {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "moco_lit", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_wheel_ships_every_recipe_preset_and_sweep(wheel):
    built, site = wheel
    names = set(zipfile.ZipFile(built).namelist())
    expected = {f"moco_lit/shipped/{rel}" for rel in root_yaml()}
    assert len(expected) > 60
    assert expected <= names, sorted(expected - names)[:5]
    assert "moco_lit/demo.py" in names and not any(n.startswith("tests/") for n in names)
    assert (site / "moco_lit" / "shipped" / "sweeps" / "scripted_demo.yaml").is_file()


@pytest.mark.slow
def test_installed_wheel_runs_a_recipe_by_name_from_any_folder(wheel, tmp_path):
    _, site = wheel
    where = subprocess.run(
        [sys.executable, "-c", "import moco_lit; print(moco_lit.__file__)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    collaborators = "[callable:moco_lit.demo.oracle, callable:moco_lit.demo.wrong]"
    args = ["--model.collaborators", collaborators, "--data.benchmark", "quickstart", "--data.limit", "3"]
    done = run_installed(site, tmp_path, "test", "-c", "text/majority_vote", *args, "--wandb", "false")
    assert done.returncode == 0, done.stderr[-2000:]
    (metrics,) = (tmp_path / "runs" / "quickstart" / "majority_vote").glob("*/metrics.json")
    result = json.loads(metrics.read_text())
    assert (result["n"], result["collaborators"]) == (3, ["oracle", "wrong"])
    config = (metrics.parent / "config.yaml").read_text()
    assert "callable:moco_lit.demo.oracle" in config and "tie: random" in config  # the recipe's own knob


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_sweep_by_name(wheel, tmp_path):
    _, site = wheel
    done = run_installed(
        site, tmp_path, "sweep", "-c", "scripted_demo",
        "--benchmarks", "quickstart", "--methods", "majority_vote", "--data.limit", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "runs" / "sweeps" / "scripted_demo.json").read_text())
    # the pool of the shipped sweep file, every cell on the 3 examples the command line asked for
    assert summary["spec"]["pools"]["specialists"][0] == "callable:moco_lit.demo.multiplier"
    assert [(c["label"], c["status"]) for c in summary["cells"]] == [
        ("single_model", "done"),
        ("majority_vote", "done"),
    ]
    for cell in summary["cells"]:
        assert json.loads((tmp_path / cell["run_folder"] / "metrics.json").read_text())["n"] == 3


# -- resolving -c values ------------------------------------------------------------------------


def test_a_file_as_given_and_inline_yaml_pass_through(tmp_path):
    recipe = tmp_path / "majority_vote.yaml"
    recipe.write_text("model: majority_vote\n")
    assert shipped.resolve(str(recipe)) == str(recipe)
    assert shipped.resolve("{model: majority_vote}") == "{model: majority_vote}"


def test_a_checkout_relative_path_resolves_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = shipped.resolve("recipes/text/majority_vote.yaml")
    assert Path(found) == ROOT / "recipes" / "text" / "majority_vote.yaml"
    assert Path(shipped.resolve("configs/trainer/ddp.yaml")) == ROOT / "configs" / "trainer" / "ddp.yaml"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("text/majority_vote", "recipes/text/majority_vote.yaml"),
        ("real/moa", "recipes/real/moa.yaml"),
        ("recipes/api/cascade", "recipes/api/cascade.yaml"),
        ("llm_blender_trained.yaml", "recipes/text/llm_blender_trained.yaml"),
        ("ddp", "configs/trainer/ddp.yaml"),
    ],
)
def test_a_name_finds_its_one_file(name, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Path(shipped.resolve(name)) == ROOT / expected


def test_a_sweep_by_name():
    assert Path(shipped.resolve_sweep("scripted_demo")) == ROOT / "sweeps" / "scripted_demo.yaml"


def test_the_shipped_copy_serves_when_the_checkout_lacks_a_file(tmp_path, monkeypatch):
    checkout, wheel_copy = tmp_path / "checkout", tmp_path / "shipped"
    for root in (checkout, wheel_copy):
        (root / "recipes" / "text").mkdir(parents=True, exist_ok=True)
        (root / "recipes" / "text" / "moa.yaml").write_text(f"# {root.name}\n")
    (wheel_copy / "sweeps").mkdir()
    (wheel_copy / "sweeps" / "demo.yaml").write_text("name: demo\n")
    monkeypatch.setattr(shipped, "search_roots", lambda: [checkout, wheel_copy])
    monkeypatch.chdir(tmp_path)
    # the checkout's copy wins, by path and by name; the shipped folder serves what only it has
    assert shipped.resolve("recipes/text/moa.yaml") == str(checkout / "recipes" / "text" / "moa.yaml")
    assert shipped.resolve("moa") == str(checkout / "recipes" / "text" / "moa.yaml")
    assert shipped.resolve("sweeps/demo.yaml") == str(wheel_copy / "sweeps" / "demo.yaml")
    assert shipped.resolve_sweep("demo") == str(wheel_copy / "sweeps" / "demo.yaml")


def test_a_name_of_several_files_lists_them():
    with pytest.raises(UserError) as error:
        shipped.resolve("majority_vote")
    assert "matches 2 files: real/majority_vote, text/majority_vote" in str(error.value)


def test_an_unknown_name_suggests_the_nearest():
    with pytest.raises(
        UserError, match=r"'llm_blender_traned' not found.*did you mean llm_blender_trained\?"
    ):
        shipped.resolve("llm_blender_traned")
    # a name two files share is suggested with its folder
    with pytest.raises(UserError, match=r"did you mean (api|real)/cascade\?"):
        shipped.resolve("cascde")
    with pytest.raises(UserError, match=r"did you mean scripted_demo\?"):
        shipped.resolve_sweep("scripted_dem")


def test_the_cli_resolves_names_and_stops_on_unknown_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "-c", "text/majority_vote", "--print_config"])
    assert exit_info.value.code == 0
    assert "moco_lit.methods.text.majority_vote.MajorityVote" in capsys.readouterr().out
    assert main(["test", "-c", "text/majority_vot"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean text/majority_vote?" in err[0]
    assert main(["sweep", "-c", "no_such_sweep"]) == 2
    assert "sweep file 'no_such_sweep' not found" in capsys.readouterr().err


def test_recipes_lists_every_recipe_by_the_name_c_takes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {
        line.split()[0]: line.split()[1:]
        for line in lines[2:]
        if not line.startswith(("trainer", "callback", "sweeps"))
    }
    assert len(rows) == len([rel for rel in root_yaml() if rel.startswith("recipes/")])
    assert rows["text/majority_vote"] == ["majority_vote", "gsm8k"]
    assert rows["real/moa"] == ["moa", "mmlu_redux"]
    for name in rows:  # each listed name resolves to its one file
        assert Path(shipped.resolve(name)) == ROOT / "recipes" / f"{name}.yaml"
    assert "trainer presets (-c NAME): cpu, ddp," in "\n".join(lines)
    presets = "checkpoint_every_epoch, cost_per_collaborator, default, no_wandb_table"
    assert f"callback presets (-c NAME): {presets}" in lines
    assert lines[-1] == "sweeps (-c NAME): scripted_demo, text_methods"


# -- the demo collaborators --------------------------------------------------------------------


def test_shipped_files_name_no_test_module():
    for rel in root_yaml():
        assert "callable:tests." not in (ROOT / rel).read_text(), rel


@pytest.mark.parametrize(
    ("question", "oracle", "multiplier", "reverser"),
    [
        ("What is 3 times 4?", "12", "12", "7"),
        ("Reverse the letters abc.", "cba", "7", "cba"),
        ("Which letter comes after c?", "d", "7", "7"),
        ("What is the capital of France?", "I do not know", "7", "7"),
    ],
)
def test_demo_collaborators_answer_by_rule(question, oracle, multiplier, reverser):
    rendered = f"System: be brief\nUser: earlier turn\nUser: {question}"
    assert demo.oracle(rendered) == oracle
    assert demo.multiplier(rendered) == multiplier
    assert demo.reverser(rendered) == reverser
    assert demo.wrong(rendered) == "zzz"
