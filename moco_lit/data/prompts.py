"""The user message each record turns into, one template per kind of task.

Templates are module-level strings with ``str.format`` fields; each task type's spec
(``moco_lit.evaluation.task_types``) names its template, its fields and how a solved example shows
its answer. A recipe or a method can pass its own templates through
``render_prompt(..., templates={...})``, or register a task type's spec with another template.
Record text is substituted as a value, so braces inside questions are safe.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from moco_lit.errors import UserError
from moco_lit.evaluation.task_types import TASK_TYPE_NAMES, find_task_type, suggest_task_type

MULTIPLE_CHOICE_TEMPLATE = (
    "{question}\n\n{options}\n\nPick the one correct option. End your reply with the letter of that "
    "option on its own, for example: Answer: B"
)
BOXED_ANSWER_TEMPLATE = (
    "{input}\n\nReason it through as needed, then give your final answer inside \\boxed{{}}, "
    "for example \\boxed{{42}}."
)
CODE_TEMPLATE = (
    "{input}\n\nWrite a complete, self-contained Python function that solves this task, including "
    "any imports it needs. Reply with the code in one ```python fenced block."
)
AS_IS_TEMPLATE = "{input}"
OPTION_LINE = "{letter}) {text}"


class _Templates(Mapping[str, str]):
    """Each registered task type's template, by name, read from its spec when used."""

    def __getitem__(self, task_type: str) -> str:
        spec = find_task_type(task_type)
        if spec is None:
            raise KeyError(task_type)
        return spec.template

    def __iter__(self) -> Iterator[str]:
        return iter(TASK_TYPE_NAMES)

    def __len__(self) -> int:
        return len(TASK_TYPE_NAMES)


TEMPLATES: Mapping[str, str] = _Templates()


def format_options(choices: dict[str, Any]) -> str:
    """One ``A) text`` line per option, in the record's order."""
    return "\n".join(OPTION_LINE.format(letter=letter, text=text) for letter, text in choices.items())


def multiple_choice_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The record plus ``options``, its choices one per line."""
    return {**record, "options": format_options(record["choices"])}


def input_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The record; one without ``input`` gets its fields written out as the input."""
    if "input" not in record:
        # a few smdd records carry only structured fields: show them rather than an empty prompt
        shown = {key: value for key, value in record.items() if key != "id"}
        return {**record, "input": "\n".join(f"{key}: {value}" for key, value in shown.items())}
    return record


def show_letter(answer: str) -> str:
    """A solved multiple-choice example's answer, as its prompt asks for it."""
    return f"Answer: {answer}"


def show_boxed(answer: str) -> str:
    """A solved example's answer inside ``\\boxed{}``, as the boxed-answer prompt asks for it."""
    return f"\\boxed{{{answer}}}"


def render_prompt(task_type: str, record: dict[str, Any], templates: dict[str, str] | None = None) -> str:
    """The user message for ``record`` of ``task_type`` (``templates`` override ``TEMPLATES``).

    A record that carries its own ``prompt`` string is shown as is: benchmarks whose wording is
    part of the task (the synthetic skills, a researcher's own JSONL) keep it.
    """
    spec = find_task_type(task_type)
    if isinstance(record.get("prompt"), str) and (spec is None or spec.record_prompt):
        return record["prompt"]
    template = (templates or {}).get(task_type, spec.template if spec else None)
    if template is None:
        known = sorted({*TEMPLATES, *(templates or {})})
        raise UserError(
            f"No prompt template for task type {task_type!r}{suggest_task_type(task_type)}; "
            f"known: {', '.join(known)}."
        )
    fields = spec.prompt_fields if spec is not None and spec.prompt_fields is not None else input_fields
    try:
        return template.format(**fields(record))
    except KeyError as error:
        raise UserError(
            f"The {task_type} prompt template uses {{{error.args[0]}}}, which record {record.get('id')!r} lacks."
        ) from None


FEWSHOT_INTRO = "Here are solved examples, then the task to solve.\n\n"
FEWSHOT_TASK = "Now the task to solve.\n\n"


def shot_answer(task_type: str, record: dict[str, Any]) -> str | None:
    """How a solved example shows its answer, in the form the task's prompt asks for; None when the
    record carries no answer to show."""
    answer = record.get("answer", record.get("output"))
    if answer is None or isinstance(answer, list | dict):
        answer = record.get("output") if isinstance(record.get("output"), str) else None
    if answer is None or answer == "":
        return None
    spec = find_task_type(task_type)
    return spec.show_answer(str(answer)) if spec is not None else str(answer)


def with_shots(prompt: str, shots: list[tuple[str, str]]) -> str:
    """``prompt`` after solved examples (each its prompt and its answer)."""
    if not shots:
        return prompt
    solved = "\n\n".join(f"{shown}\n{answer}" for shown, answer in shots)
    return f"{FEWSHOT_INTRO}{solved}\n\n{FEWSHOT_TASK}{prompt}"


def apply_template(template: str, prompt: str, record: dict[str, Any]) -> str:
    """A recipe's ``prompt_template``: ``{prompt}`` is the task's prompt, other fields the record's."""
    try:
        return template.format_map({**record, "prompt": prompt})
    except (KeyError, IndexError, ValueError) as error:
        raise UserError(
            f"--data.prompt_template: {error.args[0] if error.args else error} is not a field of record "
            f"{record.get('id')!r} (use {{prompt}} and the record's own fields; double literal braces)"
        ) from None
