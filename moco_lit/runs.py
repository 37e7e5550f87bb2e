"""Run folders: ``runs/<benchmark>/<method>/<run-id>/`` with config.yaml, predictions.jsonl, metrics.json.

The run id is a hash of the experiment's configuration, so the same command finds the same folder
and resumes: predictions are appended as batches finish (one file per rank under DDP, merged at
the end whatever the number of ranks), and examples already in the folder are not generated again.

What keeps a folder consistent: one run at a time holds it (``lock``, an advisory lock on the
folder, released when the process ends however it ends); ``config.yaml`` is written only with the
run's first result, so a run that fails before producing one leaves an existing folder as it was;
every record read back is validated (a corrupt line is refused with its line number); a torn last
line is cut with one ``truncate`` (never rewrite-in-place) and whole files are replaced atomically.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from moco_lit.errors import UserError

PREDICTIONS = "predictions.jsonl"
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}")
COUNTS = ("calls", "tokens", "new_tokens")
# folders this process holds: a second run of the same experiment in this process reuses the lock
_HELD: dict[Path, int] = {}


def run_id_for(config: Any) -> str:
    """A short stable id for an experiment configuration (any JSON-serialisable object)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


# settings that change speed, not results: left out of the run id
NOT_IN_RUN_ID = {"batch_size", "num_workers", "generation_batch_size"}


def experiment_config(config: Any, stage: str = "test") -> dict:
    """The part of a configuration that decides results: method, its arguments, data, checkpoint.

    ``config`` is a parsed configuration (anything with ``as_dict()``) or a saved ``config.yaml``'s
    dict. A `fit` resumed from a checkpoint is the same experiment, so its ``ckpt_path`` is left out.
    """
    plain = plain_value(config.as_dict() if hasattr(config, "as_dict") else config)
    data = {k: v for k, v in (plain.get("data") or {}).items() if k not in NOT_IN_RUN_ID}
    model = plain.get("model") or {}
    init_args = {k: v for k, v in (model.get("init_args") or {}).items() if k not in NOT_IN_RUN_ID}
    experiment = {
        "model": {"class_path": model.get("class_path"), "init_args": init_args},
        "data": data,
        "ckpt_path": None if stage == "fit" else plain.get("ckpt_path"),
    }
    if plain.get("scoring", "moco_lit") != "moco_lit":  # runs of the default scorer keep their ids
        experiment["scoring"] = plain["scoring"]
    if plain.get("generation_backend") == "llama_cpp":  # other kernels, other outputs (vllm's match hf's)
        experiment["generation_backend"] = "llama_cpp"
    return experiment


def plain_value(value: Any) -> Any:
    """A configuration value as plain JSON-like data (paths and other objects as strings)."""
    if isinstance(value, dict):
        return {str(k): plain_value(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def check_run_id(run_id: str) -> str:
    """``--run_id`` names one folder inside the run root: no separators, no ``..``."""
    if not RUN_ID.fullmatch(run_id):
        raise UserError(
            f"--run_id {run_id!r} is not a plain folder name; use letters, digits and . _ - + = "
            "(at most 128, starting with a letter or digit)"
        )
    return run_id


def benchmark_name(name_or_path: str) -> str:
    """The name a benchmark goes by, read from what the user passed without loading it: a
    registered or synthetic name as given, a file by its name without ``.json``/``.jsonl``. The
    loaded ``Benchmark`` of a file, run folders, sweeps and checkpoints all use this one rule."""
    if "/" in name_or_path or name_or_path.endswith((".json", ".jsonl")):
        return Path(name_or_path).name.removesuffix(".jsonl").removesuffix(".json")
    return name_or_path


class RunFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._pending_config: dict | None = None

    @classmethod
    def for_experiment(
        cls, root: str | Path, benchmark: str, method: str, run_id: str, stage: str
    ) -> RunFolder:
        name = benchmark_name(benchmark)
        suffix = "" if stage == "test" else f"-{stage}"
        check_run_id(run_id)
        folder = Path(root) / name / method / f"{run_id}{suffix}"
        if not folder.resolve().is_relative_to(Path(root).resolve()):
            raise UserError(f"the run folder {str(folder)!r} would be outside --run_dir {str(root)!r}")
        return cls(folder)

    def prepare(self) -> RunFolder:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # --run_dir under a file, read-only or full disk
            raise UserError(
                f"cannot create the run folder {str(self.path)!r} ({err.strerror or err}); "
                "give --run_dir a writable folder"
            ) from err
        return self

    def lock(self) -> RunFolder:
        """Hold the folder for this process; a second run of the same experiment stops with one line.

        An advisory ``flock`` on the folder itself (no file is added): the system drops it when
        the process ends, also on ``kill -9``, so a crashed run never leaves a stale lock.
        """
        self.prepare()
        key = self.path.resolve()
        if key in _HELD:
            return self
        handle = os.open(key, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(handle)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(
                    f"the run folder {str(self.path)!r} is in use by another run of the same "
                    "experiment; wait for it to finish (this command then resumes it) or give --run_id"
                ) from err
            raise
        _HELD[key] = handle
        return self

    def unlock(self) -> None:
        handle = _HELD.pop(self.path.resolve(), None)
        if handle is not None:
            os.close(handle)  # closing the descriptor releases the flock

    def write_config(self, config: dict) -> None:
        """Keep ``config`` to write with the run's first result (records, metrics, checkpoint)."""
        self._pending_config = config

    def commit_config(self) -> None:
        """Write the pending config.yaml: the run produced something, the folder is now its own."""
        if self._pending_config is None:
            return
        self.prepare()
        text = yaml.safe_dump(self._pending_config, sort_keys=False, default_flow_style=False)
        _atomic_write(self.path / "config.yaml", text)
        self._pending_config = None

    def write_metrics(self, metrics: dict) -> None:
        self.prepare().commit_config()
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
        self.prepare().commit_config()
        path = self.shard_path(rank, world_size)
        _drop_torn_tail(path)
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(lines)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            raise _disk_error(err, path) from err

    def load_predictions(self) -> dict[str, dict]:
        """Every finished record in the folder (all shards), by example id; a torn last line is skipped.

        Each record is checked before it counts (see ``check_record``): a corrupt one is a
        UserError naming the file and line, never a silently different result.
        """
        records: dict[str, dict] = {}
        if not self.path.exists():
            return records
        for file in [self.path / PREDICTIONS, *self.shards()]:
            if file.exists():
                records.update(read_prediction_records(file, tolerate_torn_tail=True, check=True))
        return records

    def shards(self) -> list[Path]:
        """Per-rank record files (from this run or an earlier one with another number of ranks).

        Only this run's own files: `score` leaves predictions.scores.jsonl beside them.
        """
        return sorted(self.path.glob("predictions.rank*.jsonl"))

    def merge_shards(self) -> Path:
        """Collect every rank's records into predictions.jsonl (by id; sorted for a stable file)."""
        records = self.load_predictions()
        target = self.path / PREDICTIONS
        body = "".join(
            json.dumps(records[key], ensure_ascii=False) + "\n" for key in sorted(records, key=_id_order)
        )
        self.commit_config()
        _atomic_write(target, body)
        # a kill here leaves records in both places: reading by id counts each once
        for shard in self.shards():
            shard.unlink()
        return target


def read_prediction_records(
    path: Path, tolerate_torn_tail: bool = False, check: bool = False
) -> dict[str, dict]:
    """``{id: record}`` from a JSONL file; bad lines are a UserError naming the file and line.

    With ``check``, every record must also be one this project wrote (``check_record``).
    """
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
        problem = check_record(record) if check else None
        if problem:
            raise UserError(
                f"{path}: line {number} is not a valid record ({problem}); "
                "delete that line and rerun to generate the example again"
            )
        records[str(record["id"])] = record
    return records


def check_record(record: dict) -> str | None:
    """What is wrong with a record read back for resuming (None when it can be counted)."""
    if not isinstance(record.get("output"), str):
        return '"output" is not a string'
    score = record.get("score")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
    ):
        return f'"score" is {score!r}, not a finite number or null'
    for key in COUNTS:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f'"{key}" is {value!r}, not a count'
    return None


def _drop_torn_tail(path: Path) -> None:
    """End a file left by a killed run on a whole line, so appended records start on a new line.

    A half-written last line is cut with one ``truncate`` call (a kill at any moment leaves the
    torn file or the cut one, never an empty one); a complete record that only lacks its newline
    (read back as done) gets the newline instead.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        keep = data.rfind(b"\n") + 1
        try:
            json.loads(data[keep:])
            handle.write(b"\n")
        except ValueError:
            handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())


def _id_order(key: str) -> tuple:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _atomic_write(path: Path, text: str) -> None:
    """Write a whole file so that a reader (or a kill) sees the old one or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _disk_error(err, path) from err


def _disk_error(err: OSError, path: Path) -> Exception:
    """A full disk or a read-only folder is the user's to fix: one line that says which."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"disk full: cannot write {str(path)!r}; free space and rerun (it resumes)")
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return UserError(f"cannot write {str(path)!r} ({err.strerror}); give --run_dir a writable folder")
    return err
