"""Sweeps: a killed sweep restarts without redoing finished cells; a failed cell does not stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from moco_lit.sweep import load_sweep, planned_run_folder, run_sweep

ROOT = Path(__file__).resolve().parent.parent
POOL = [
    "callable:tests.scripted.multiplier",
    "callable:tests.scripted.reverser",
    "callable:tests.scripted.oracle",
]


def write_sweep(tmp_path: Path, **changes) -> Path:
    spec = {
        "name": "grid",
        "run_dir": str(tmp_path / "runs"),
        "collaborators": POOL,
        "benchmarks": ["quickstart_multiply", "quickstart_reverse"],
        "methods": ["majority_vote", "moa", "multiagent_refine"],
        "data": {"limit": 4},
        "model": {"max_new_tokens": 8},
        "wandb": False,
        **changes,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_cells_put_the_single_model_baseline_first_in_every_setting(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    cells = sweep.cells()
    assert len(cells) == 8  # (3 methods + single_model) × 2 benchmarks
    assert [c.method for c in cells[:4]] == ["single_model", "majority_vote", "moa", "multiagent_refine"]
    assert {c.benchmark for c in cells[4:]} == {"quickstart_reverse"}
    argv = sweep.argv(cells[1])
    assert argv[:3] == ["test", "--model", "majority_vote"] and "--wandb_group" in argv
    folder = planned_run_folder(argv)
    assert folder.parent == tmp_path / "runs" / "quickstart_multiply" / "majority_vote"


@pytest.mark.slow
def test_killed_sweep_restarts_without_redoing_the_first_cell(tmp_path, isolated_home):
    config = write_sweep(tmp_path)
    runs = tmp_path / "runs"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MOCO_LIT_HOME": str(isolated_home),
        "WANDB_MODE": "disabled",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "moco_lit", "sweep", "-c", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while not list(runs.glob("*/*/*/metrics.json")):
            assert process.poll() is None, "the sweep ended before finishing its first cell"
            assert time.monotonic() < deadline, "the first cell did not finish in time"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    first = next(runs.glob("*/*/*/metrics.json"))
    assert first.parts[-3] == "single_model"  # the baseline runs first
    stamp, body = first.stat().st_mtime_ns, first.read_text()
    assert len(list(runs.glob("*/*/*/metrics.json"))) < 8, "killed before the sweep could finish"

    results = run_sweep(load_sweep(config), out=open(os.devnull, "w"))

    assert [r.status for r in results][0] == "cached"
    assert (
        all(r.status in {"done", "cached"} for r in results) and sum(r.status == "done" for r in results) >= 1
    )
    assert first.stat().st_mtime_ns == stamp and first.read_text() == body
    assert len(list(runs.glob("*/*/*/metrics.json"))) == 8
    summary = json.loads((runs / "sweeps" / "grid.json").read_text())
    assert [c["status"] for c in summary["cells"]] == [r.status for r in results]
    for cell in summary["cells"]:
        metrics = json.loads((Path(cell["run_folder"]) / "metrics.json").read_text())
        assert cell["score"] == metrics["score"] and metrics["benchmark"] == cell["benchmark"]
        assert cell["score_ci"] == metrics["score_ci"]  # cached cells too


def test_a_failed_cell_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    from moco_lit.sweep import main

    methods = [
        {"method": "majority_vote", "label": "broken", "args": {"samples_per_model": "many"}},
        "majority_vote",
    ]
    config = write_sweep(tmp_path, benchmarks=["quickstart_multiply"], methods=methods)
    assert main(["-c", str(config)]) == 1
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "runs" / "sweeps" / "grid.json").read_text())
    statuses = {c["label"]: c["status"] for c in summary["cells"]}
    assert statuses == {"single_model": "done", "broken": "failed", "majority_vote": "done"}
    broken = next(c for c in summary["cells"] if c["label"] == "broken")
    assert "samples_per_model" in broken["error"] and "error:" in out
    # a rerun skips the two finished cells and tries the failed one again
    assert main(["-c", str(config)]) == 1
    summary = json.loads((tmp_path / "runs" / "sweeps" / "grid.json").read_text())
    assert [c["status"] for c in summary["cells"]] == ["cached", "failed", "cached"]


def test_command_line_grid_without_a_file(tmp_path, capsys):
    from moco_lit.cli import main

    code = main(
        [
            "sweep",
            "--name",
            "cli",
            "--methods",
            "majority_vote",
            "--benchmarks",
            "quickstart_reverse",
            "--collaborators",
            *POOL[:2],
            "--run_dir",
            str(tmp_path / "runs"),
            "--wandb",
            "false",
            "--data.limit",
            "3",
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "runs" / "sweeps" / "cli.json").read_text())
    assert [c["label"] for c in summary["cells"]] == ["single_model", "majority_vote"]
    assert all(
        json.loads((Path(c["run_folder"]) / "metrics.json").read_text())["n"] == 3 for c in summary["cells"]
    )
    assert "2 run, 0 already finished, 0 failed" in capsys.readouterr().out


def test_progress_rows_show_the_score_with_its_interval():
    import io

    from moco_lit.sweep import CellResult, ProgressTable

    out = io.StringIO()
    table = ProgressTable(out, 2)
    table.header()
    table.row(CellResult(1, "majority_vote", "quickstart", "p", "done", score=1.0, score_ci=[0.7008, 1.0]))
    table.row(CellResult(2, "moa", "quickstart", "p", "failed", error="boom"))
    lines = out.getvalue().splitlines()
    assert "95% CI" in lines[0]
    assert "1.000    [0.70, 1.00]" in lines[2] and "-        -" in lines[3]


def test_cell_log_lines_stay_out_of_the_table_unless_verbose(tmp_path, caplog):
    import logging

    from moco_lit import sweep as sweep_module

    argv = ["-c", "scripted_demo", "--run_dir", str(tmp_path / "runs"), "--benchmarks", "quickstart",
            "--methods", "moa", "--data.limit", "3", "--wandb", "false"]  # fmt: skip

    def per_run_lines():
        return [r for r in caplog.records if r.name.startswith("moco_lit.") and r.levelno == logging.INFO]

    with caplog.at_level(logging.INFO):
        assert sweep_module.main(argv) == 0
        assert per_run_lines() == []
        assert sweep_module.main([*argv[:3], str(tmp_path / "verbose"), *argv[4:], "--verbose"]) == 0
        assert any(r.name.startswith("moco_lit.methods") for r in per_run_lines())
