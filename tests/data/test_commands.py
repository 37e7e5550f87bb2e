from __future__ import annotations

import json
from pathlib import Path

from moco_lit.data.commands import format_benchmark_table, list_benchmarks
from moco_lit.data.sources import modelco_cache_dir


def test_list_without_local_files_shows_sources() -> None:
    rows = {row["name"]: row for row in list_benchmarks()}
    assert len(rows) == 45
    assert rows["gsm8k"]["dev"] is None and rows["gsm8k"]["source"] == "hub (gsm8k)"
    assert "data fetch modelco" in rows["agieval"]["source"]


def test_list_reads_sizes_of_local_files(tmp_path: Path) -> None:
    cache = modelco_cache_dir()
    cache.mkdir(parents=True)
    (cache / "bbh.json").write_text(json.dumps({"dev": [{}] * 2, "test": [{}] * 3}), encoding="utf-8")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "popqa.json").write_text("{broken", encoding="utf-8")
    rows = {row["name"]: row for row in list_benchmarks(data_dir=folder)}
    assert (rows["bbh"]["dev"], rows["bbh"]["test"], rows["bbh"]["source"]) == (2, 3, str(cache))
    assert rows["popqa"]["dev"] is None and rows["popqa"]["source"] == str(folder)


def test_table_is_aligned() -> None:
    table = format_benchmark_table(
        [
            {"name": "a", "task_type": "exact_match", "dev": 1, "test": 22, "source": "x"},
            {"name": "longer_name", "task_type": "coding", "dev": None, "test": None, "source": "hub"},
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["name", "task_type", "dev", "test", "source"]
    assert lines[3].split() == ["longer_name", "coding", "-", "-", "hub"]
    assert lines[0].index("task_type") == lines[2].index("exact_match") == lines[3].index("coding")
