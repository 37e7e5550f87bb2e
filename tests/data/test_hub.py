"""Hub converters on fixture rows shaped like the real datasets (no network)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moco_lit.data import hub
from moco_lit.data.hub import load_hub_benchmark, seeded_shuffle, shuffled_options
from moco_lit.errors import UserError

Rows = dict[tuple[str, Any, str], list[dict[str, Any]]]


class FakeHub:
    """A RowLoader serving fixture rows; unknown (path, config, split) are empty."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.calls: list[tuple[str, Any, str, Any]] = []

    def __call__(self, path: str, config: Any, split: str, data_files: Any) -> list[dict[str, Any]]:
        self.calls.append((path, config, split, data_files))
        return [dict(row) for row in self.rows.get((path, config, split), [])]


def test_gsm8k_answer_after_hashes_and_dev_from_train() -> None:
    train = [{"question": f"t{i}?", "answer": f"work\n#### {i},000"} for i in range(300)]
    test = [{"question": "How many?", "answer": "3 + 4 = 7\n#### 7"}]
    fake = FakeHub({("openai/gsm8k", "main", "train"): train, ("openai/gsm8k", "main", "test"): test})
    benchmark = load_hub_benchmark("gsm8k", fake)
    assert benchmark.test == [{"id": "test-0", "input": "How many?", "output": "7"}]
    assert len(benchmark.dev) == 200 and all(r["id"].startswith("train-") for r in benchmark.dev)
    assert benchmark.dev[0]["output"] == str(int(benchmark.dev[0]["id"].split("-")[1]) * 1000)


def test_arc_uses_validation_and_test_and_maps_numeric_labels() -> None:
    row = {
        "id": "Q1",
        "question": "Which?",
        "choices": {"text": ["x", "y", "z"], "label": ["1", "2", "3"]},
        "answerKey": "2",
    }
    fake = FakeHub(
        {
            ("allenai/ai2_arc", "ARC-Challenge", "validation"): [row],
            ("allenai/ai2_arc", "ARC-Challenge", "test"): [row],
        }
    )
    benchmark = load_hub_benchmark("arc_challenge", fake)
    assert benchmark.dev[0] == {
        "id": "Q1",
        "question": "Which?",
        "choices": {"A": "x", "B": "y", "C": "z"},
        "answer": "B",
    }


def test_mmlu_redux_keeps_only_ok_questions() -> None:
    rows = [
        {"question": "good?", "choices": ["a", "b", "c", "d"], "answer": 3, "error_type": "ok"},
        {"question": "bad?", "choices": ["a", "b", "c", "d"], "answer": 0, "error_type": "wrong_groundtruth"},
    ]
    fake = FakeHub({("edinburgh-dawg/mmlu-redux-2.0", "anatomy", "test"): rows})
    benchmark = load_hub_benchmark("mmlu_redux", fake)
    records = benchmark.dev + benchmark.test
    assert [r["question"] for r in records] == ["good?"] and records[0]["answer"] == "D"
    assert records[0]["id"] == "anatomy-0"
    assert len({call[1] for call in fake.calls}) == 57  # one config per subject


def test_truthfulqa_mc1_is_shuffled_but_deterministic() -> None:
    rows = [
        {
            "question": f"q{i}",
            "mc1_targets": {"choices": [f"right{i}", "w1", "w2", "w3"], "labels": [1, 0, 0, 0]},
        }
        for i in range(300)
    ]
    fake = FakeHub({("truthfulqa/truthful_qa", "multiple_choice", "validation"): rows})
    first, second = load_hub_benchmark("truthfulqa", fake), load_hub_benchmark("truthfulqa", fake)
    assert first.dev == second.dev and len(first.dev) == 200 and len(first.test) == 100
    records = first.dev + first.test
    assert all(r["choices"][r["answer"]] == f"right{r['id']}" for r in records)
    assert len({r["answer"] for r in records}) == 4  # the right answer is not always "A"


def test_gpqa_configs_split_in_half_with_shuffled_options() -> None:
    rows = [
        {
            "Question": f" Q{i} ",
            "Correct Answer": "yes ",
            "Incorrect Answer 1": "n1",
            "Incorrect Answer 2": "n2",
            "Incorrect Answer 3": "n3",
        }
        for i in range(10)
    ]
    fake = FakeHub({("Idavidrein/gpqa", "gpqa_diamond", "train"): rows})
    benchmark = load_hub_benchmark("gpqa_diamond", fake)
    assert benchmark.name == "gpqa_diamond" and len(benchmark.dev) == len(benchmark.test) == 5
    assert all(r["choices"][r["answer"]] == "yes" for r in benchmark.dev + benchmark.test)
    assert benchmark.dev[0]["question"].startswith("Q")


def test_popqa_keeps_alias_list_string() -> None:
    rows = [
        {"id": i, "question": f"Who {i}?", "possible_answers": json.dumps(["a", "b"]), "s_pop": 1, "o_pop": 2}
        for i in range(1200)
    ]
    benchmark = load_hub_benchmark("popqa", FakeHub({("akariasai/PopQA", None, "test"): rows}))
    assert len(benchmark.dev) == 1000 and len(benchmark.test) == 200
    assert json.loads(benchmark.dev[0]["output"]) == ["a", "b"]


def test_humaneval_and_mbpp_build_check_functions() -> None:
    he = [
        {
            "task_id": f"HumanEval/{i}",
            "prompt": "def f(x):\n",
            "canonical_solution": "",
            "test": "def check(candidate):\n    pass\n",
            "entry_point": "f",
        }
        for i in range(60)
    ]
    benchmark = load_hub_benchmark("humaneval", FakeHub({("openai/openai_humaneval", None, "test"): he}))
    assert (len(benchmark.dev), len(benchmark.test)) == (50, 10) and benchmark.dev[0]["language"] == "python"

    row = {
        "task_id": 11,
        "text": "Write a function to add two numbers.",
        "code": "def add_nums(a, b):\n    return a + b",
        "test_list": ["assert add_nums(1, 2) == 3", "assert add_nums(0, 0) == 0"],
        "test_setup_code": "",
        "challenge_test_list": [],
    }
    fake = FakeHub(
        {
            ("google-research-datasets/mbpp", "full", "validation"): [row],
            ("google-research-datasets/mbpp", "full", "test"): [row],
        }
    )
    record = load_hub_benchmark("mbpp", fake).test[0]
    assert record["id"] == "11" and "assert add_nums(1, 2) == 3" in record["input"]
    namespace: dict[str, Any] = {}
    exec(record["test"], namespace)  # the check must accept any function under any name
    namespace["check"](lambda a, b: a + b)
    with pytest.raises(AssertionError):
        namespace["check"](lambda a, b: a - b)


def test_medmcqa_validation_halves_and_letter_answers() -> None:
    rows = [
        {
            "id": f"m{i}",
            "question": "q",
            "opa": "a",
            "opb": "b",
            "opc": "c",
            "opd": "d",
            "cop": i % 4,
            "subject_name": "Anatomy",
        }
        for i in range(4183)
    ]
    benchmark = load_hub_benchmark(
        "medmcqa", FakeHub({("openlifescienceai/medmcqa", None, "validation"): rows})
    )
    assert (len(benchmark.dev), len(benchmark.test)) == (2091, 2092)
    by_id = {r["id"]: r for r in benchmark.dev + benchmark.test}
    assert by_id["m2"]["answer"] == "C" and by_id["m2"]["choices"]["C"] == "c"


def test_medqa_pubmedqa_coconot_alpacaeval_theoremqa_math_bbh() -> None:
    medqa_row = {
        "question": "q",
        "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
        "answer_idx": "C",
        "answer": "c",
        "meta_info": "step1",
    }
    pubmed_row = {
        "pubid": 1,
        "question": "Does it?",
        "context": {"contexts": ["One.", "Two."], "labels": [], "meshes": []},
        "long_answer": "",
        "final_decision": "yes",
    }
    fake = FakeHub(
        {
            ("GBaker/MedQA-USMLE-4-options", None, "train"): [medqa_row] * 3,
            ("GBaker/MedQA-USMLE-4-options", None, "test"): [medqa_row] * 2,
            ("qiaojin/PubMedQA", "pqa_labeled", "train"): [pubmed_row],
            ("allenai/coconot", "original", "test"): [
                {
                    "id": "c1",
                    "prompt": "Do X",
                    "category": "Incomplete requests",
                    "subcategory": "s",
                    "response": "r",
                }
            ],
            ("json", None, "train"): [
                {"instruction": "Write.", "output": "Text.", "generator": "g", "dataset": "d"}
            ],
            ("TIGER-Lab/TheoremQA", None, "test"): [
                {"Question": "Q?", "Answer": [1, 2], "Answer_type": "list of integer", "Picture": None}
            ],
            ("HuggingFaceH4/MATH-500", None, "test"): [
                {
                    "problem": "1+1?",
                    "solution": "",
                    "answer": "2",
                    "subject": "Algebra",
                    "level": 1,
                    "unique_id": "test/algebra/1.json",
                }
            ],
            ("lukaemon/bbh", "navigate", "test"): [{"input": "Go?", "target": "Yes"}],
        }
    )
    medqa = load_hub_benchmark("medqa", fake)
    assert (len(medqa.dev), len(medqa.test)) == (3, 2) and medqa.test[0]["answer"] == "C"
    pubmed = load_hub_benchmark("pubmedqa", fake)
    record = (pubmed.dev + pubmed.test)[0]
    assert record["output"] == "yes" and "One. Two." in record["input"] and "Does it?" in record["input"]
    coconot = load_hub_benchmark("coconot", fake)
    assert (coconot.dev + coconot.test)[0]["category"] == "Incomplete requests"
    alpaca = load_hub_benchmark("alpacaeval", fake)
    assert (alpaca.dev + alpaca.test)[0] == {"id": "0", "input": "Write.", "output": "Text."}
    assert ("json", None, "train", hub.ALPACA_EVAL_FILES) in fake.calls
    theorem = load_hub_benchmark("theoremqa", fake)
    assert (theorem.dev + theorem.test)[0]["output"] == "[1, 2]"
    math = load_hub_benchmark("math", fake)
    assert (math.dev + math.test)[0]["id"] == "test/algebra/1.json"
    bbh = load_hub_benchmark("bbh", fake)
    assert (bbh.dev + bbh.test) == [
        {"id": "navigate-0", "input": "Go?", "output": "Yes", "domain": "navigate"}
    ]


def test_seeded_helpers_are_stable() -> None:
    rows = [{"n": i} for i in range(20)]
    assert seeded_shuffle(rows) == seeded_shuffle(rows) != rows
    assert shuffled_options("r", ["a", "b"], "k") == shuffled_options("r", ["a", "b"], "k")


def test_unknown_converter_and_hub_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="No Hub converter"):
        load_hub_benchmark("nope")

    import datasets

    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Couldn't reach the Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as error:
        load_hub_benchmark("gsm8k")
    assert "openai/gsm8k (main)" in str(error.value) and "\n" not in str(error.value)
    assert "data fetch modelco" in str(error.value)
