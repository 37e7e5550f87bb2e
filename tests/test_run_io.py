"""The run folder's files stay what they were: predictions.jsonl byte for byte, metrics.json key for key.

``tests/fixtures/run_io/`` holds the files of four tiny deterministic runs (majority_vote under
test, predict and validate; single_model under test, with its per-collaborator scores and
intervals) as written before run I/O moved into callbacks. The same commands must write the
same bytes; in metrics.json only what differs between any two runs (the seconds, the code's
version and commit) is left out of the comparison. Two DDP ranks write the same records (merged
from their rank files, in id order) and the same metrics, cost summed across the ranks (also
each collaborator's, with the cost_per_collaborator preset).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, collaborators_arg

FIXTURES = Path(__file__).parent / "fixtures" / "run_io"
POOL = collaborators_arg([f"callable:tests.scripted.{name}" for name in ("oracle", "coin", "multiplier")])
DATA = ["--data.benchmark", "quickstart", "--data.limit", "5", "--data.batch_size", "2", "--run_id", "fixed"]
CASES = {
    "mv_test": ["test", "--model", "majority_vote"],
    "mv_predict": ["predict", "--model", "majority_vote"],
    "mv_validate": ["validate", "--model", "majority_vote"],
    "single_test": ["test", "--model", "single_model"],
}
VOLATILE = {"seconds": 0.0, "git_commit": None, "git_dirty": None, "versions": {}}


def run_files(run_cli, case: str, *extra: str) -> Path:
    _, cli = run_cli(*CASES[case], "--model.collaborators", POOL, *DATA, *extra)
    return cli.model.runtime.run_folder.path


def assert_same_files(folder: Path, case: str) -> None:
    expected = FIXTURES / case
    assert (folder / "predictions.jsonl").read_bytes() == (expected / "predictions.jsonl").read_bytes()
    if not (expected / "metrics.json").exists():
        assert not (folder / "metrics.json").exists()
        return
    text = (folder / "metrics.json").read_text()
    metrics = json.loads(text)
    assert text == json.dumps(metrics, indent=2, sort_keys=True) + "\n"  # the same layout
    assert isinstance(metrics["seconds"], float) and metrics["seconds"] >= 0
    metrics |= {key: value for key, value in VOLATILE.items() if key in metrics}
    assert json.dumps(metrics, indent=2, sort_keys=True) + "\n" == (expected / "metrics.json").read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_folder_files_are_unchanged(case, run_cli):
    assert_same_files(run_files(run_cli, case), case)


@pytest.mark.slow
def test_two_ranks_write_the_records_and_cost_of_one_process(tmp_path):
    command = [sys.executable, "-m", "moco_lit", *CASES["single_test"], "--model.collaborators", POOL, *DATA]
    command += [
        "--run_dir",
        str(tmp_path / "runs"),
        "--progress",
        "false",
        "--trainer.enable_progress_bar",
        "false",
    ]
    command += ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    command += ["-c", "callbacks/cost_per_collaborator.yaml"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WANDB_MODE": "disabled",
        "MOCO_LIT_HOME": str(tmp_path / "home"),
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "running 1 processes" not in result.stderr  # two ranks ran
    (folder,) = {path.parent for path in (tmp_path / "runs").rglob("metrics.json")}
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "metrics.json", "predictions.jsonl"]
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    expected = (FIXTURES / "single_test" / "predictions.jsonl").read_text().splitlines()
    assert sorted(lines) == sorted(expected) and len(lines) == 5
    metrics = json.loads((folder / "metrics.json").read_text())
    # each collaborator's calls, summed over both ranks (single_model asks all three per example)
    per_model = {key: metrics.pop(key) for key in list(metrics) if key.count("/") == 2}
    assert [per_model[f"cost/{name}/calls"] for name in ("oracle", "coin", "multiplier")] == [5.0] * 3
    for key in ("calls", "tokens", "new_tokens"):
        assert sum(v for k, v in per_model.items() if k.endswith(f"/{key}")) == metrics[f"cost/{key}"]
    metrics |= {key: value for key, value in VOLATILE.items() if key in metrics}
    assert metrics == json.loads((FIXTURES / "single_test" / "metrics.json").read_text())
