"""Where a fit's checkpoints go, the line that says so, and ``--ckpt_path last|best``."""

from __future__ import annotations

from pathlib import Path

import pytest

from moco_lit.cli import main
from tests.conftest import collaborators_arg

POOL = collaborators_arg(
    ["callable:tests.scripted.oracle", "callable:tests.scripted.wrong", "callable:tests.scripted.wrong"]
)


def args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        *("--model", "majority_vote", "--model.tie", "dev-based", "--model.collaborators", POOL),
        *("--data.benchmark", "quickstart", "--data.dev_limit", "6", "--data.limit", "3"),
        *("--run_dir", str(tmp_path / "runs"), "--wandb", "false", "--progress", "false"),
        *extra,
    ]


@pytest.fixture
def fitted(tmp_path, capsys):
    assert main(["fit", *args(tmp_path)]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    last = Path(lines[-2].removeprefix("checkpoint: ").split("  (")[0])
    best = Path(lines[-1].removeprefix("best checkpoint: ").split("  (")[0])
    return last, best, out


def test_a_fit_ends_by_saying_where_its_checkpoints_are(tmp_path, fitted):
    last, best, out = fitted
    run = tmp_path / "runs" / "quickstart" / "majority_vote"
    assert last.name == "last.ckpt" and last.is_file() and best.is_file() and best != last
    assert last.parent == best.parent and last.parent.parent.parent == run
    assert last.parent.name == "checkpoints" and last.parent.parent.name.endswith("-fit")
    # --progress false silences Lightning's bars too
    assert "Epoch" not in out.out + out.err and "━" not in out.out + out.err


@pytest.mark.parametrize("name", ["last", "best"])
def test_ckpt_path_names_the_matching_fit_run(tmp_path, fitted, capsys, name):
    last, best, _ = fitted
    assert main(["test", *args(tmp_path, "--ckpt_path", name)]) == 0
    capsys.readouterr()
    # the same run as naming the file itself: one test folder, whose config holds that path
    assert main(["test", *args(tmp_path, "--ckpt_path", str(last if name == "last" else best))]) == 0
    tests = [p for p in (tmp_path / "runs" / "quickstart" / "majority_vote").iterdir() if "-" not in p.name]
    assert len(tests) == 1
    config = (tests[0] / "config.yaml").read_text()
    assert f"ckpt_path: {last if name == 'last' else best}" in config


def test_ckpt_path_last_without_a_matching_fit_is_one_line(tmp_path, fitted, capsys):
    assert main(["test", *args(tmp_path, "--data.limit", "4", "--ckpt_path", "last")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 or not error[-2].startswith("error")
    assert error[-1].startswith("error: --ckpt_path last: no fit of this configuration has written ")
    assert error[-1].endswith(f"fit runs of majority_vote there: {fitted[0].parent.parent.name}")


def test_fit_resumes_from_ckpt_path_last(tmp_path, fitted, capsys):
    last, best, _ = fitted
    before = {p.name: p.stat().st_mtime_ns for p in last.parent.iterdir()}
    assert main(["fit", *args(tmp_path, "--ckpt_path", "last")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # the finished fit is found in its own folder and not trained again
    assert lines[-2].startswith(f"checkpoint: {last}")
    assert {p.name: p.stat().st_mtime_ns for p in last.parent.iterdir()} == before
