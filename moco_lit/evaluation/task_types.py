"""Task types: one ``TaskType`` spec per kind of task, all in one registry.

A task type is everything moco_lit does differently for one kind of task: the prompt template a
record is rendered with, the fields a record needs, how an output's answer is extracted, how
outputs are scored (moco_lit's rules and MoCo's), and the key under which answers vote. Every part
of moco_lit that depends on the task type looks its spec up here, so a new task type is one
``register_task_type(TaskType(...))``. The built-in ones are declared in
``moco_lit.evaluation.builtin_task_types`` and registered when ``moco_lit.evaluation`` is imported.

This module imports nothing of moco_lit but ``errors``: the modules that hold the pieces (prompts,
extraction, metrics, MoCo's rules) can look specs up here without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from moco_lit.errors import UserError, did_you_mean

__all__ = [
    "TASK_TYPE_NAMES",
    "VOTING_TASK_TYPES",
    "ScoringOptions",
    "TaskType",
    "TaskTypeNames",
    "find_task_type",
    "get_task_type",
    "per_example",
    "register_task_type",
    "suggest_task_type",
    "unregister_task_type",
]

Score = float | None
ScoreBatch = Callable[[list[str], list[dict]], list[Score]]
Regroup = Callable[[dict[str, Score], dict[str, dict]], dict[str, Score]]


@dataclass(frozen=True)
class ScoringOptions:
    """What building a scorer may need: judge models (None: MoCo's default) and their device, the
    code sandbox's limits, and for MoCo's rules the benchmark's name and the split being scored."""

    reward_model: str | None = None
    verifier: str | None = None
    encoder: str | None = None
    device: Any = "cpu"
    coding_timeout_s: float = 10
    coding_workers: int = 4
    benchmark: str = ""
    split: str = "test"


ScorerFactory = Callable[[ScoringOptions], ScoreBatch]


def per_example(rule: Callable[[str, dict], Score]) -> ScorerFactory:
    """The scorer factory of a rule that scores one output against its record."""

    def factory(options: ScoringOptions) -> ScoreBatch:
        return lambda outputs, records: [rule(output, record) for output, record in zip(outputs, records)]

    return factory


@dataclass(frozen=True)
class TaskType:
    """One task type.

    name: what benchmarks and ``--data.task_type`` call it.
    template: the prompt, a ``str.format`` template over the record's fields.
    required_fields: the record fields prompting and scoring need (checked when a file loads).
    prompt_fields: the template's fields from a record; None: the record itself (its fields
        written out as ``input`` when it has none).
    record_prompt: a record's own ``prompt`` string is shown instead of the template.
    show_answer: how a solved few-shot example writes its answer, in the form the prompt asks for.
    check_record: what else makes a record unusable (a one-line problem), None when it is fine.
    extract: the answer an output gives (``(output, record) -> answer``), None: no answer to extract.
    vote_key: the canonical form of an extracted answer, so equal answers vote together (None from
        it: no answer); a task type without one cannot be voted on.
    scorer, regroup: moco_lit's rules: builds the batch scorer once per run (judges load there);
        ``regroup`` applies rules spanning examples to a whole split's scores. No scorer: loaded
        and served, not scored.
    moco_scorer: MoCo's rule (``--scoring moco``), None where MoCo has none.
    """

    name: str
    template: str
    required_fields: tuple[str, ...] = ("input",)
    prompt_fields: Callable[[dict], dict] | None = None
    record_prompt: bool = True
    show_answer: Callable[[str], str] = str
    check_record: Callable[[dict], str | None] | None = None
    extract: Callable[[str, dict], str | None] | None = None
    vote_key: Callable[[str], str | None] | None = None
    scorer: ScorerFactory | None = None
    regroup: Regroup | None = None
    moco_scorer: ScorerFactory | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"a task type's name is a word like 'exact_match', got {self.name!r}")
        if self.vote_key is not None and self.extract is None:
            raise ValueError(f"task type {self.name!r}: a vote key needs an extract function")

    @property
    def scored(self) -> bool:
        """Whether moco_lit scores this task type."""
        return self.scorer is not None


_REGISTRY: dict[str, TaskType] = {}


def register_task_type(spec: TaskType, *, replace: bool = False) -> TaskType:
    """Add ``spec`` to the registry (``replace`` allows overriding a registered one)."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"task type {spec.name!r} is already registered; pass replace=True to override it")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_task_type(name: str) -> None:
    """Remove a registered task type (no-op when there is none)."""
    _REGISTRY.pop(name, None)


def find_task_type(name: str) -> TaskType | None:
    """The spec registered as ``name``, None when there is none."""
    return _REGISTRY.get(name)


def suggest_task_type(name: str) -> str:
    """``" (did you mean X?)"`` for the closest registered task type, or ``""``."""
    return did_you_mean(str(name), _REGISTRY, cutoff=0.6)


def get_task_type(name: str) -> TaskType:
    """The spec registered as ``name``; one ``UserError`` line naming the known ones when none is."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise UserError(
            f"unknown task type {name!r}{suggest_task_type(name)}; known task types: {', '.join(_REGISTRY)}"
        )
    return spec


class TaskTypeNames:
    """The names of the registered task types that ``keep`` accepts, read when used (so a task type
    registered later is in): iterable, sized, supports ``in``, in registration order."""

    def __init__(self, keep: Callable[[TaskType], bool] = lambda spec: True) -> None:
        self._keep = keep

    def _names(self) -> tuple[str, ...]:
        return tuple(name for name, spec in _REGISTRY.items() if self._keep(spec))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        spec = _REGISTRY.get(name) if isinstance(name, str) else None
        return spec is not None and self._keep(spec)

    def __repr__(self) -> str:
        return f"TaskTypeNames{self._names()!r}"


TASK_TYPE_NAMES = TaskTypeNames()
"""Every registered task type, scored or only loaded."""

VOTING_TASK_TYPES = TaskTypeNames(lambda spec: spec.vote_key is not None)
"""The task types whose answers can vote: those with a vote key."""
