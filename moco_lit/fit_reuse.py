"""A finished ``fit`` is not run again: its configuration, data and inputs unchanged, the next
``fit`` reuses its checkpoint (one line says so; ``--refit`` trains again).

A fit that ends normally writes ``fit.json`` in its run folder: its checkpoints and a fingerprint
of what its result depends on beyond the run id (which already hashes the method's arguments, the
data options and the scorer): the Trainer settings (epochs, steps, precision...) and every local
file or folder the configuration names (collaborator folders, adapters, a teacher run, a data
file): small files by content, large ones by size and modification time. A new fit of the same run folder whose fingerprint matches,
and whose checkpoints still exist, is skipped. A fit that starts removes the file first, so a
killed fit is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MARKER = "fit.json"
# Trainer settings that change how a fit is shown or logged, not what it learns
DISPLAY_ONLY = {"enable_progress_bar", "enable_model_summary", "logger", "callbacks", "log_every_n_steps"}
MAX_FILES = 2000  # a folder named by the configuration is fingerprinted by at most this many files
HASHED_BYTES = 8 * 1024 * 1024


def fingerprint(plain_config: dict[str, Any]) -> str:
    """What a finished fit's result depends on besides its run id (see the module docstring)."""
    trainer = {k: v for k, v in (plain_config.get("trainer") or {}).items() if k not in DISPLAY_ONLY}
    named = sorted(set(_local_paths(plain_config.get("model"))) | set(_local_paths(plain_config.get("data"))))
    files = {path: _stat_tree(Path(path)) for path in named}
    text = json.dumps({"trainer": trainer, "files": files, "seed": plain_config.get("seed_everything")},
                      sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reusable(folder: Path, plain_config: dict[str, Any]) -> dict[str, Any] | None:
    """The finished fit's record when this configuration may reuse it, else None."""
    marker = folder / MARKER
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("fingerprint") != fingerprint(plain_config):
        return None
    if not all(Path(p).is_file() for p in (record.get("last"), record.get("best")) if p):
        return None
    return record if record.get("last") or record.get("best") else None


def forget(folder: Path) -> None:
    """A fit is starting in ``folder``: whatever finished there before no longer stands."""
    try:
        (folder / MARKER).unlink()
    except FileNotFoundError:
        pass


def record_finished(folder: Path, plain_config: dict[str, Any], last: Path | None, best: str | None) -> None:
    """Write ``fit.json`` (atomically) for a fit that ended normally."""
    record = {
        "last": str(last) if last is not None and last.is_file() else None,
        "best": best if best and Path(best).is_file() else None,
        "fingerprint": fingerprint(plain_config),
    }
    partial = folder / (MARKER + ".partial")
    partial.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, folder / MARKER)


def _local_paths(value: Any) -> list[str]:
    """Every string in ``value`` that names an existing local file or folder."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in _local_paths(v)]
    if isinstance(value, list | tuple):
        return [p for v in value for p in _local_paths(v)]
    if isinstance(value, str) and value and not value.startswith("callable:") and len(value) < 4096:
        for part in value.split("+"):  # base+adapter
            try:
                if Path(part).expanduser().exists():
                    return [str(Path(part).expanduser().resolve())]
            except OSError:
                return []
    return []


def _stat_tree(path: Path) -> list:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())[:MAX_FILES]
    return [[str(file.relative_to(path)) if file != path else file.name, *_identity(file)] for file in files]


def _identity(file: Path) -> list:
    """A small file by its content (rewritten unchanged, it is the same input), a large one by size
    and modification time (hashing gigabytes of weights on every fit would cost more than it saves)."""
    stat = file.stat()
    if stat.st_size <= HASHED_BYTES:
        return [stat.st_size, hashlib.sha256(file.read_bytes()).hexdigest()[:16]]
    return [stat.st_size, stat.st_mtime_ns]
