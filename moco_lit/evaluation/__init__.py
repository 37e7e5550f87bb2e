"""Evaluation: answer extraction, scoring per task type, the code sandbox and judge models.

This package is the only place in moco_lit that parses answers. ``docs/scoring.md`` states every
rule and where it differs from MoCo's scoring.
"""

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

__all__ = [
    "SCORINGS",
    "TASK_TYPES",
    "SandboxResult",
    "ScoreMetric",
    "Scorer",
    "answer_key",
    "answers_equal",
    "best_alias_f1",
    "extract_choice",
    "extract_code",
    "extract_final_answer",
    "noncompliance_score",
    "normalize_answer",
    "parse_aliases",
    "run_python",
    "score_predictions",
    "score_predictions_file",
    "strip_thinking",
    "token_f1",
]
