"""Run folders: ``runs/<benchmark>/<method>/<run-id>/`` with config.yaml, predictions.jsonl, metrics.json.

The run id is a hash of the experiment's configuration, so the same command finds the same folder
and resumes: predictions are appended as batches finish (one file per rank under DDP, merged at
the end), and examples already in the folder are not generated again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from moco_lit.errors import UserError

PREDICTIONS = "predictions.jsonl"


def run_id_for(config: Any) -> str:
    """A short stable id for an experiment configuration (any JSON-serialisable object)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


class RunFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_experiment(
        cls, root: str | Path, benchmark: str, method: str, run_id: str, stage: str
    ) -> RunFolder:
        name = (
            Path(benchmark).stem
            if ("/" in benchmark or benchmark.endswith((".json", ".jsonl")))
            else benchmark
        )
        suffix = "" if stage == "test" else f"-{stage}"
        return cls(Path(root) / name / method / f"{run_id}{suffix}")

    def prepare(self) -> RunFolder:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # --run_dir under a file, read-only or full disk
            raise UserError(
                f"cannot create the run folder {str(self.path)!r} ({err.strerror or err}); "
                "give --run_dir a writable folder"
            ) from err
        return self

    def write_config(self, config: dict) -> None:
        self.prepare()
        _atomic_write(
            self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
        )

    def write_metrics(self, metrics: dict) -> None:
        self.prepare()
        _atomic_write(self.path / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> dict:
        path = self.path / "config.yaml"
        return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}

    def read_metrics(self) -> dict | None:
        path = self.path / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else None

    def shard_path(self, rank: int, world_size: int) -> Path:
        return self.path / (PREDICTIONS if world_size == 1 else f"predictions.rank{rank}.jsonl")

    def append_predictions(self, records: Iterable[dict], rank: int = 0, world_size: int = 1) -> None:
        lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        if not lines:
            return
        self.prepare()
        path = self.shard_path(rank, world_size)
        _drop_torn_tail(path)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    def load_predictions(self) -> dict[str, dict]:
        """Every finished record in the folder (all shards), by example id; a torn last line is skipped."""
        records: dict[str, dict] = {}
        if not self.path.exists():
            return records
        # only this run's own files: `score` leaves predictions.scores.jsonl beside them
        shards = sorted(self.path.glob("predictions.rank*.jsonl"))
        for file in [self.path / PREDICTIONS, *shards]:
            if file.exists():
                records.update(read_prediction_records(file, tolerate_torn_tail=True))
        return records

    def merge_shards(self) -> Path:
        """Collect every rank's records into predictions.jsonl (by id; sorted for a stable file)."""
        records = self.load_predictions()
        target = self.path / PREDICTIONS
        body = "".join(
            json.dumps(records[key], ensure_ascii=False) + "\n" for key in sorted(records, key=_id_order)
        )
        _atomic_write(target, body)
        for shard in self.path.glob("predictions.rank*.jsonl"):
            shard.unlink()
        return target


def read_prediction_records(path: Path, tolerate_torn_tail: bool = False) -> dict[str, dict]:
    """``{id: record}`` from a JSONL file; bad lines are a UserError naming the file and line."""
    records: dict[str, dict] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read it as UTF-8 JSON lines ({err})") from err
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if tolerate_torn_tail and number == len(lines):
                break  # a run killed mid-write leaves at most one torn line, at the end
            raise UserError(f"{path}: line {number} is not valid JSON ({err.msg})") from err
        if not isinstance(record, dict) or "id" not in record:
            raise UserError(f'{path}: line {number} has no "id" field')
        records[str(record["id"])] = record
    return records


def _drop_torn_tail(path: Path) -> None:
    """Cut a half-written last line (left by a killed run) so appended records start on a new line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def _id_order(key: str) -> tuple:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
