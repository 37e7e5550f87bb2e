"""Evaluation: task types, answer extraction, scoring, the code sandbox and judge models.

This package is the only place in moco_lit that parses answers. ``docs/scoring.md`` states every
rule and where it differs from MoCo's scoring. Importing it registers the built-in task types
(``builtin_task_types``) in the registry of ``task_types``.
"""

from moco_lit.evaluation import builtin_task_types  # noqa: F401  (importing it registers the built-ins)
from moco_lit.evaluation.extraction import (
    answer_key,
    answers_equal,
    best_alias_f1,
    extract_choice,
    extract_code,
    extract_final_answer,
    normalize_answer,
    parse_aliases,
    strip_thinking,
    token_f1,
)
from moco_lit.evaluation.metrics import (
    SCORINGS,
    TASK_TYPES,
    ScoreMetric,
    Scorer,
    score_predictions,
    score_predictions_file,
)
from moco_lit.evaluation.noncompliance import noncompliance_score
from moco_lit.evaluation.sandbox import SandboxResult, run_python
from moco_lit.evaluation.task_types import (
    VOTING_TASK_TYPES,
    ScoringOptions,
    TaskType,
    find_task_type,
    get_task_type,
    per_example,
    register_task_type,
    unregister_task_type,
)

__all__ = [
    "SCORINGS",
    "TASK_TYPES",
    "VOTING_TASK_TYPES",
    "SandboxResult",
    "ScoreMetric",
    "Scorer",
    "ScoringOptions",
    "TaskType",
    "answer_key",
    "answers_equal",
    "best_alias_f1",
    "extract_choice",
    "extract_code",
    "extract_final_answer",
    "find_task_type",
    "get_task_type",
    "noncompliance_score",
    "normalize_answer",
    "parse_aliases",
    "per_example",
    "register_task_type",
    "run_python",
    "score_predictions",
    "score_predictions_file",
    "strip_thinking",
    "token_f1",
    "unregister_task_type",
]
