"""Persistent generation cache: (model fingerprint, rendered prompt, decoding params, seed, sample) → text.

SQLite in WAL mode with a busy timeout, so DDP ranks and parallel runs on one machine can read and
write the same file at once. Every lookup is consulted before a model generates; a rerun of a
finished experiment regenerates nothing.

The default file is shared by every run on the machine, so a damaged one must not stop them all:
a file SQLite cannot read as a cache is moved aside (one warning line names the backup) and a new
cache is started; the only loss is regeneration. A full disk is one error line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from moco_lit import paths
from moco_lit.errors import UserError

log = logging.getLogger(__name__)

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
        if self.path.is_dir():
            raise UserError(
                f"--cache_path {str(self.path)!r} is a folder; give a file path (a new one is created)"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(
                f"cannot create the folder of the generation cache {str(self.path)!r} ({err})"
            ) from err
        self.timeout_s = timeout_s
        self._local = threading.local()
        try:
            self._open()
        except sqlite3.DatabaseError as err:
            if not _damaged(err):
                raise self._as_user_error(err) from err
            if not (self._is_default() or _looks_like_sqlite(self.path)):
                self.close()
                raise UserError(
                    f"--cache_path {str(self.path)!r} is not a generation cache (not an SQLite file); "
                    "give a new file path or an existing cache"
                ) from err
            self._move_aside(err)
            self._open()

    def _is_default(self) -> bool:
        """The machine's shared cache is healed whatever its state; a file the user named is only
        moved aside when it was an SQLite file (not, say, a data file given by mistake)."""
        return self.path.resolve() == (paths.home() / "generations.sqlite").resolve()

    def _open(self) -> None:
        conn = self._connect()
        conn.execute(SCHEMA)
        # reading a row walks the table's pages: a file with a valid header and garbage after it fails here
        conn.execute("SELECT key, value FROM generations LIMIT 1").fetchall()

    def _move_aside(self, err: sqlite3.DatabaseError) -> None:
        self.close()
        backup = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            try:
                self.path.with_name(self.path.name + suffix).rename(backup.with_name(backup.name + suffix))
            except FileNotFoundError:
                pass  # another process moved it first, or SQLite never made it
        log.warning(
            "the generation cache %s is damaged (%s); moved it to %s and started a new one",
            self.path,
            err,
            backup,
        )

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            except sqlite3.OperationalError as err:  # a folder that cannot hold the file
                raise self._as_user_error(err) from err
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            _enable_wal(conn, self.timeout_s)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        conn = self._connect()
        try:
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = keys[start : start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT key, value FROM generations WHERE key IN ({marks})", chunk)
                found.update((key, json.loads(value)) for key, value in rows)
        except (sqlite3.DatabaseError, ValueError) as err:
            raise self._as_user_error(err) from err
        return found

    def put_many(self, records: Mapping[str, dict]) -> None:
        if not records:
            return
        conn = self._connect()
        rows = [(key, json.dumps(value)) for key, value in records.items()]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO generations (key, value) VALUES (?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some errors (a full disk): rolling back
                # again would hide the real error behind "cannot rollback"
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as err:
            raise self._as_user_error(err) from err

    def _as_user_error(self, err: Exception) -> Exception:
        text = str(err)
        if isinstance(err, ValueError) or (isinstance(err, sqlite3.DatabaseError) and _damaged(err)):
            return UserError(
                f"the generation cache {str(self.path)!r} is damaged ({text}); move it away "
                "(or give another --cache_path) and rerun: finished examples are kept"
            )
        if "full" in text:
            return UserError(
                f"disk full: cannot write the generation cache {str(self.path)!r}; free space "
                "(or run with --cache false) and rerun (finished examples are kept)"
            )
        if "readonly" in text or "unable to open" in text:
            return UserError(
                f"cannot write the generation cache {str(self.path)!r} ({text}); "
                "give --cache_path a writable file or run with --cache false"
            )
        return err

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _looks_like_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _damaged(err: sqlite3.DatabaseError) -> bool:
    """SQLite's ways of saying the file is not a readable database (not: busy, locked, full)."""
    text = str(err)
    return not isinstance(err, sqlite3.OperationalError) or any(
        sign in text for sign in ("malformed", "not a database", "no such column", "corrupt")
    )


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
