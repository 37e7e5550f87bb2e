"""The task types moco_lit ships, one ``TaskType`` entry each, registered on import.

Each entry joins pieces that live where their kind lives: prompt templates in ``data/prompts.py``,
answer extraction in ``extraction.py``, moco_lit's scoring rules in ``metrics.py`` and MoCo's in
``moco_rules.py``. ``docs/scoring.md`` states every rule; ``docs/benchmarks.md`` the fields.
"""

from __future__ import annotations

from moco_lit.data.prompts import (
    AS_IS_TEMPLATE,
    BOXED_ANSWER_TEMPLATE,
    CODE_TEMPLATE,
    MULTIPLE_CHOICE_TEMPLATE,
    multiple_choice_fields,
    show_boxed,
    show_letter,
)
from moco_lit.evaluation import metrics, moco_rules
from moco_lit.evaluation.extraction import canonical_value, extract_choice, extract_code, extract_final_answer
from moco_lit.evaluation.task_types import TaskType, per_example, register_task_type


def _check_choices(record: dict) -> str | None:
    choices = record["choices"]
    if not isinstance(choices, dict) or not choices:
        return '\'choices\' must be a non-empty object like {"A": "...", "B": "..."}'
    if record["answer"] not in choices:
        return f"answer {record['answer']!r} is not one of the choices {sorted(choices)}"
    return None


def _check_references(record: dict) -> str | None:
    if not isinstance(record["reference"], list):
        return "'reference' must be a list of reference texts"
    return None


def _chosen_option(output: str, record: dict) -> str | None:
    return extract_choice(output, record["choices"])


def _final_answer(output: str, record: dict) -> str:
    return extract_final_answer(output)


def _code(output: str, record: dict) -> str:
    return extract_code(output)


def _as_is(answer: str) -> str:
    return answer


BUILTIN_TASK_TYPES: tuple[TaskType, ...] = (
    TaskType(
        "multiple_choice",
        MULTIPLE_CHOICE_TEMPLATE,
        required_fields=("question", "choices", "answer"),
        prompt_fields=multiple_choice_fields,
        record_prompt=False,
        show_answer=show_letter,
        check_record=_check_choices,
        extract=_chosen_option,
        vote_key=_as_is,
        scorer=per_example(metrics.multiple_choice_rule),
        moco_scorer=moco_rules.moco_choice_scorer,
    ),
    TaskType(
        "exact_match",
        BOXED_ANSWER_TEMPLATE,
        required_fields=("input", "output"),
        show_answer=show_boxed,
        extract=_final_answer,
        vote_key=canonical_value,
        scorer=per_example(metrics.exact_match_rule),
        regroup=metrics.apply_group_all_or_nothing,
        moco_scorer=moco_rules.moco_exact_scorer,
    ),
    TaskType(
        "f1_match",
        BOXED_ANSWER_TEMPLATE,
        required_fields=("input", "output"),
        show_answer=show_boxed,
        extract=_final_answer,
        vote_key=canonical_value,
        scorer=per_example(metrics.f1_match_rule),
        moco_scorer=moco_rules.moco_f1_scorer,
    ),
    TaskType(
        "coding",
        CODE_TEMPLATE,
        required_fields=("input", "test"),
        extract=_code,
        scorer=metrics.coding_scorer,
        moco_scorer=moco_rules.moco_coding_scorer,
    ),
    TaskType(
        "noncompliance",
        AS_IS_TEMPLATE,
        required_fields=("input", "category"),
        scorer=per_example(metrics.noncompliance_rule),
        moco_scorer=moco_rules.moco_noncompliance_scorer,
    ),
    TaskType(
        "reward_model",
        AS_IS_TEMPLATE,
        scorer=metrics.reward_model_scorer,
        moco_scorer=moco_rules.moco_reward_model_scorer,
    ),
    TaskType(
        "general_verifier",
        BOXED_ANSWER_TEMPLATE,
        required_fields=("input", "output"),
        show_answer=show_boxed,
        extract=_final_answer,
        scorer=metrics.verifier_scorer,
        moco_scorer=moco_rules.moco_verifier_scorer,
    ),
    TaskType(
        "generation_diversity",
        AS_IS_TEMPLATE,
        required_fields=("input", "reference"),
        check_record=_check_references,
        scorer=metrics.diversity_scorer,
        moco_scorer=moco_rules.moco_diversity_scorer,
    ),
    TaskType(
        "text_generation",
        AS_IS_TEMPLATE,
        scorer=per_example(metrics.no_score),
        moco_scorer=moco_rules.moco_text_generation_scorer,
    ),
    # loaded and served but not scored by moco_lit: the record's own instruction is the prompt
    TaskType("ifeval", AS_IS_TEMPLATE),
    TaskType("kernel_bench", AS_IS_TEMPLATE),
    TaskType("smdd", AS_IS_TEMPLATE, required_fields=()),
)

for _spec in BUILTIN_TASK_TYPES:
    register_task_type(_spec, replace=True)  # idempotent on a module reload
