"""``--tasks a,b``: one command over several benchmarks, each its own resumable run."""

from __future__ import annotations

import json

import pytest

from moco_lit.cli import main
from tests.conftest import collaborators_arg

POOL = collaborators_arg(["callable:tests.scripted.oracle", "callable:tests.scripted.wrong"])


@pytest.fixture
def small_file(tmp_path):
    records = [{"id": i, "input": f"What is {i} times 2?", "output": str(2 * i)} for i in range(4)]
    path = tmp_path / "doubling.json"
    path.write_text(
        json.dumps({"name": "doubling", "task_type": "exact_match", "dev": records, "test": records})
    )
    return path


def args(tmp_path, *extra):
    return [
        *("test", "--model", "majority_vote", "--model.collaborators", POOL, "--data.limit", "3"),
        *(
            "--run_dir",
            str(tmp_path / "runs"),
            "--wandb",
            "false",
            "--progress",
            "false",
            "--verbose",
            "false",
        ),
        *extra,
    ]


def test_each_benchmark_runs_as_its_own_run(tmp_path, small_file, capsys):
    assert main(args(tmp_path, "--tasks", f"quickstart,{small_file}")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = lines[-2:]
    assert rows[0].startswith("quickstart ") and rows[1].startswith(str(small_file)[:24])
    for row, benchmark in zip(rows, ["quickstart", "doubling"]):
        folder = tmp_path / "runs" / benchmark / "majority_vote"
        (run,) = [p for p in folder.iterdir() if p.is_dir()]
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["n"] == 3 and f"{metrics['score']:.3f}" in row and str(run) in row
    # the same as --data.benchmark: the same run folder, resumed
    assert main(args(tmp_path, "--data.benchmark", "quickstart")) == 0
    assert len([p for p in (tmp_path / "runs" / "quickstart" / "majority_vote").iterdir() if p.is_dir()]) == 1


def test_every_name_resolves_before_the_first_run(tmp_path, capsys):
    assert main(args(tmp_path, "--tasks", "quickstart,gsm8kk")) == 2
    assert "Did you mean gsm8k?" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_tasks_and_a_benchmark_are_one_choice(tmp_path, capsys):
    assert main(args(tmp_path, "--tasks", "quickstart", "--data.benchmark", "quickstart")) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("--tasks names the benchmarks; give it or --data.benchmark, not both")
    )


@pytest.mark.parametrize("form", ["two tokens", "equals", "recipe"])
def test_benchmarks_are_found_in_the_data_dir_however_it_is_given(tmp_path, small_file, form, capsys):
    folder = small_file.parent
    if form == "two tokens":
        given = ["--data.data_dir", str(folder)]
    elif form == "equals":
        given = [f"--data.data_dir={folder}"]
    else:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(f"data:\n  data_dir: {folder}\n")
        given = ["-c", str(recipe)]
    assert main(args(tmp_path, *given, "--tasks", "doubling")) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row.startswith("doubling ") and "n=3" in row
    (run,) = [p for p in (tmp_path / "runs" / "doubling" / "majority_vote").iterdir() if p.is_dir()]
    assert json.loads((run / "metrics.json").read_text())["n"] == 3
