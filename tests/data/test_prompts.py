from __future__ import annotations

import pytest

from moco_lit.data.prompts import TEMPLATES, render_prompt
from moco_lit.errors import UserError


def test_multiple_choice_lists_options_then_asks_for_the_letter() -> None:
    record = {"id": "1", "question": "Pick {one}", "choices": {"A": "red", "B": "blue"}, "answer": "B"}
    prompt = render_prompt("multiple_choice", record)
    assert prompt.startswith("Pick {one}\n\nA) red\nB) blue\n\n")
    assert "letter" in prompt


@pytest.mark.parametrize("task_type", ["exact_match", "f1_match", "general_verifier"])
def test_answer_types_ask_for_boxed(task_type: str) -> None:
    prompt = render_prompt(task_type, {"id": "1", "input": "2+2?", "output": "4"})
    assert prompt.startswith("2+2?") and "\\boxed{}" in prompt


def test_coding_asks_for_a_fenced_python_function() -> None:
    prompt = render_prompt("coding", {"id": "1", "input": "def f(x):", "test": ""})
    assert prompt.startswith("def f(x):") and "```python" in prompt and "function" in prompt


@pytest.mark.parametrize(
    "task_type", ["noncompliance", "reward_model", "text_generation", "generation_diversity", "ifeval"]
)
def test_open_ended_types_pass_the_input_as_is(task_type: str) -> None:
    assert render_prompt(task_type, {"id": "1", "input": "Tell me {x}."}) == "Tell me {x}."


def test_templates_are_overridable_and_unknown_types_fail() -> None:
    assert (
        render_prompt("reward_model", {"id": "1", "input": "hi"}, {"reward_model": "Q: {input}"}) == "Q: hi"
    )
    assert set(TEMPLATES) >= {"multiple_choice", "coding", "smdd"}
    with pytest.raises(UserError, match="No prompt template"):
        render_prompt("poetry", {"id": "1", "input": "x"})


def test_record_without_input_shows_its_fields() -> None:
    assert (
        render_prompt("smdd", {"id": "s", "target_name": "T", "subtype": "p"}) == "target_name: T\nsubtype: p"
    )


def test_template_field_missing_from_the_record() -> None:
    with pytest.raises(UserError, match=r"uses \{topic\}, which record '7' lacks"):
        render_prompt("reward_model", {"id": "7", "input": "x"}, {"reward_model": "{topic}: {input}"})
