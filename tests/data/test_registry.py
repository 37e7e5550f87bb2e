from __future__ import annotations

import pytest

from moco_lit.data.hub import HUB_LOADERS
from moco_lit.data.registry import BENCHMARKS, TASK_TYPES, get_benchmark
from moco_lit.errors import UserError

# The 45 files of modelco 1.1.2's model_collaboration/data/ and their "task_type" fields.
EXPECTED = {
    "agieval": "multiple_choice",
    "agieval_tiny": "multiple_choice",
    "alpacaeval": "reward_model",
    "apex_shortlist": "general_verifier",
    "arc_challenge": "multiple_choice",
    "bbh": "exact_match",
    "bixbench": "multiple_choice",
    "blend": "multiple_choice",
    "chembench": "multiple_choice",
    "coconot": "noncompliance",
    "communitybench": "multiple_choice",
    "culturalbench_hard": "multiple_choice",
    "culturebench": "exact_match",
    "gpqa_diamond": "multiple_choice",
    "gpqa_extended": "multiple_choice",
    "gpqa_main": "multiple_choice",
    "gsm8k": "exact_match",
    "human_interest": "reward_model",
    "humaneval": "coding",
    "ifeval": "ifeval",
    "infinite_chat_diversity": "generation_diversity",
    "infinite_chat_open": "reward_model",
    "kaleidoscope": "multiple_choice",
    "kernelbench": "kernel_bench",
    "lab_bench": "multiple_choice",
    "math": "exact_match",
    "mbpp": "coding",
    "medmcqa": "multiple_choice",
    "medqa": "multiple_choice",
    "mixeval": "multiple_choice",
    "mmlu_redux": "multiple_choice",
    "mmluprox": "multiple_choice",
    "popqa": "f1_match",
    "pubmedqa": "exact_match",
    "sciencemeter": "multiple_choice",
    "sciriff": "exact_match",
    "scitarc": "general_verifier",
    "smdd": "smdd",
    "tablemwp_free_text": "exact_match",
    "tablemwp_multiple_choice": "multiple_choice",
    "theoremqa": "exact_match",
    "truthfulqa": "multiple_choice",
    "value_drifts": "reward_model",
    "wikidyk": "f1_match",
    "wildchat": "reward_model",
}


def test_registry_covers_every_moco_file_with_its_task_type() -> None:
    assert len(EXPECTED) == 45
    assert {name: info.task_type for name, info in BENCHMARKS.items()} == EXPECTED
    for name, info in BENCHMARKS.items():
        assert info.name == name and info.moco_file == f"{name}.json"
        assert info.task_type in TASK_TYPES and info.description


def test_every_hub_name_has_a_converter() -> None:
    hub_names = {info.hub for info in BENCHMARKS.values() if info.hub}
    assert hub_names == set(HUB_LOADERS)


def test_get_benchmark_known_and_unknown() -> None:
    assert get_benchmark("gsm8k").task_type == "exact_match"
    with pytest.raises(UserError) as error:
        get_benchmark("gsm8")
    message = str(error.value)
    assert "'gsm8'" in message and "gsm8k" in message and "data list" in message and "\n" not in message


def test_unknown_name_without_close_match_points_to_data_list() -> None:
    with pytest.raises(UserError, match="python -m moco_lit data list"):
        get_benchmark("zzzzzz")
