"""The user message each record turns into, one template per kind of task.

Templates are module-level strings with ``str.format`` fields, so a recipe or a method can pass
its own through ``render_prompt(..., templates={...})`` or replace an entry of ``TEMPLATES``.
Record text is substituted as a value, so braces inside questions are safe.
"""

from __future__ import annotations

from typing import Any

from moco_lit.errors import UserError

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

TEMPLATES: dict[str, str] = {
    "multiple_choice": MULTIPLE_CHOICE_TEMPLATE,
    "exact_match": BOXED_ANSWER_TEMPLATE,
    "f1_match": BOXED_ANSWER_TEMPLATE,
    "general_verifier": BOXED_ANSWER_TEMPLATE,
    "coding": CODE_TEMPLATE,
    "noncompliance": AS_IS_TEMPLATE,
    "reward_model": AS_IS_TEMPLATE,
    "text_generation": AS_IS_TEMPLATE,
    "generation_diversity": AS_IS_TEMPLATE,
    # loaded but not scored by moco_lit: the record's own instruction is the prompt
    "ifeval": AS_IS_TEMPLATE,
    "kernel_bench": AS_IS_TEMPLATE,
    "smdd": AS_IS_TEMPLATE,
}


def format_options(choices: dict[str, Any]) -> str:
    """One ``A) text`` line per option, in the record's order."""
    return "\n".join(OPTION_LINE.format(letter=letter, text=text) for letter, text in choices.items())


def _fields(task_type: str, record: dict[str, Any]) -> dict[str, Any]:
    if task_type == "multiple_choice":
        return {**record, "options": format_options(record["choices"])}
    if "input" not in record:
        # a few smdd records carry only structured fields: show them rather than an empty prompt
        shown = {key: value for key, value in record.items() if key != "id"}
        return {**record, "input": "\n".join(f"{key}: {value}" for key, value in shown.items())}
    return record


def render_prompt(task_type: str, record: dict[str, Any], templates: dict[str, str] | None = None) -> str:
    """The user message for ``record`` of ``task_type`` (``templates`` override ``TEMPLATES``).

    A record that carries its own ``prompt`` string is shown as is: benchmarks whose wording is
    part of the task (the synthetic skills, a researcher's own JSONL) keep it.
    """
    if isinstance(record.get("prompt"), str) and task_type != "multiple_choice":
        return record["prompt"]
    chosen = {**TEMPLATES, **(templates or {})}
    if task_type not in chosen:
        raise UserError(
            f"No prompt template for task type {task_type!r}; known: {', '.join(sorted(chosen))}."
        )
    try:
        return chosen[task_type].format(**_fields(task_type, record))
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
    if task_type == "multiple_choice":
        return f"Answer: {answer}"
    if TEMPLATES.get(task_type) == BOXED_ANSWER_TEMPLATE:
        return f"\\boxed{{{answer}}}"
    return str(answer)


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
