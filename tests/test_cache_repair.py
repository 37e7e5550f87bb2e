"""A damaged generation cache heals; a full disk and a folder as --cache_path are one error line.

The default cache is shared by every run on the machine: a file SQLite cannot read (garbage, cut
in half by a full disk or a copy) is moved aside with one warning line naming the backup, a new
cache starts, and the run completes. Writes that hit a full disk (here: SQLite's page limit,
the same error code) and a full disk under the run folder name themselves.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3

import pytest

from moco_lit.cache import GenerationCache
from moco_lit.cli import main
from moco_lit.errors import UserError
from moco_lit.runs import RunFolder

GARBAGE = b"this was never a database" * 100
RUN = [
    "test",
    "--model",
    "single_model",
    "--model.collaborators",
    "[callable:tests.scripted.oracle]",
    "--data.benchmark",
    "quickstart",
    "--data.limit",
    "3",
    "--wandb",
    "false",
    "--progress",
    "false",
    "--trainer.enable_progress_bar",
    "false",
]


def _backups(path) -> list:
    found = path.parent.glob(path.name + ".corrupt-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


def test_a_garbage_cache_is_moved_aside_and_rebuilt(isolated_home, caplog):
    isolated_home.mkdir(parents=True, exist_ok=True)
    path = isolated_home / "generations.sqlite"  # the machine's shared cache
    path.write_bytes(GARBAGE)
    with caplog.at_level(logging.WARNING, logger="moco_lit.cache"):
        cache = GenerationCache(path)
    (backup,) = _backups(path)
    assert backup.read_bytes() == GARBAGE
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "moco_lit.cache"]
    assert str(backup) in warning and "damaged" in warning
    cache.put_many({"k": {"raw_text": "v"}})
    assert cache.get_many(["k"]) == {"k": {"raw_text": "v"}} and len(cache) == 1


def test_a_cache_cut_in_half_is_moved_aside(tmp_path):
    path = tmp_path / "generations.sqlite"
    cache = GenerationCache(path)
    cache.put_many({f"k{i}": {"raw_text": "x" * 400} for i in range(1000)})
    cache.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.truncate(path, path.stat().st_size // 2)
    assert len(GenerationCache(path)) == 0 and len(_backups(path)) == 1


def test_a_run_on_a_damaged_cache_completes_and_names_the_backup(tmp_path, isolated_home, capsys, caplog):
    isolated_home.mkdir(parents=True, exist_ok=True)
    path = isolated_home / "generations.sqlite"  # the default cache, shared by every run
    path.write_bytes(GARBAGE)
    with caplog.at_level(logging.WARNING, logger="moco_lit.cache"):
        code = main([*RUN, "--run_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err[-2000:]
    (backup,) = _backups(path)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "moco_lit.cache"]
    assert str(backup) in line
    assert len(GenerationCache(path)) == 3  # the new cache holds this run's generations
    (metrics,) = (tmp_path / "runs").rglob("metrics.json")
    assert json.loads(metrics.read_text())["n"] == 3


def test_a_named_file_that_is_not_a_cache_is_refused_and_left_alone(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_bytes(GARBAGE)
    with pytest.raises(UserError, match="is not a generation cache"):
        GenerationCache(data)
    assert data.read_bytes() == GARBAGE and _backups(data) == []


def test_a_full_disk_under_the_cache_is_one_line(tmp_path):
    cache = GenerationCache(tmp_path / "generations.sqlite")
    cache._connect().execute("PRAGMA max_page_count=8")  # SQLite then answers SQLITE_FULL
    with pytest.raises(UserError, match="^disk full: cannot write the generation cache"):
        cache.put_many({f"k{i}": {"raw_text": "x" * 4000} for i in range(50)})
    assert len(cache) == 0  # the transaction was rolled back, the cache still works
    cache.put_many({"small": {"raw_text": "ok"}})
    assert cache.get_many(["small"]) == {"small": {"raw_text": "ok"}}


def test_a_full_disk_under_the_run_folder_is_one_line(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path / "run")
    record = {"id": "1", "output": "2", "score": 1.0, "calls": 1, "tokens": 3, "new_tokens": 1}

    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("moco_lit.runs.os.fsync", full)
    with pytest.raises(UserError, match="^disk full: cannot write .*predictions.jsonl"):
        folder.append_predictions([record])
    with pytest.raises(UserError, match="^disk full: cannot write .*metrics.json"):
        folder.write_metrics({"n": 1})
    assert not (folder.path / "metrics.json.tmp").exists()
