"""Small fixture files for the data tests (never MoCo's real files); each test's own cache root
comes from tests/conftest.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def mc_record(record_id: Any, answer: str = "B") -> dict[str, Any]:
    return {
        "id": record_id,
        "question": f"Question {record_id}?",
        "choices": {"A": "one", "B": "two"},
        "answer": answer,
    }


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def mc_file(tmp_path: Path) -> Path:
    """A MoCo-format multiple-choice file: dev ids 0-2, test ids 10-14."""
    data = {
        "name": "tiny_mc",
        "task_type": "multiple_choice",
        "dev": [mc_record(i, "B") for i in range(3)],
        "test": [mc_record(i, "A") for i in range(10, 15)],
    }
    return write_json(tmp_path / "tiny_mc.json", data)
