"""A finished fit is reused when nothing it depends on changed; --refit, other Trainer settings or
a changed input file train again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moco_lit.cli import main
from tests.conftest import collaborators_arg

POOL = collaborators_arg(
    ["callable:tests.scripted.oracle", "callable:tests.scripted.wrong", "callable:tests.scripted.wrong"]
)


@pytest.fixture
def benchmark(tmp_path) -> Path:
    records = [{"id": i, "input": f"What is {i} times 2?", "output": str(2 * i)} for i in range(4)]
    path = tmp_path / "doubling.json"
    path.write_text(
        json.dumps({"name": "doubling", "task_type": "exact_match", "dev": records, "test": records})
    )
    return path


def fit(tmp_path, benchmark, capsys, *extra) -> tuple[str, dict]:
    argv = [
        *("fit", "--model", "majority_vote", "--model.tie", "dev-based", "--model.collaborators", POOL),
        *("--data.benchmark", str(benchmark), "--run_dir", str(tmp_path / "runs")),
        *("--wandb", "false", "--progress", "false", *extra),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    (folder,) = (tmp_path / "runs" / "doubling" / "majority_vote").glob("*-fit")
    stamps = {p.name: p.stat().st_mtime_ns for p in (folder / "checkpoints").iterdir()}
    return out, stamps


def test_an_unchanged_fit_is_reused_and_says_so(tmp_path, benchmark, capsys):
    first, before = fit(tmp_path, benchmark, capsys)
    assert "reusing" not in first and "checkpoint:" in first
    again, after = fit(tmp_path, benchmark, capsys)
    assert again.strip().startswith("fit: reusing the finished fit of this configuration (")
    assert again.strip().endswith("; --refit trains again") and after == before
    # the reused checkpoint is the one `test --ckpt_path best` finds
    record = json.loads(next((tmp_path / "runs").rglob("fit.json")).read_text())
    assert record["best"] in again


@pytest.mark.parametrize(
    "change",
    ["--refit", "trainer", "input file"],
)
def test_a_changed_fit_trains_again(tmp_path, benchmark, capsys, change):
    _, before = fit(tmp_path, benchmark, capsys)
    extra: list[str] = []
    if change == "--refit":
        extra = ["--refit", "true"]
    elif change == "trainer":
        extra = ["--trainer.max_epochs", "2"]
    else:
        data = json.loads(benchmark.read_text())
        data["dev"][0]["output"] = "0.0"
        benchmark.write_text(json.dumps(data))
    out, after = fit(tmp_path, benchmark, capsys, *extra)
    assert "reusing" not in out and "checkpoint:" in out
    assert after != before


def test_a_fit_that_did_not_finish_is_not_reused(tmp_path, benchmark, capsys):
    fit(tmp_path, benchmark, capsys)
    (marker,) = (tmp_path / "runs").rglob("fit.json")
    marker.unlink()  # as a kill during training leaves it (the marker is removed when a fit starts)
    out, _ = fit(tmp_path, benchmark, capsys)
    assert "reusing" not in out and marker.is_file()
