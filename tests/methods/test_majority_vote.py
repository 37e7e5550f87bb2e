"""majority_vote: end to end on tiny models, and its voting rules on scripted collaborators."""

from __future__ import annotations

import json

import torch

from moco_lit.methods.text.majority_vote import MajorityVote
from tests.conftest import collaborators_arg, run_records


def test_majority_vote_runs_on_tiny_models(run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "majority_vote",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.max_new_tokens",
        "4",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "6",
    )
    assert code == 0
    records = run_records(cli)
    assert len(records) == 6 and {r["id"] for r in records} == {str(r["id"]) for r in records}
    assert all(r["calls"] == 3 for r in records)
    metrics = json.loads((cli.model.runtime.run_folder.path / "metrics.json").read_text())
    assert metrics["n"] == 6 and metrics["cost/calls"] == 18 and 0.0 <= metrics["score"] <= 1.0


def test_the_most_frequent_answer_wins(run_cli):
    scripted = collaborators_arg(
        ["callable:tests.scripted.oracle", "callable:tests.scripted.oracle", "callable:tests.scripted.wrong"]
    )
    code, cli = run_cli(
        "test",
        "--model",
        "majority_vote",
        "--model.collaborators",
        scripted,
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "9",
    )
    records = run_records(cli)
    assert all(r["score"] == 1.0 for r in records)
    assert all(r["details"]["votes"][r["answer"]] == 2 for r in records)
    assert json.loads((cli.model.runtime.run_folder.path / "metrics.json").read_text())["score"] == 1.0


def test_dev_based_tie_follows_the_better_dev_model(run_cli):
    # multiplier is right on a third of dev, wrong scores 0: every tie goes to multiplier's answer
    scripted = collaborators_arg(["callable:tests.scripted.wrong", "callable:tests.scripted.multiplier"])
    code, cli = run_cli(
        "test",
        "--model",
        "majority_vote",
        "--model.collaborators",
        scripted,
        "--model.tie",
        "dev-based",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "6",
        "--data.dev_limit",
        "6",
    )
    model: MajorityVote = cli.model
    assert bool(model.calibrated) and model.dev_ranking() == [1, 0]
    records = run_records(cli)
    assert all(r["details"]["tie"] for r in records)
    assert all(r["answered_by"] == ["multiplier"] for r in records)


def _voter(**kwargs) -> MajorityVote:
    from moco_lit.collaborators import load_collaborator

    specs = [f"callable:tests.scripted.{name}" for name in ("oracle", "multiplier", "reverser", "wrong")]
    model = MajorityVote(specs, **kwargs)
    model.collaborators = [load_collaborator(spec) for spec in specs]
    return model


MC_EXAMPLE = {
    "id": "q1",
    "task_type": "multiple_choice",
    "record": {"question": "?", "choices": {"A": "one", "B": "two", "C": "three"}, "answer": "A"},
}


def test_unparsed_answers_do_not_vote_unless_asked():
    options = [(0, "Answer: A"), (1, "no idea"), (2, "not sure")]
    assert _voter().vote(MC_EXAMPLE, options[:3] + [(3, "hmm")]).details["winner"] == "A"
    moco_vote = _voter(count_unparsed=True).vote(MC_EXAMPLE, options)
    assert moco_vote.details["winner"] is None and moco_vote.text == "no idea"


def test_dev_based_tie_takes_the_first_given_answers_voters_first():
    # a two-two tie; models 1 and 3 share the best dev score: model 3 voted for the answer given first
    model = _voter(tie="dev-based")
    model.dev_scores.copy_(torch.tensor([0.0, 0.5, 0.0, 0.5], dtype=torch.float64))
    options = [(0, "Answer: B"), (1, "Answer: A"), (2, "Answer: A"), (3, "Answer: B")]
    assert model.vote(MC_EXAMPLE, options).details["winner"] == "B"


def test_equal_numbers_vote_together_unless_grouped_as_written():
    example = {"id": "q2", "task_type": "exact_match", "record": {"input": "?", "output": "21"}}
    options = [(0, "\\boxed{21}"), (1, "\\boxed{21.0}"), (2, "\\boxed{7}")]
    assert _voter().vote(example, options).details["votes"] == {"21": 2, "7": 1}
    as_written = _voter(answer_grouping="text").vote(example, options)
    assert as_written.details["votes"] == {"21": 1, "21.0": 1, "7": 1} and as_written.details["tie"]
