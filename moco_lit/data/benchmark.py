"""A loaded benchmark and the checks its records pass on the way in.

``Benchmark`` holds validated ``dev`` and ``test`` records in MoCo's record schema;
``validate_records`` is the one gate every source (files, the Hub, the synthetic benchmarks) goes
through: a missing or repeated id, a field its task type needs or an answer that is not one of the
choices ends with one ``UserError`` line naming the file, the split and the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moco_lit.data.registry import TASK_TYPES
from moco_lit.errors import UserError
from moco_lit.evaluation.task_types import find_task_type, get_task_type, suggest_task_type

SPLITS = ("dev", "test")


@dataclass
class Benchmark:
    """A loaded benchmark: validated dev and test records plus where they came from."""

    name: str
    task_type: str
    dev: list[dict[str, Any]] = field(default_factory=list)
    test: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""

    def split(self, split: str) -> list[dict[str, Any]]:
        """The records of ``split`` ("dev" or "test")."""
        if split not in SPLITS:
            raise UserError(f"Unknown split {split!r}; expected one of {', '.join(SPLITS)}.")
        return self.dev if split == "dev" else self.test


# ---------------------------------------------------------------------------------------------
# validation


def check_task_type(task_type: str | None, where: str) -> str:
    """``task_type`` if moco_lit knows it, else a ``UserError`` naming ``where`` it came from."""
    if not task_type:
        raise UserError(
            f'{where}: no task type: add a top-level "task_type" to the file or pass '
            f"--data.task_type (one of {', '.join(TASK_TYPES)})."
        )
    if find_task_type(task_type) is None:
        raise UserError(
            f"{where}: unknown task type {task_type!r}{suggest_task_type(task_type)}; "
            f"expected one of {', '.join(TASK_TYPES)}."
        )
    return task_type


def _record_problem(record: dict[str, Any], task_type: str) -> str | None:
    """What makes ``record`` unusable for ``task_type``, or None when it is fine.

    The task type's spec says which fields a record needs (``output`` may be null: MoCo's math has
    a dozen such references, which the metric scores 0 rather than refusing the file) and what
    else it checks.
    """
    spec = get_task_type(task_type)
    missing = [name for name in spec.required_fields if name not in record]
    if missing:
        return f"{task_type} record lacks {', '.join(repr(m) for m in missing)}"
    for text_field in ("question", "input"):
        if text_field in spec.required_fields and not isinstance(record[text_field], str):
            return f"{text_field!r} must be a string, got {type(record[text_field]).__name__}"
    return spec.check_record(record) if spec.check_record is not None else None


def validate_records(
    records: Any, task_type: str, where: str, split: str, repeated_ids: bool = False
) -> list[dict[str, Any]]:
    """Checked copies of ``records`` with string ids, in their original order.

    ``where`` names the file in messages. With ``repeated_ids`` a reused id becomes ``ID#2``,
    ``ID#3``, ... (MoCo's own blend and math files need this); otherwise it is an error.
    """
    if not isinstance(records, list):
        raise UserError(f"{where}: {split!r} must be a list of records, got {type(records).__name__}.")
    checked: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        at = f"{where}: {split} record {index}"
        if not isinstance(record, dict):
            raise UserError(f"{at}: expected an object, got {type(record).__name__}.")
        if record.get("id") is None:
            raise UserError(f'{at}: missing "id" (every record needs an id unique within its split).')
        record_id = str(record["id"])
        at = f"{at} (id {record_id!r})"
        if record_id in seen:
            if not repeated_ids:
                raise UserError(
                    f"{at}: duplicate id, already used by {split} record {seen[record_id]}; "
                    "ids must be unique within a split."
                )
            record_id = _renamed_id(record_id, seen)
        seen[record_id] = index
        problem = _record_problem(record, task_type)
        if problem:
            raise UserError(f"{at}: {problem}.")
        checked.append({**record, "id": record_id})
    return checked


def _renamed_id(record_id: str, seen: dict[str, int]) -> str:
    """The first free ``ID#n`` (n >= 2) for a repeated id, so renaming is deterministic."""
    number = 2
    while f"{record_id}#{number}" in seen:
        number += 1
    return f"{record_id}#{number}"
