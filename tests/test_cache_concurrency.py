"""The generation cache shared by several processes (DDP ranks, parallel runs) and threads at once.

Writers start together on a file that does not exist yet (so they also race to create it and to
switch it to WAL), each writes its own keys and keys every writer shares (two ranks generating the
same prompt), and reads back its own and the others' keys while they write. Afterwards every entry
is there with its exact value, SQLite's integrity check passes, and no process hung.
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
from pathlib import Path

from moco_lit.cache import GenerationCache

WORKERS = 4
ROUNDS = 25
BATCH = 20
SHARED = 30  # keys every worker writes, with the same value
JOIN_TIMEOUT_S = 120


def _own_key(worker: int, round_index: int, item: int) -> str:
    return f"w{worker}-r{round_index}-i{item}"


def _own_value(key: str) -> dict:
    # a value that is long enough to span pages now and then, and checkable from its key
    return {"raw_text": key * (1 + len(key) % 7), "prompt_tokens": len(key), "new_tokens": 3}


def _shared_value(index: int) -> dict:
    return {"raw_text": f"shared answer {index}", "prompt_tokens": index, "new_tokens": 1}


def hammer(path: str, worker: int, start: mp.synchronize.Barrier, results: mp.Queue) -> None:
    """One process: open the cache, write and read in rounds; report what it saw go missing."""
    start.wait()
    cache = GenerationCache(path, timeout_s=60)
    missing, wrong, seen_from_others = 0, 0, 0
    for round_index in range(ROUNDS):
        batch = {_own_key(worker, round_index, i): None for i in range(BATCH)}
        batch = {key: _own_value(key) for key in batch}
        shared = {f"shared-{i}": _shared_value(i) for i in range(round_index, SHARED, ROUNDS // 5 + 1)}
        cache.put_many({**batch, **shared})
        # read-your-writes: everything this worker wrote so far is there, byte for byte
        mine = [_own_key(worker, r, i) for r in range(round_index + 1) for i in range(BATCH)]
        found = cache.get_many(mine)
        missing += sum(key not in found for key in mine)
        wrong += sum(found[key] != _own_value(key) for key in found)
        others = [_own_key(other, round_index, 0) for other in range(WORKERS) if other != worker]
        seen_from_others += len(cache.get_many(others))
    cache.close()
    results.put((worker, missing, wrong, seen_from_others))


def test_processes_write_and_read_one_cache_at_once(tmp_path: Path):
    path = str(tmp_path / "shared" / "generations.sqlite")
    context = mp.get_context("spawn")
    start = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [context.Process(target=hammer, args=(path, w, start, results)) for w in range(WORKERS)]
    for process in processes:
        process.start()
    reports = [results.get(timeout=JOIN_TIMEOUT_S) for _ in processes]
    for process in processes:
        process.join(timeout=JOIN_TIMEOUT_S)
    hung = [p.pid for p in processes if p.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
    assert not hung, f"processes {hung} did not finish: deadlock"
    assert all(p.exitcode == 0 for p in processes)
    assert sorted(r[0] for r in reports) == list(range(WORKERS))
    assert all(missing == 0 and wrong == 0 for _, missing, wrong, _ in reports), reports

    cache = GenerationCache(path)
    own = [_own_key(w, r, i) for w in range(WORKERS) for r in range(ROUNDS) for i in range(BATCH)]
    found = cache.get_many(own)
    assert len(found) == len(own) and all(found[key] == _own_value(key) for key in own)
    shared = cache.get_many(f"shared-{i}" for i in range(SHARED))
    assert shared == {f"shared-{i}": _shared_value(i) for i in range(SHARED)}
    assert len(cache) == len(own) + SHARED
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_threads_of_one_process_share_a_cache_object(tmp_path: Path):
    """A method's helper threads (a data loader, a judge) use one GenerationCache: a connection each."""
    cache = GenerationCache(tmp_path / "generations.sqlite")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for round_index in range(10):
                batch = {_own_key(worker, round_index, i): None for i in range(BATCH)}
                cache.put_many({key: _own_value(key) for key in batch})
                assert len(cache.get_many(batch)) == BATCH
        except BaseException as error:  # noqa: BLE001 - reported to the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    assert len(cache) == 4 * 10 * BATCH
