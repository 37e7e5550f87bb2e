"""W&B for comparison: an offline run holds the identity config, summary metrics (gain included),
the sweep's group, stage and method as job type, and the per-example predictions table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moco_lit.evaluation.stats import paired_comparison
from moco_lit.runs import RunFolder
from tests.conftest import collaborators_arg

wandb = pytest.importorskip("wandb")

POOL = collaborators_arg(
    [
        "callable:tests.scripted.multiplier",
        "callable:tests.scripted.reverser",
        "callable:tests.scripted.wrong",
    ]
)
COMMON = ["--model.collaborators", POOL, "--data.benchmark", "quickstart", "--data.limit", "6"]


@pytest.mark.slow
def test_offline_run_has_summary_keys_and_predictions_table(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    _, single = run_cli("test", "--model", "single_model", "--wandb", "false", *COMMON)
    _, cli = run_cli("test", "--model", "majority_vote", "--wandb_group", "my-sweep", *COMMON)
    run = cli.trainer.loggers[0].experiment
    folder = cli.model.runtime.run_folder.path
    metrics = json.loads((folder / "metrics.json").read_text())
    best = json.loads((single.model.runtime.run_folder.path / "metrics.json").read_text())["score"]
    assert run.group == "my-sweep" and run.job_type == "test/majority_vote"
    assert run.config["method"] == "majority_vote" and run.config["benchmark"] == "quickstart"
    assert run.config["pool_size"] == 3 and run.config["model"]["init_args"]["tie"] == "random"
    assert run.summary["test/score"] == pytest.approx(metrics["score"])
    assert (
        run.summary["cost/tokens"] == metrics["cost/tokens"]
        and run.summary["cost/calls"] == metrics["cost/calls"]
    )
    assert run.summary["gain_over_best_single"] == pytest.approx(metrics["score"] - best)
    # the gain's interval and p-value pair the two runs' records by example id
    single_folder = RunFolder(single.model.runtime.run_folder.path)
    best_name = single_folder.read_metrics()["best_single_model"]
    paired = paired_comparison(
        {key: r["score"] for key, r in RunFolder(folder).load_predictions().items()},
        {key: r["details"]["scores"][best_name] for key, r in single_folder.load_predictions().items()},
    )
    assert (
        run.summary["gain_over_best_single_ci_low"],
        run.summary["gain_over_best_single_ci_high"],
        run.summary["gain_over_best_single_p"],
    ) == (paired.low, paired.high, paired.p_value)
    run.finish()
    wandb.teardown()  # the W&B service writes the offline file; shutting it down flushes it

    logged = _offline_records(next((folder / "wandb").glob("offline-run-*/run-*.wandb")))
    summary = {
        k: v for r in logged if r.WhichOneof("record_type") == "summary" for k, v in _items(r.summary.update)
    }
    assert {"test/score", "cost/tokens", "cost/calls", "gain_over_best_single"} <= set(summary)
    assert summary["gain_over_best_single"] == pytest.approx(metrics["score"] - best)
    history = {
        k: v for r in logged if r.WhichOneof("record_type") == "history" for k, v in _items(r.history.item)
    }
    assert history["predictions/_type"] == "table-file" and history["predictions/nrows"] == 6
    run_files = next((folder / "wandb").glob("offline-run-*")) / "files"
    table = json.loads((run_files / history["predictions/path"]).read_text())
    assert table["columns"][:6] == ["id", "output", "answer", "reference", "score", "prompt"]
    records = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert [row[0] for row in table["data"]] == [r["id"] for r in records]
    assert [row[4] for row in table["data"]] == [r["score"] for r in records]
    assert [row[5] for row in table["data"]] == [r["prompt"] for r in records] and all(records[0]["prompt"])


def _offline_records(path: Path) -> list:
    """The protobuf records of an offline ``.wandb`` file (a LevelDB-style log: 32 KiB blocks of
    chunks, each with a 7-byte header: crc32, little-endian length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data, block, position, pending, records = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B", f"{path} is not a W&B log"
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _items(items) -> list[tuple[str, object]]:
    return [(item.key or "/".join(item.nested_key), json.loads(item.value_json)) for item in items]


def test_without_wandb_logger_the_callback_does_nothing(run_cli):
    from moco_lit.callbacks import PredictionsTable

    _, cli = run_cli("test", "--model", "majority_vote", "--wandb", "false", *COMMON)
    assert not cli.trainer.loggers  # the table is a default callback; without W&B it logs nothing
    assert sum(isinstance(c, PredictionsTable) for c in cli.trainer.callbacks) == 1
    table = PredictionsTable()
    table.on_test_end(cli.trainer, cli.model)  # no W&B logger attached: nothing to log, no error
