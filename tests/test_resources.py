"""Resource guards: CPU processes capped by the cores, workers that die with their launcher, and
prompts longer than a model's context refused before any forward pass.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from moco_lit.cli import main
from moco_lit.collaborators import load_collaborator
from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig, GenerationEngine, context_length
from tests.conftest import ROOT

QUICK = [
    "--model",
    "single_model",
    "--model.collaborators",
    "[callable:tests.scripted.oracle]",
    "--data.benchmark",
    "quickstart",
    "--data.limit",
    "2",
    "--wandb",
    "false",
    "--progress",
    "false",
    "--trainer.enable_progress_bar",
    "false",
]


def test_cpu_devices_beyond_the_cores_are_capped_with_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    with caplog.at_level(logging.WARNING, logger="moco_lit.lightning_cli"):
        code = main(
            [
                "test",
                *QUICK,
                "--trainer.accelerator",
                "cpu",
                "--trainer.devices",
                "64",
                "--run_dir",
                str(tmp_path),
            ]
        )
    assert code == 0
    (line,) = [r.getMessage() for r in caplog.records if r.name == "moco_lit.lightning_cli"]
    assert line == "--trainer.devices 64: this machine has 1 usable CPU cores; running 1 processes"
    (metrics,) = tmp_path.rglob("metrics.json")
    assert json.loads(metrics.read_text())["n"] == 2


def test_a_worker_dies_with_its_launcher(tmp_path):
    """The call every DDP worker makes at start (``LOCAL_RANK`` set): killing the launcher kills it."""
    child = textwrap.dedent("""
        from moco_lit.processes import die_with_parent
        import time
        die_with_parent()
        print("ready", flush=True)
        time.sleep(120)
    """)
    launcher = textwrap.dedent(f"""
        import subprocess, sys, time
        worker = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.PIPE, text=True)
        assert worker.stdout.readline().strip() == "ready"
        print(worker.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    worker_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker_pid), "the worker outlived its launcher"


def test_every_ddp_worker_ties_itself_to_its_launcher(monkeypatch):
    """A process Lightning's launcher starts has LOCAL_RANK set; the CLI's first act there is the tie."""
    from moco_lit import lightning_cli

    class Tied(Exception):
        pass

    def tie():
        raise Tied

    monkeypatch.setattr(lightning_cli, "die_with_parent", tie)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(Tied):
        lightning_cli.MocoCLI(args=["test"])
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not lightning_cli._launched_worker()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"  # a zombie has ended, it waits for its reaper
    except FileNotFoundError:
        return False


def test_a_prompt_far_past_the_context_is_refused_before_the_forward_pass(tiny_models, monkeypatch):
    collaborator = load_collaborator(tiny_models[0], torch.device("cpu"))
    limit = context_length(collaborator.model)
    assert limit == 512

    def no_forward(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(collaborator.model, "generate", no_forward)
    engine = GenerationEngine(cache=None, progress=False)
    with pytest.raises(
        UserError, match=f"longer than .* takes, 4096 tokens \\(8x its context of {limit}\\)"
    ) as refused:
        engine.generate(collaborator, ["fits", "word " * 20000], DecodingConfig(max_new_tokens=2))
    assert "refused, not cut" in str(refused.value) and "\n" not in str(refused.value)


def test_a_prompt_somewhat_past_a_rotary_context_runs_with_one_warning(tiny_models, caplog):
    collaborator = load_collaborator(tiny_models[0], torch.device("cpu"))
    engine = GenerationEngine(cache=None, progress=False)
    long = "word " * 700  # past 512 positions, within 8x
    with caplog.at_level(logging.WARNING, logger="moco_lit.generation"):
        outputs = engine.generate(collaborator, [long, long + "again"], DecodingConfig(max_new_tokens=2))
    assert all(o.prompt_tokens > 512 for o in outputs)
    warnings = [r.getMessage() for r in caplog.records if "past the model's context" in r.getMessage()]
    assert len(warnings) == 1


def test_a_prompt_past_a_learned_position_table_is_refused(monkeypatch):
    from types import SimpleNamespace

    from moco_lit.generation import check_prompt_lengths

    gpt2_like = SimpleNamespace(
        name="gpt2-like", model=SimpleNamespace(config=SimpleNamespace(n_positions=64))
    )
    check_prompt_lengths(gpt2_like, [[1] * 64], ["fits exactly"])
    with pytest.raises(UserError, match="its context of 64 tokens"):
        check_prompt_lengths(gpt2_like, [[1] * 65], ["one too many"])


def test_a_prompt_far_past_the_context_is_one_error_line_from_the_cli(tiny_models, tmp_path, capsys):
    data = tmp_path / "long.json"
    rows = [{"id": 1, "input": "short", "output": "x"}, {"id": 2, "input": "word " * 20000, "output": "y"}]
    data.write_text(json.dumps({"task_type": "exact_match", "dev": rows[:1], "test": rows}))
    argv = ["test", "--model", "single_model", "--model.collaborators", f"[{tiny_models[0]}]"]
    argv += [
        "--model.max_new_tokens",
        "2",
        "--data.benchmark",
        str(data),
        "--run_dir",
        str(tmp_path / "runs"),
    ]
    code = main([*argv, "--wandb", "false", "--progress", "false", "--trainer.enable_progress_bar", "false"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1, err[-2000:]
    assert "refused, not cut" in errors[0]
