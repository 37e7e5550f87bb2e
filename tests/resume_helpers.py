"""Slow scripted collaborators for kill-and-resume tests (``callable:tests.resume_helpers.NAME``).

Each call appends ``[collaborator, pid, rendered prompt]`` to the file named by
``MOCO_TEST_CALL_LOG`` (when set) and then sleeps ``MOCO_TEST_CALL_DELAY`` seconds, so a test can
kill a run in the middle of a batch and count exactly which prompts a rerun generated again.
"""

from __future__ import annotations

import json
import os
import time

from tests import scripted

CALL_LOG = "MOCO_TEST_CALL_LOG"
CALL_DELAY = "MOCO_TEST_CALL_DELAY"


def _record(name: str, rendered: str) -> None:
    path = os.environ.get(CALL_LOG)
    if path:
        # one short write in append mode: lines of concurrent writers do not interleave
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps([name, os.getpid(), rendered]) + "\n")
    delay = float(os.environ.get(CALL_DELAY, "0"))
    if delay > 0:
        time.sleep(delay)


def slow_oracle(rendered: str) -> str:
    _record("slow_oracle", rendered)
    return scripted.oracle(rendered)


def slow_multiplier(rendered: str) -> str:
    _record("slow_multiplier", rendered)
    return scripted.multiplier(rendered)


def slow_reverser(rendered: str) -> str:
    _record("slow_reverser", rendered)
    return scripted.reverser(rendered)


def read_calls(path: str | os.PathLike) -> list[tuple[str, int, str]]:
    """The calls logged so far, in order (a torn last line, from a killed writer, is skipped)."""
    if not os.path.exists(path):
        return []
    calls = []
    for line in open(path, encoding="utf-8").read().splitlines():
        try:
            name, pid, rendered = json.loads(line)
        except ValueError:
            continue
        calls.append((name, pid, rendered))
    return calls
