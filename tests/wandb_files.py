"""Read an offline W&B run back from its ``run-<id>.wandb`` file, as ``wandb sync`` would upload it.

The file is a LevelDB-style log (32 KiB blocks of checksummed chunks, after a 7-byte ``:W&B``
header) of ``Record`` protobufs; what a dashboard would show is folded into one ``OfflineRun``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
CHUNK_HEADER = 7  # crc32 (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    path: Path
    id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None

    def series(self, key: str) -> list[Any]:
        return [row[key] for row in self.history if key in row]


def _payloads(data: bytes) -> list[bytes]:
    assert data[:4] == b":W&B", "not a W&B run file"
    payloads, pending, offset = [], b"", 7
    while offset + CHUNK_HEADER <= len(data):
        room = BLOCK - offset % BLOCK
        if room < CHUNK_HEADER:  # zero padding at the end of a block
            offset += room
            continue
        length, kind = struct.unpack_from("<HB", data, offset + 4)
        if kind == 0:
            break
        chunk = data[offset + CHUNK_HEADER : offset + CHUNK_HEADER + length]
        offset += CHUNK_HEADER + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            payloads.append(pending)
            pending = b""
    return payloads


def _items(items) -> dict[str, Any]:
    out = {}
    for item in items:
        key = item.key or "/".join(item.nested_key)
        out[key] = json.loads(item.value_json)
    return out


def read_offline_run(path: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run = OfflineRun(path)
    for payload in _payloads(path.read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info = record.run
            run.id, run.name, run.group, run.job_type = (
                info.run_id,
                info.display_name,
                info.run_group,
                info.job_type,
            )
            run.config.update(_items(info.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    for key in [k for k in run.config if k.startswith("_")]:
        run.config.pop(key)  # wandb's own bookkeeping
    return run


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run file under ``root``, in the order they were finished (last written)."""
    return [
        read_offline_run(p) for p in sorted(root.rglob("run-*.wandb"), key=lambda p: p.stat().st_mtime_ns)
    ]
