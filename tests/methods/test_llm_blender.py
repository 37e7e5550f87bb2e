"""llm_blender: end to end on tiny models; the ranker's pairwise wins decide which top-k the fuser reads."""

from __future__ import annotations

import json
import re

import pytest

from moco_lit.errors import UserError
from moco_lit.methods.text.llm_blender import LlmBlender, parse_preference
from tests.conftest import collaborators_arg, run_records
from tests.scripted import solve_quickstart

FUSER_INPUTS: list[str] = []


def judge(rendered: str) -> str:
    """Prefers the answer that is right; no verdict when both or neither are."""
    right = solve_quickstart(rendered)
    a = re.search(r"Answer A:\n(.*?)\n\nAnswer B:", rendered, flags=re.DOTALL).group(1).strip()
    b = re.search(r"Answer B:\n(.*?)\n\nWhich answer", rendered, flags=re.DOTALL).group(1).strip()
    if (a == right) == (b == right):
        return "Both are equally good."
    return "A" if a == right else "B"


def first_candidate(rendered: str) -> str:
    """The fuser: repeats the best-ranked candidate (and remembers what it was shown)."""
    FUSER_INPUTS.append(rendered)
    return re.search(r"Candidate 1:\n(.*?)\n", rendered).group(1)


def test_llm_blender_runs_on_tiny_models(run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "llm_blender",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.ranker",
        "2",
        "--model.ranker_max_new_tokens",
        "2",
        "--model.max_new_tokens",
        "4",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
    )
    assert code == 0
    names = cli.model.collaborator_names
    for record in run_records(cli):
        assert record["calls"] == 3 + 3 + 1  # three answers, three pairs, one fusion
        assert sum(record["details"]["wins"].values()) == 3.0  # one point per pair
        assert len(record["details"]["top"]) == 3 and record["answered_by"] == names[0]


def test_ranker_wins_decide_the_top_k(run_cli):
    FUSER_INPUTS.clear()
    scripted = collaborators_arg(
        [
            "callable:tests.scripted.wrong",
            "callable:tests.scripted.multiplier",
            "callable:tests.scripted.oracle",
        ]
    )
    code, cli = run_cli(
        "test",
        "--model",
        "llm_blender",
        "--model.collaborators",
        scripted,
        "--model.ranker",
        "callable:tests.methods.test_llm_blender.judge",
        "--model.fuser",
        "callable:tests.methods.test_llm_blender.first_candidate",
        "--model.top_k",
        "2",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "6",
    )
    records = {r["id"]: r for r in run_records(cli)}
    for record_id, record in records.items():
        wins, top = record["details"]["wins"], record["details"]["top"]
        if record_id.startswith("multiply"):  # multiplier and oracle are both right
            assert wins == {"wrong": 0.0, "multiplier": 1.5, "oracle": 1.5} and top == [
                "multiplier",
                "oracle",
            ]
        else:  # only the oracle is right; wrong and multiplier tie, the recipe's order breaks it
            assert wins == {"wrong": 0.5, "multiplier": 0.5, "oracle": 2.0} and top == ["oracle", "wrong"]
        assert record["score"] == 1.0 and record["answered_by"] == "first_candidate"
        assert record["calls"] == 3 + 3 + 1
    # the fuser read exactly the top-k candidates, best first
    assert len(FUSER_INPUTS) == 6 and all("Candidate 3" not in text for text in FUSER_INPUTS)


def test_parse_preference_and_untrained_options():
    assert parse_preference("A") == "A" and parse_preference("**B** is better") == "B"
    assert parse_preference("Both are fine") is None
    assert not LlmBlender(["x", "y"]).needs_calibration
    assert LlmBlender(["x", "y"], train_ranker_on_dev=True).trained_roles == ["ranker"]


def test_trained_ranker_and_fuser_learn_from_dev(run_cli, tiny_models):
    # the oracle is right and wrong is not: every dev pair teaches the ranker which one is better
    collaborators = ["callable:tests.scripted.oracle", "callable:tests.scripted.wrong"]
    common = ["--model", "llm_blender", "--model.collaborators", collaborators_arg(collaborators)]
    common += ["--model.ranker", tiny_models[0], "--model.fuser", tiny_models[0], "--model.top_k", "2"]
    common += ["--model.train_ranker_on_dev", "true", "--model.train_fuser_on_dev", "true"]
    common += ["--model.ranker_pair_orders", "both", "--model.fuser_target", "answer_line"]
    common += ["--model.max_new_tokens", "4", "--model.ranker_max_new_tokens", "2", "--model.lora_r", "4"]
    common += ["--data.benchmark", "quickstart"]
    with pytest.raises(UserError, match="fit"):
        run_cli("test", *common, "--data.limit", "2")
    _, fitted = run_cli("fit", *common, "--data.dev_limit", "3", "--model.learning_rate", "0.01")
    assert fitted.model.agents.layout == "shared_base"  # ranker and fuser: two adapters, one base
    rows = [json.loads(x) for x in (fitted.model.runtime.run_folder.path / "llm_blender_iter0.jsonl").open()]
    ranker_rows = [r for r in rows if r["agent"] == "ranker"]
    assert len(ranker_rows) == 6 and {r["completion"] for r in ranker_rows} == {"A", "B"}
    for row in ranker_rows:  # the verdict always names the oracle's (right) answer
        answer_a = row["prompt"].split("Answer A:\n", 1)[1].split("\n\nAnswer B:")[0]
        assert (row["completion"] == "A") == (answer_a != "zzz")
    fuser_rows = [r for r in rows if r["agent"] == "fuser"]
    assert len(fuser_rows) == 3 and all(
        r["completion"].startswith("Final Answer: \\boxed{") for r in fuser_rows
    )
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    _, tested = run_cli("test", *common, "--data.limit", "2", "--ckpt_path", checkpoint)
    records = run_records(tested)
    assert len(records) == 2 and all(r["answered_by"] == "tiny0" and r["calls"] == 4 for r in records)


def test_fit_of_the_zero_shot_form_says_what_to_set(tmp_path, capsys):
    from moco_lit.cli import main

    oracle = "callable:tests.scripted.oracle"
    args = ["fit", "--model", "llm_blender", "--model.collaborators", f"[{oracle}, {oracle}]"]
    args += ["--model.ranker", "0", "--data.benchmark", "quickstart", "--data.limit", "2"]
    code = main([*args, "--run_dir", str(tmp_path / "runs"), "--progress", "false"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1
    assert "train_ranker_on_dev" in errors[0] and "`test`" in errors[0]


def test_parse_preference_the_moco_way_reads_the_first_a_or_b_anywhere():
    assert parse_preference("Both are fine", "first_letter") == "B"
    assert parse_preference("ANSWER: B", "first_letter") == "A"
    assert parse_preference("ANSWER: B") == "B" and parse_preference("no verdict", "first_letter") is None


def test_moco_s_training_data_by_default():
    from moco_lit.methods.text.llm_blender import reference_text

    def example(task_type, record):
        return {"task_type": task_type, "record": record}

    choices = {"A": "green", "B": "red"}
    assert reference_text(example("multiple_choice", {"choices": choices, "answer": "B"})) == "red"
    assert reference_text(example("multiple_choice", {"choices": choices, "answer": "E"})) is None
    assert reference_text(example("exact_match", {"output": "42"})) == "42"
    assert reference_text(example("f1_match", {"output": '["Paris", "paris"]'})) == "Paris"
    assert reference_text(example("f1_match", {"output": "4.50"})) == "4.50"  # not re-spelled
    assert reference_text(example("f1_match", {"output": ["Rome"]})) == "Rome"
    module = LlmBlender(["x", "y"], train_ranker_on_dev=True, train_fuser_on_dev=True)
    assert (module.ranker_pair_orders, module.fuser_target) == ("one", "reference")
