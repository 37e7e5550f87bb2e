"""Run folders stay consistent: one run at a time, crash-safe repairs, rank files of any world size.

A folder held by another process stops a second identical run with one line; a torn last line
is cut (or completed) in place; records left in rank files by a run with another number of
processes end up in predictions.jsonl, counted once, whatever the new world size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from moco_lit.cli import main
from moco_lit.errors import UserError
from moco_lit.runs import RunFolder, _drop_torn_tail, check_run_id
from tests.conftest import ROOT, run_records
from tests.resume_helpers import CALL_DELAY

ARGS = [
    "test",
    "--model",
    "single_model",
    "--model.collaborators",
    "[callable:tests.scripted.oracle]",
    "--data.benchmark",
    "quickstart",
    "--data.limit",
    "6",
    "--data.batch_size",
    "2",
]


def test_a_second_run_of_a_held_folder_stops_with_one_line(run_cli, tmp_path, capsys):
    _, first = run_cli(*ARGS, "--run_dir", str(tmp_path / "runs"))
    folder = first.model.runtime.run_folder
    files = {p: p.read_bytes() for p in folder.path.iterdir()}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from moco_lit.runs import RunFolder
                RunFolder({str(folder.path)!r}).lock()
                print("held", flush=True)
                time.sleep(60)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        folder.unlock()  # as if this process had not run it
        capsys.readouterr()
        code = main([*ARGS, "--run_dir", str(tmp_path / "runs"), "--wandb", "false", "--progress", "false"])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and "Traceback" not in err and err.rstrip().splitlines()[-1] == errors[0]
        assert "is in use by another run" in errors[0]
        assert {p: p.read_bytes() for p in folder.path.iterdir()} == files
    finally:
        holder.kill()
        holder.wait()
    # the system dropped the killed holder's lock: the same command runs (and finds all done)
    _, again = run_cli(*ARGS, "--run_dir", str(tmp_path / "runs"))
    assert again.model.engine.stats.calls == 0 and run_records(again) == run_records(first)


def test_a_torn_tail_is_cut_and_a_complete_last_record_kept(tmp_path):
    whole = '{"id": "1", "output": "2"}\n'
    torn = tmp_path / "torn.jsonl"
    torn.write_text(whole + '{"id": "2", "out')
    _drop_torn_tail(torn)
    assert torn.read_text() == whole
    unterminated = tmp_path / "unterminated.jsonl"
    unterminated.write_text(whole + whole.strip())
    _drop_torn_tail(unterminated)
    assert unterminated.read_text() == whole + whole  # read back as done, so it stays
    only_torn = tmp_path / "only_torn.jsonl"
    only_torn.write_text('{"id": "1"')
    _drop_torn_tail(only_torn)
    assert only_torn.read_text() == ""


@pytest.mark.parametrize("run_id", ["..", "../x", "a/b", "/abs", "", ".hidden", "x" * 200])
def test_run_ids_stay_inside_the_run_root(run_id, tmp_path):
    with pytest.raises(UserError, match="plain folder name"):
        RunFolder.for_experiment(tmp_path, "quickstart", "single_model", run_id, "test")


def test_plain_run_ids_are_accepted():
    assert check_run_id("baseline-2026.11_v2") == "baseline-2026.11_v2"


def test_rank_files_of_a_run_with_another_world_size_are_merged(run_cli, tmp_path):
    _, straight = run_cli(*ARGS, "--run_dir", str(tmp_path / "straight"))
    expected = run_records(straight)
    metrics = json.loads((straight.model.runtime.run_folder.path / "metrics.json").read_text())

    # a three-process run killed after four examples: its records are in three rank files
    folder = tmp_path / "runs" / "quickstart" / "single_model" / "resumed"
    folder.mkdir(parents=True)
    for rank, records in enumerate([expected[0:2], expected[2:3], expected[3:4]]):
        lines = "".join(json.dumps(r) + "\n" for r in records)
        (folder / f"predictions.rank{rank}.jsonl").write_text(lines)
    _, resumed = run_cli(*ARGS, "--run_dir", str(tmp_path / "runs"), "--run_id", "resumed")

    assert resumed.model.engine.stats.calls == 2  # only the two examples no rank file held
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "metrics.json", "predictions.jsonl"]
    assert {r["id"]: r for r in run_records(resumed)} == {r["id"]: r for r in expected}
    assert len(run_records(resumed)) == len(expected)
    resumed_metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("score", "n", "cost/calls", "cost/tokens"):
        assert resumed_metrics[key] == metrics[key], key


@pytest.mark.slow
def test_two_identical_runs_started_together_write_each_example_once(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WANDB_MODE": "disabled",
        "MOCO_LIT_HOME": str(tmp_path / "home"),
        CALL_DELAY: "2",  # 12 s of generation: the second run arrives while the first holds the folder
    }
    slow = ARGS[:4] + ["[callable:tests.resume_helpers.slow_oracle]"] + ARGS[5:]
    command = [sys.executable, "-m", "moco_lit", *slow, "--run_dir", str(tmp_path / "runs")]
    command += ["--progress", "false", "--trainer.enable_progress_bar", "false"]
    runs = [subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    (err,) = [err for code, err in results if code == 2]
    assert "is in use by another run" in err.strip().splitlines()[-1]
    (predictions,) = (tmp_path / "runs").rglob("predictions.jsonl")
    ids = [json.loads(line)["id"] for line in predictions.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 6
