"""Persistent generation cache: (model fingerprint, rendered prompt, decoding params, seed, sample) → text.

SQLite in WAL mode with a busy timeout, so DDP ranks and parallel runs on one machine can read and
write the same file at once. Every lookup is consulted before a model generates; a rerun of a
finished experiment regenerates nothing.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA = "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
# SQLite's default limit on host parameters per statement is 999 in older builds
LOOKUP_CHUNK = 500


def cache_key(
    fingerprint: str, rendered_prompt: str, decoding: Mapping[str, Any], seed: int, sample: int
) -> str:
    payload = json.dumps([fingerprint, rendered_prompt, dict(sorted(decoding.items())), seed, sample])
    return hashlib.sha256(payload.encode()).hexdigest()


class GenerationCache:
    """A key → JSON-record store on disk. One connection per thread; safe across processes."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            _enable_wal(conn, self.timeout_s)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        conn = self._connect()
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT key, value FROM generations WHERE key IN ({marks})", chunk)
            found.update((key, json.loads(value)) for key, value in rows)
        return found

    def put_many(self, records: Mapping[str, dict]) -> None:
        if not records:
            return
        conn = self._connect()
        rows = [(key, json.dumps(value)) for key, value in records.items()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO generations (key, value) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _enable_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Switch the file to WAL, retrying while other processes hold it.

    Changing the journal mode needs the file to itself and SQLite may answer "locked" at once
    instead of waiting, which happens when DDP ranks open a new cache together.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.02 + random.random() * 0.05)
