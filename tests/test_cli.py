"""The command line: help, print_config for every method, bad input, resume, cache, score, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moco_lit import methods
from moco_lit.cli import main
from tests.conftest import ROOT, collaborators_arg

SCRIPTED = collaborators_arg(["callable:tests.scripted.multiplier", "callable:tests.scripted.oracle"])


def scripted_single_model(batch_size: int, run_dir: Path) -> list[str]:
    """``test`` of single_model with the two scripted collaborators on 9 quickstart questions."""
    return [
        "test",
        "--model",
        "single_model",
        "--model.collaborators",
        SCRIPTED,
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "9",
        "--data.batch_size",
        str(batch_size),
        "--run_dir",
        str(run_dir),
    ]


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def test_overview_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "test", "quickstart", "score", "data", "models", "majority_vote"):
        assert command in out


@pytest.mark.parametrize("name", methods.names())
def test_print_config_works_for_every_method(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--model", name, "--model.collaborators", "[a, b]", "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert methods.class_path(name) in printed and "collaborators" in printed


def _write_benchmark(tmp_path: Path) -> Path:
    rows = [{"id": i, "input": f"What is {i} times 2?", "output": str(2 * i)} for i in range(1, 5)]
    path = tmp_path / "doubles.json"
    path.write_text(json.dumps({"name": "doubles", "task_type": "exact_match", "dev": rows, "test": rows}))
    return path


BAD_INPUTS = {
    "unknown benchmark": [
        "test",
        "--model",
        "single_model",
        "--model.collaborators",
        SCRIPTED,
        "--data.benchmark",
        "no_such_bench",
    ],
    "unknown method class": ["test", "--model", "no_such_method", "--model.collaborators", SCRIPTED],
    "unknown key": [
        "test",
        "--model",
        "single_model",
        "--model.collaborators",
        SCRIPTED,
        "--model.no_such_key",
        "3",
    ],
    "wrong type": [
        "test",
        "--model",
        "single_model",
        "--model.collaborators",
        SCRIPTED,
        "--data.limit",
        "many",
    ],
    "missing model folder": [
        "test",
        "--model",
        "single_model",
        "--model.collaborators",
        "[/no/such/model]",
        "--data.limit",
        "2",
    ],
    "too few collaborators": ["test", "--model", "majority_vote", "--model.collaborators", "[]"],
    "unknown command": ["frobnicate"],
    "unknown data source": ["data", "fetch", "nowhere"],
    "unknown model name": ["models", "fetch", "no-such-model"],
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    argv = BAD_INPUTS[case]
    if argv[0] == "test":
        argv = [*argv, "--run_dir", str(tmp_path / "runs"), "--wandb", "false"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err


def test_bad_predictions_file_keeps_earlier_results(tmp_path, capsys):
    bench = _write_benchmark(tmp_path)
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text('{"id": 1, "output": "2"}\n{not json\n')
    assert main(["score", "--benchmark", str(bench), "--predictions", str(predictions)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and err.count("\n") == 1
    assert predictions.read_text().startswith('{"id": 1')


def test_score_json_scores_by_id(tmp_path, capsys):
    bench = _write_benchmark(tmp_path)
    predictions = tmp_path / "preds.jsonl"
    # out of order and one wrong: scoring must follow ids, not positions
    lines = [
        {"id": 3, "output": "6"},
        {"id": 1, "output": "\\boxed{2}"},
        {"id": 2, "output": "5"},
        {"id": 4, "output": "8"},
    ]
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["score", "--benchmark", str(bench), "--predictions", str(predictions), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 4 and result["mean"] == 0.75
    assert result["scores"] == {"1": 1.0, "2": 0.0, "3": 1.0, "4": 1.0}
    assert result["benchmark"] == "doubles" and result["task_type"] == "exact_match"
    # Wilson for 3 of 4: centre 4.920729 / 7.841459, half 0.249949 · sqrt(0.75 + 0.960365)
    assert result["mean_ci"] == pytest.approx([0.3006, 0.9544], abs=5e-4)
    assert (result["ci_method"], result["confidence"]) == ("wilson", 0.95)
    assert main(["score", "--benchmark", str(bench), "--predictions", str(predictions)]) == 0
    assert "mean 0.7500 (95% CI [0.3006, 0.9544], wilson) over 4" in capsys.readouterr().out


def test_data_list_shows_moco_benchmarks(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "gsm8k" in out and "mmlu_redux" in out and "multiple_choice" in out


def test_rerun_regenerates_nothing_and_no_cache_regenerates(run_cli, tiny_models, tmp_path):
    args = [
        "test",
        "--model",
        "single_model",
        "--model.collaborators",
        collaborators_arg(tiny_models[:2]),
        "--model.max_new_tokens",
        "4",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "5",
    ]
    _, first = run_cli(*args, "--run_dir", str(tmp_path / "a"))
    assert first.model.engine.stats.generated == 10
    _, second = run_cli(*args, "--run_dir", str(tmp_path / "b"))
    assert second.model.engine.stats.generated == 0 and second.model.engine.stats.cache_hits == 10
    assert _records(second.model.runtime.run_folder.path) == _records(first.model.runtime.run_folder.path)
    _, uncached = run_cli(*args, "--run_dir", str(tmp_path / "c"), "--cache", "false")
    assert uncached.model.engine.cache is None and uncached.model.engine.stats.generated == 10


def test_interrupted_run_resumes_from_predictions(run_cli, tmp_path):
    args = scripted_single_model(batch_size=3, run_dir=tmp_path / "runs")
    _, full = run_cli(*args)
    folder = full.model.runtime.run_folder.path
    complete = _records(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    # keep 4 records and a torn fifth line, as a killed run leaves them
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    (folder / "predictions.jsonl").write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    _, resumed = run_cli(*args)
    assert resumed.model.runtime.run_folder.path == folder
    records = _records(folder)
    assert len(records) == 9 and sorted(r["id"] for r in records) == sorted(r["id"] for r in complete)
    assert resumed.model.engine.stats.calls == 2 * 5  # only the 5 unfinished examples were asked
    resumed_metrics = json.loads((folder / "metrics.json").read_text())
    assert resumed_metrics["score"] == metrics["score"] and resumed_metrics["n"] == 9
    # the interval is over every record in the folder, the resumed ones included
    assert resumed_metrics["score_ci"] == metrics["score_ci"] and resumed_metrics["ci_n"] == 9


def test_fit_calibrates_and_test_reuses_the_checkpoint(run_cli, tmp_path):
    pool = collaborators_arg(["callable:tests.scripted.wrong", "callable:tests.scripted.multiplier"])
    common = [
        "--model",
        "majority_vote",
        "--model.collaborators",
        pool,
        "--model.tie",
        "dev-based",
        "--data.benchmark",
        "quickstart",
        "--data.dev_limit",
        "6",
        "--data.limit",
        "6",
    ]
    _, fitted = run_cli("fit", *common)
    assert fitted.model.dev_scores.tolist() == pytest.approx([0.0, 1 / 3])
    checkpoint = next(fitted.model.runtime.run_folder.path.rglob("*.ckpt"))
    _, tested = run_cli("test", *common, "--ckpt_path", str(checkpoint))
    assert tested.model.dev_scores.tolist() == pytest.approx([0.0, 1 / 3])
    assert tested.model.engine.stats.calls == 2 * 6  # test only: no dev calibration again


@pytest.mark.slow
def test_ddp_two_processes_reduce_metrics_across_ranks(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    command = [
        sys.executable,
        "-m",
        "moco_lit",
        *scripted_single_model(batch_size=2, run_dir=tmp_path / "runs"),
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    folder = next((tmp_path / "runs").rglob("metrics.json")).parent
    metrics = json.loads((folder / "metrics.json").read_text())
    # 9 examples split 5 + 4 over the ranks; every one counted once in the global mean
    assert metrics["n"] == 9
    assert metrics["score/multiplier"] == pytest.approx(1 / 3) and metrics["score/oracle"] == 1.0
    # the intervals are over both ranks' examples: Wilson for 9/9 and 3/9
    assert metrics["ci_n"] == 9 and metrics["score_ci"] == pytest.approx([0.7008, 1.0], abs=5e-4)
    assert metrics["score_ci/multiplier"] == pytest.approx([0.1206, 0.6458], abs=5e-4)
    records = _records(folder)
    assert len(records) == 9 and len({r["id"] for r in records}) == 9
    assert not list(folder.glob("predictions.rank*.jsonl"))
