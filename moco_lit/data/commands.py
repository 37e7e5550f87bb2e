"""``python -m moco_lit data list`` and ``python -m moco_lit data fetch SOURCE``.

``main`` parses the command line; the other functions do the work and return plain values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moco_lit.argv import CommandParser
from moco_lit.data.fetch import fetch_modelco
from moco_lit.data.hub import HUB_LOADERS
from moco_lit.data.registry import BENCHMARKS, BenchmarkInfo
from moco_lit.data.sources import MODELCO_VERSION, modelco_cache_dir
from moco_lit.errors import UserError

FETCH_SOURCES = ("modelco", f"modelco=={MODELCO_VERSION}")
TABLE_COLUMNS = ("name", "task_type", "dev", "test", "source")


def _local_file(info: BenchmarkInfo, data_dir: Path | None) -> Path | None:
    for folder in (data_dir, modelco_cache_dir()):
        if folder is not None and (folder / info.moco_file).is_file():
            return folder / info.moco_file
    return None


def _split_sizes(path: Path) -> tuple[int | None, int | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None, None  # listed as unknown sizes; loading the benchmark reports the problem
    return len(data.get("dev", [])), len(data.get("test", []))


def _hub_source(info: BenchmarkInfo) -> str:
    if info.hub is None or info.hub not in HUB_LOADERS:
        return "not fetched (data fetch modelco)"
    return f"hub ({info.hub})"


def list_benchmarks(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per registered benchmark: name, task_type, dev/test sizes when a file is local, source."""
    folder = Path(data_dir).expanduser() if data_dir is not None else None
    rows = []
    for info in BENCHMARKS.values():
        local = _local_file(info, folder)
        dev, test = _split_sizes(local) if local else (None, None)
        source = str(local.parent) if local else _hub_source(info)
        rows.append(
            {"name": info.name, "task_type": info.task_type, "dev": dev, "test": test, "source": source}
        )
    return rows


def format_benchmark_table(rows: list[dict[str, Any]]) -> str:
    """``rows`` of ``list_benchmarks`` as an aligned text table (unknown sizes shown as ``-``)."""
    cells = [
        [("-" if row.get(column) is None else str(row[column])) for column in TABLE_COLUMNS] for row in rows
    ]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(TABLE_COLUMNS)]
    lines = [TABLE_COLUMNS, tuple("-" * width for width in widths), *cells]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines
    )


def fetch(source: str, force: bool = False) -> Path:
    """Fetch ``source`` into the cache and return its folder (``modelco`` or ``modelco==VERSION``)."""
    name, _, version = source.partition("==")
    if name != "modelco":
        raise UserError(f"Unknown data source {source!r}; accepted: {', '.join(FETCH_SOURCES)}.")
    return fetch_modelco(version or MODELCO_VERSION, force=force)


def main(argv: list[str]) -> int:
    """``python -m moco_lit data list|fetch SOURCE``."""
    parser = CommandParser(prog="python -m moco_lit data")
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="benchmarks, task types and split sizes")
    listing.add_argument("--data_dir", default=None)
    getter = sub.add_parser("fetch", help="download published data files (source: modelco)")
    getter.add_argument("source")
    getter.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "list":
        print(format_benchmark_table(list_benchmarks(args.data_dir)))
    else:
        print(f"data files in {fetch(args.source, force=args.force)}")
    return 0
