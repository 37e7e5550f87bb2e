"""Crash and resume: runs killed with SIGKILL mid-batch and started again finish as if never killed.

``test`` and ``predict`` (majority_vote over slow scripted collaborators) are killed after the
first batch is in predictions.jsonl and the next batch has begun, then rerun with the same
command: exactly one record per example, the records and metrics of an uninterrupted run, and
only the prompts the generation cache did not hold are generated again. ``fit`` of a search
(heterogeneous_swarms, one checkpoint per iteration) is killed after its first checkpoint and
resumed with ``--ckpt_path``: it continues at the next iteration and ends in the uninterrupted
search's state. The uninterrupted runs are in-process, on their own cache.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from moco_lit import paths
from moco_lit.cache import GenerationCache
from moco_lit.cli import main
from tests.conftest import ROOT, collaborators_arg
from tests.resume_helpers import CALL_DELAY, CALL_LOG, read_calls

POOL = collaborators_arg(
    [f"callable:tests.resume_helpers.slow_{name}" for name in ("oracle", "multiplier", "reverser")]
)
EXAMPLES = 12
EVALUATE = [
    "--model",
    "majority_vote",
    "--model.collaborators",
    POOL,
    "--data.benchmark",
    "quickstart",
    "--data.limit",
    str(EXAMPLES),
    "--data.batch_size",
    "2",
]
SEARCH = [
    "--model",
    "heterogeneous_swarms",
    "--model.collaborators",
    POOL,
    "--model.population",
    "3",
    "--model.max_iterations",
    "3",
    "--data.benchmark",
    "quickstart",
    "--data.dev_limit",
    "8",
    "--trainer.max_epochs",
    "3",
    "--trainer.limit_val_batches",
    "0",
]
QUIET = ["--trainer.enable_progress_bar", "false", "--progress", "false"]
TIMEOUT_S = 180


class Run:
    """``python -m moco_lit ARGS`` in a subprocess with its own MOCO_LIT_HOME and a call log."""

    def __init__(self, tmp_path: Path, delay_s: float) -> None:
        self.home = tmp_path / "subprocess_home"
        self.calls = tmp_path / "calls.jsonl"
        self.logs = tmp_path / "logs"
        self.logs.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "WANDB_MODE": "disabled",
            "MOCO_LIT_HOME": str(self.home),
            CALL_LOG: str(self.calls),
            CALL_DELAY: str(delay_s),
        }
        self.started = 0

    def start(self, *args: str) -> subprocess.Popen:
        self.started += 1
        out = open(self.logs / f"run{self.started}.out", "w")  # noqa: SIM115 - closed by the OS at exit
        err = open(self.logs / f"run{self.started}.err", "w")  # noqa: SIM115
        command = [sys.executable, "-m", "moco_lit", *args, *QUIET]
        return subprocess.Popen(command, env=self.env, stdout=out, stderr=err, cwd=ROOT)

    def output(self, which: int, stream: str = "err") -> str:
        return (self.logs / f"run{which}.{stream}").read_text()

    def wait_until(self, condition: Callable[[], bool], process: subprocess.Popen, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not condition():
            if process.poll() is not None:
                pytest.fail(
                    f"the run ended (exit {process.returncode}) before {what}:\n{self.output(self.started)[-3000:]}"
                )
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.02)

    def finish(self, process: subprocess.Popen) -> None:
        assert process.wait(timeout=TIMEOUT_S) == 0, self.output(self.started)[-3000:]

    def cache_entries(self) -> int:
        return len(GenerationCache(self.home / "generations.sqlite"))

    def calls_of(self, process: subprocess.Popen) -> list[tuple[str, str]]:
        return [(name, prompt) for name, pid, prompt in read_calls(self.calls) if pid == process.pid]


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def _line_count(run_dir: Path) -> int:
    files = list(run_dir.rglob("predictions.jsonl"))
    return files[0].read_text().count("\n") if files else 0


def _score(predictions: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["score", "--benchmark", "quickstart", "--predictions", str(predictions), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["test", "predict"])
def test_a_killed_evaluation_resumes_to_the_uninterrupted_result(command, run_cli, tmp_path, capsys):
    _, straight = run_cli(command, *EVALUATE, "--run_dir", str(tmp_path / "straight"))
    straight_folder = straight.model.runtime.run_folder.path
    straight_entries = len(GenerationCache(paths.home() / "generations.sqlite"))

    run = Run(tmp_path, delay_s=0.1)
    args = [command, *EVALUATE, "--run_dir", str(tmp_path / "runs")]
    killed = run.start(*args)
    run.wait_until(lambda: _line_count(tmp_path / "runs") >= 2, killed, "the first batch was written")
    asked = len(read_calls(run.calls))
    # three more calls: the next batch's first model is answered and cached, the batch is not done
    run.wait_until(lambda: len(read_calls(run.calls)) >= asked + 3, killed, "the next batch began")
    kill(killed)
    done_at_kill = _line_count(tmp_path / "runs")
    cached_at_kill = run.cache_entries()
    assert 2 <= done_at_kill < EXAMPLES and cached_at_kill >= 3 * done_at_kill

    resumed = run.start(*args)
    run.finish(resumed)
    (folder,) = {path.parent for path in (tmp_path / "runs").rglob("predictions.jsonl")}
    records = _records(folder)
    assert len(records) == EXAMPLES and len({r["id"] for r in records}) == EXAMPLES
    by_id = {r["id"]: r for r in _records(straight_folder)}
    assert {r["id"]: r for r in records} == by_id
    assert f"resuming: {done_at_kill} examples already in" in run.output(2, "err")

    # only what the cache lacked was generated again, each once: every call added one cache entry
    # (sampling asks a prompt shared by two examples twice, with two seeds: calls are not unique)
    regenerated = run.calls_of(resumed)
    assert len(regenerated) == run.cache_entries() - cached_at_kill
    assert run.cache_entries() == straight_entries

    if command == "test":
        metrics = json.loads((folder / "metrics.json").read_text())
        expected = json.loads((straight_folder / "metrics.json").read_text())
        for key in ("score", "n", "cost/calls", "cost/tokens", "cost/new_tokens"):
            assert metrics[key] == expected[key], key
    else:
        assert _score(folder / "predictions.jsonl", capsys) == {
            **_score(straight_folder / "predictions.jsonl", capsys),
            "scores_path": str(folder / "predictions.scores.jsonl"),
        }


@pytest.mark.slow
def test_a_killed_search_resumes_from_its_checkpoint(run_cli, tmp_path):
    _, straight = run_cli("fit", *SEARCH, "--run_dir", str(tmp_path / "straight"))
    swarm = straight.model.swarm
    assert swarm.iteration == 3
    straight_entries = len(GenerationCache(paths.home() / "generations.sqlite"))

    run = Run(tmp_path, delay_s=0.02)
    killed = run.start("fit", *SEARCH, "--run_dir", str(tmp_path / "runs"))
    first = tmp_path / "first.ckpt"

    def checkpoint_saved() -> bool:
        # Lightning writes the file in one go; copy it once it loads, before the next replaces it
        for path in (tmp_path / "runs").rglob("*.ckpt"):
            try:
                shutil.copyfile(path, first)
                return torch.load(first, weights_only=False)["swarm"]["iteration"] >= 1
            except Exception:  # noqa: BLE001 - half-written or just deleted: look again
                return False
        return False

    run.wait_until(checkpoint_saved, killed, "the first checkpoint")
    kill(killed)
    iteration_at_kill = torch.load(first, weights_only=False)["swarm"]["iteration"]
    cached_at_kill = run.cache_entries()
    assert iteration_at_kill < 3

    resumed = run.start("fit", *SEARCH, "--run_dir", str(tmp_path / "runs"), "--ckpt_path", str(first))
    run.finish(resumed)
    printed = run.output(2, "err")
    # the search went on from the checkpoint: the iterations it had finished were not run again
    assert f"swarms iteration {iteration_at_kill}:" not in printed and "swarms iteration 3:" in printed
    final = max((tmp_path / "runs").rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    state = torch.load(final, weights_only=False)
    assert state["swarm"]["iteration"] == 3
    assert torch.equal(state["swarm"]["positions"], swarm.positions)
    assert state["swarm"]["score_history"] == swarm.score_history
    assert torch.equal(state["state_dict"]["best_graph"], straight.model.best_graph)

    regenerated = set(run.calls_of(resumed))
    assert len(regenerated) == run.cache_entries() - cached_at_kill
    assert run.cache_entries() == straight_entries


def test_scoring_a_run_folder_does_not_disturb_its_resume(run_cli, tmp_path, capsys):
    """``score`` writes predictions.scores.jsonl beside predictions.jsonl; a rerun must not read it as records."""
    args = ["test", *EVALUATE[:-4], "--data.limit", "4", "--run_dir", str(tmp_path / "runs")]
    _, first = run_cli(*args)
    folder = first.model.runtime.run_folder.path
    records = _records(folder)
    assert _score(folder / "predictions.jsonl", capsys)["n"] == 4
    assert (folder / "predictions.scores.jsonl").exists()
    _, again = run_cli(*args)
    assert again.model.engine.stats.calls == 0 and _records(folder) == records
    assert json.loads((folder / "metrics.json").read_text())["n"] == 4
