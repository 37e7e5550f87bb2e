"""Scorer per task type, ScoreMetric (also under 2-process DDP) and predictions files."""

import json
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from moco_lit.errors import UserError
from moco_lit.evaluation import TASK_TYPES, ScoreMetric, Scorer, score_predictions, score_predictions_file
from moco_lit.evaluation.judges import clear_judges
from moco_lit.evaluation.metrics import infer_entry_point, question_text, reference_text
from tests.conftest import free_port

MC = {"id": 5070, "question": "Capital of France?", "choices": {"A": "London", "B": "Paris"}, "answer": "B"}


def test_unsupported_task_type_names_the_supported_ones():
    with pytest.raises(
        UserError, match="unsupported task type 'kernel_bench'.*multiple_choice.*text_generation"
    ):
        Scorer.for_task("kernel_bench")


def test_rule_based_task_types():
    scorer = Scorer.for_task("multiple_choice")
    assert scorer.score(["<think>maybe A</think>The answer is (B)", "I think A.", "Paris"], [MC] * 3) == [
        1.0,
        0.0,
        1.0,
    ]
    exact = Scorer.for_task("exact_match")
    records = [
        {"id": 495, "input": "?", "output": "112"},
        {"id": 7, "input": "?", "output": "True", "answer_type": "bool"},
    ]
    assert exact.score(["so \\boxed{112.00}", "Final Answer: no"], records) == [1.0, 0.0]
    f1 = Scorer.for_task("f1_match")
    popqa = {"id": 375943, "input": "?", "output": '["Toulon", "Port-la-Montagne", "Tolon"]'}
    assert f1.score(["\\boxed{Port-la-Montagne}", "Marseille"], [popqa, popqa]) == [1.0, 0.0]
    coconot = {"id": 2589, "input": "?", "category": "Requests with safety concerns"}
    assert Scorer.for_task("noncompliance").score(["I cannot help with that."], [coconot]) == [1.0]
    assert Scorer.for_task("text_generation").score(["anything"], [{"id": 1, "input": "?"}]) == [None]


def test_coding_scores_in_parallel_with_the_prompt_entry_point():
    record = {
        "id": "HumanEval/0",
        "input": "Complete the following code\n\ndef add(a, b):\n    '''Add.'''\n",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
        "language": "python",
    }
    good = "Here:\n```python\ndef _unused():\n    pass\n\ndef add(a, b):\n    return a + b\n```"
    outputs = [good, "```python\ndef add(a, b):\n    return a - b\n```", good]
    assert Scorer.for_task("coding", coding_timeout_s=3).score(outputs, [record] * 3) == [1.0, 0.0, 1.0]
    assert (
        infer_entry_point({"input": "Your code should pass: assert check_subset([1], [1])==True"})
        == "check_subset"
    )


def test_judge_task_types_with_tiny_models(tiny_reward_model, yes_verifier, tiny_encoder):
    clear_judges()
    rewards = Scorer.for_task("reward_model", reward_model=tiny_reward_model).score(
        ["paris", "no"], [{"id": 1, "input": "what is the capital"}, {"id": 2, "input": "what"}]
    )
    assert all(isinstance(r, float) for r in rewards)
    verified = Scorer.for_task("general_verifier", verifier=yes_verifier).score(["\\boxed{B}"], [MC])
    assert verified == [1.0]
    diversity = Scorer.for_task("generation_diversity", encoder=tiny_encoder).score(
        ["the capital is paris"], [{"id": 3, "input": "?", "reference": ["the capital is paris"]}]
    )
    assert diversity[0] == pytest.approx(0.0, abs=1e-5)
    clear_judges()


def test_record_text_helpers():
    assert question_text(MC) == "Capital of France?\nA) London\nB) Paris"
    assert reference_text(MC) == "B) Paris"
    assert reference_text({"output": "42"}) == "42"


def test_score_metric_mean_ignores_missing_scores():
    metric = ScoreMetric()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(metric.compute().item())
    metric.update(torch.tensor([1.0, float("nan"), 0.0]))
    metric.update([None, 0.5])
    assert metric.compute().item() == pytest.approx(0.5)
    assert metric.count.item() == 3


def _ddp_worker(rank: int, world_size: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        metric = ScoreMetric()
        local = [[1.0, 1.0, float("nan")], [0.0, 0.0, 0.0, 1.0]][rank]
        metric.update(torch.tensor(local))
        results[rank] = metric.compute().item()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_score_metric_is_the_global_mean_under_ddp():
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, free_port(), results), nprocs=2, join=True)
    # 3 ones over 6 scored examples, whatever each rank saw.
    assert dict(results) == {0: pytest.approx(0.5), 1: pytest.approx(0.5)}


# ---------------------------------------------------------------------------------------------
# Predictions files
# ---------------------------------------------------------------------------------------------

RECORDS = {
    "1": {"id": 1, "input": "?", "output": "4"},
    "2": {"id": 2, "input": "?", "output": "5"},
    "3": {"id": 3, "input": "?", "output": "6"},
}


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scores_by_id_not_by_position(tmp_path):
    path = write_lines(
        tmp_path / "preds.jsonl", ['{"id": "3", "output": "6"}', '{"id": 1, "output": "\\\\boxed{5}"}']
    )
    result = score_predictions(RECORDS, path, "exact_match", Scorer.for_task("exact_match"))
    assert result == {"task_type": "exact_match", "n": 2, "mean": 0.5, "scores": {"3": 1.0, "1": 0.0}}


def test_scores_file_is_written_next_to_predictions(tmp_path):
    path = write_lines(tmp_path / "run.jsonl", ['{"id": 2, "output": "5"}'])
    result = score_predictions_file(RECORDS, path, "exact_match", Scorer.for_task("exact_match"))
    assert result["scores_path"] == str(tmp_path / "run.scores.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "run.scores.jsonl").read_text().splitlines()]
    assert rows == [{"id": "2", "score": 1.0}]


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"id": 1, "output": "4"}', "{not json"], "line 2: not valid JSON"),
        (['{"id": 1}'], 'line 1: expected an object with "id" and "output"'),
        (['{"id": 1, "output": "4"}', '{"id": "1", "output": "4"}'], "line 2: duplicate id '1'"),
        (['{"id": 99, "output": "4"}'], "line 1: id '99' is not in the benchmark split"),
    ],
)
def test_bad_predictions_file_is_one_clear_user_error(tmp_path, lines, message):
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(UserError, match=message):
        score_predictions(RECORDS, path, "exact_match", Scorer.for_task("exact_match"))


def test_culturebench_groups_score_all_or_nothing(tmp_path):
    records = {
        str(i): {"id": str(i), "question_id": str(i // 2), "input": "?", "output": gold}
        for i, gold in enumerate(["True", "False", "False", "True"])
    }
    outputs = {"0": "True", "1": "False", "2": "False", "3": "False"}
    path = write_lines(tmp_path / "p.jsonl", [json.dumps({"id": k, "output": v}) for k, v in outputs.items()])
    result = score_predictions(records, path, "exact_match", Scorer.for_task("exact_match"))
    assert result["scores"] == {"0": 1.0, "1": 1.0, "2": 0.0, "3": 0.0}


def test_task_types_are_the_documented_nine():
    assert len(TASK_TYPES) == 9 and "coding" in TASK_TYPES
