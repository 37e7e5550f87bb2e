"""Task types: each is one spec in one registry, and a new one is one registered entry."""

from __future__ import annotations

import json
import re

import pytest

from moco_lit.data.prompts import TEMPLATES, render_prompt, shot_answer
from moco_lit.data.registry import BENCHMARKS
from moco_lit.data.registry import TASK_TYPES as LOADED_TASK_TYPES
from moco_lit.data.sources import read_moco_json
from moco_lit.errors import UserError
from moco_lit.evaluation import (
    TASK_TYPES,
    VOTING_TASK_TYPES,
    Scorer,
    TaskType,
    answer_key,
    get_task_type,
    per_example,
    register_task_type,
    unregister_task_type,
)
from moco_lit.evaluation.task_types import find_task_type
from tests.conftest import collaborators_arg, run_records

# ---------------------------------------------------------------------------------------------
# A toy task type, declared and registered here only: "Is N even?" answered yes or no.
# ---------------------------------------------------------------------------------------------

YES_NO_TEMPLATE = "{input}\n\nAnswer with one word, yes or no."


def yes_or_no(output: str, record: dict) -> str | None:
    """The last standalone yes or no of the output."""
    words = re.findall(r"\b(yes|no)\b", output.lower())
    return words[-1] if words else None


YES_NO = TaskType(
    "yes_no",
    YES_NO_TEMPLATE,
    required_fields=("input", "output"),
    show_answer=lambda answer: f"One word: {answer}",
    check_record=lambda record: None if record["output"] in ("yes", "no") else "'output' must be yes or no",
    extract=yes_or_no,
    vote_key=str.upper,  # a key no built-in type produces, so the votes show it came from here
    scorer=per_example(lambda output, record: float(yes_or_no(output, record) == record["output"])),
)


def _number(rendered: str) -> int:
    return int(re.findall(r"Is (\d+) even\?", rendered)[-1])


def says_parity(rendered: str) -> str:
    """Right, but only when the prompt asks for the toy type's one-word answer."""
    if "Answer with one word, yes or no." not in rendered:
        return "I was not asked for a word."
    return f"Surely {'yes' if _number(rendered) % 2 == 0 else 'no'}."


def says_parity_wrong(rendered: str) -> str:
    return f"I would say {'no' if _number(rendered) % 2 == 0 else 'yes'}."


@pytest.fixture
def yes_no():
    register_task_type(YES_NO)
    yield YES_NO
    unregister_task_type(YES_NO.name)


def _write_benchmark(tmp_path, task_type: str = "yes_no"):
    def record(i: int) -> dict:
        return {"id": str(i), "input": f"Is {i} even?", "output": "yes" if i % 2 == 0 else "no"}

    path = tmp_path / "parity.json"
    path.write_text(json.dumps({"task_type": task_type, "dev": [record(i) for i in range(10, 14)],
                                "test": [record(i) for i in range(6)]}))  # fmt: skip
    return path


def test_a_new_task_type_is_one_registered_entry(yes_no, run_cli, tmp_path):
    """Loading, prompting (with a few-shot answer), majority voting and scoring of a benchmark of a
    task type registered in this test all go through its spec."""
    path = _write_benchmark(tmp_path)
    scripted = collaborators_arg(
        [f"callable:tests.evaluation.test_task_types.{name}" for name in ("says_parity", "says_parity",
                                                                          "says_parity_wrong")]
    )  # fmt: skip
    code, cli = run_cli(
        "test",
        "--model",
        "majority_vote",
        "--model.collaborators",
        scripted,
        "--data.benchmark",
        str(path),
        "--data.num_fewshot",
        "1",
    )
    assert code == 0
    records = run_records(cli)
    assert len(records) == 6
    for r in records:
        gold = "yes" if int(r["id"]) % 2 == 0 else "no"
        assert r["prompt"].startswith("Here are solved examples")  # few-shot, answer shown by the spec
        assert "Is 10 even?\n\nAnswer with one word, yes or no.\nOne word: yes" in r["prompt"]
        assert r["prompt"].endswith(f"Is {r['id']} even?\n\nAnswer with one word, yes or no.")
        assert r["details"]["votes"] == {gold.upper(): 2, ("NO" if gold == "yes" else "YES"): 1}
        assert r["answer"] == gold.upper() and r["score"] == 1.0
    metrics = json.loads((cli.model.runtime.run_folder.path / "metrics.json").read_text())
    assert metrics["score"] == 1.0 and metrics["n"] == 6


def test_the_spec_drives_every_lookup(yes_no, tmp_path):
    assert "yes_no" in TASK_TYPES and "yes_no" in VOTING_TASK_TYPES and "yes_no" in LOADED_TASK_TYPES
    assert TEMPLATES["yes_no"] == YES_NO_TEMPLATE
    record = {"id": "1", "input": "Is 3 even?", "output": "no"}
    assert render_prompt("yes_no", record) == "Is 3 even?\n\nAnswer with one word, yes or no."
    assert shot_answer("yes_no", record) == "One word: no"
    assert answer_key("yes_no", "No, it is odd. Final: no", record) == "NO"
    assert answer_key("yes_no", "No, it is odd. Final: no", record, by="text") == "no"
    assert Scorer.for_task("yes_no").score(["yes", "it is no"], [record, record]) == [0.0, 1.0]
    with pytest.raises(UserError, match="--scoring moco does not support task type 'yes_no'"):
        Scorer.for_task("yes_no", scoring="moco")
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"task_type": "yes_no", "test": [{"id": "1", "input": "?", "output": "maybe"}]})
    )
    with pytest.raises(UserError, match="'output' must be yes or no"):
        read_moco_json(bad)


def test_unregistered_task_type_is_refused_with_a_hint(tmp_path):
    assert find_task_type("yes_no") is None
    with pytest.raises(UserError, match="unknown task type 'yes_no'"):
        read_moco_json(_write_benchmark(tmp_path))
    with pytest.raises(
        UserError, match=r"unknown task type 'exact_mach' \(did you mean exact_match\?\); known"
    ):
        get_task_type("exact_mach")
    with pytest.raises(
        UserError, match=r"unsupported task type 'multiple_choise' \(did you mean multiple_choice"
    ):
        Scorer.for_task("multiple_choise")
    with pytest.raises(
        UserError, match=r"No prompt template for task type 'codng' \(did you mean coding\?\)"
    ):
        render_prompt("codng", {"id": "1", "input": "x"})
    with pytest.raises(ValueError, match="already registered"):
        register_task_type(TaskType("coding", "{input}"))


def test_built_in_task_types_are_all_registered():
    names = list(LOADED_TASK_TYPES)
    assert len(names) == len(set(names)) == 12 and set(TEMPLATES) == set(names)
    assert {info.task_type for info in BENCHMARKS.values()} <= set(names)
    assert set(VOTING_TASK_TYPES) == {"multiple_choice", "exact_match", "f1_match"}
    assert [n for n in names if n not in TASK_TYPES] == ["ifeval", "kernel_bench", "smdd"]
    for name in names:
        spec = get_task_type(name)
        assert spec.name == name and (spec.moco_scorer is None) == (not spec.scored)
