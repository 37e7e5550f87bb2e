"""The discussion methods against MoCo: moa, multiagent_refine, multiagent_feedback, knowledge_card
and structure (MoCo's ``text_<method>``), on the same arithmetic task and scripted models.

Each model starts from its own belief per question (``BELIEFS``); shown earlier replies, it answers
with the most common answer among them and its belief, its belief winning a tie. On dev, gamma is
the best model, so it summarises, aggregates or gives the final answer.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from tests.parity.moco_harness import (
    ADDITIONS,
    LARGER_ADDITIONS,
    MODELS,
    Ask,
    assert_same,
    assert_same_calls,
    boxed,
    exact_match_task,
    run_moco,
    run_moco_lit,
)

TASK = exact_match_task(dev=ADDITIONS[:3], test=LARGER_ADDITIONS)
BELIEFS = {
    "alpha": {"t0": "21", "t1": "1", "t2": "2", "t3": "84"},
    "beta": {"t0": "5", "t1": "42", "t2": "2", "t3": "3"},
    "gamma": {"t0": "21", "t1": "42", "t2": "63", "t3": "4"},
    "delta": {"t0": "7", "t1": "8", "t2": "63", "t3": "84"},
}
DEV_RIGHT = {"alpha": set(), "beta": {"d0"}, "gamma": {"d0", "d1", "d2"}, "delta": {"d0", "d1"}}


def answer_in(content: str) -> str:
    return re.search(r"\\boxed\{([^}]*)\}", content).group(1)


def policy(ask: Ask) -> str:
    if ask.split == "dev":
        return boxed(ask.record["output"] if ask.example in DEV_RIGHT[ask.model] else "0")
    belief = BELIEFS[ask.model][ask.example]
    votes = Counter([answer_in(c) for c in ask.quoted_contents] + [belief])
    top = max(votes.values())
    return boxed(belief if votes[belief] == top else min(a for a in votes if votes[a] == top))


def compare(moco, lit, score: float) -> None:
    assert_same_calls(moco.calls, lit.calls)
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score == score


def test_moa_matches_moco(run_cli, tmp_path, monkeypatch):
    models = ["alpha", "beta", "gamma"]
    moco = run_moco(monkeypatch, tmp_path, "text_moa", TASK, models, policy, {"round": 2})
    lit = run_moco_lit(run_cli, tmp_path, "moa", TASK, models, policy, "--model.round", "2")
    compare(moco, lit, 0.75)
    assert lit.module.dev_best == 2 and moco.log["aggregator"] == "gamma"
    # dev 3 x 3, two proposer layers 2 x 3 x 4, the aggregator 4
    assert len(lit.calls) == 9 + 24 + 4


def test_multiagent_refine_matches_moco(run_cli, tmp_path, monkeypatch):
    models = ["alpha", "beta", "gamma"]
    moco = run_moco(monkeypatch, tmp_path, "text_multiagent_refine", TASK, models, policy)
    lit = run_moco_lit(run_cli, tmp_path, "multiagent_refine", TASK, models, policy)
    compare(moco, lit, 0.75)
    assert len(lit.calls) == 9 + 3 * 3 * 4 + 4


def reviewers(example: str, author: int, number: int, count: int, feedback_count: int) -> list[int]:
    """The injected draw of reviewers, the same for both systems."""
    others = [m for m in range(count) if m != author]
    key = lambda m: hashlib.sha256(f"{example} {author} {number} {m}".encode()).hexdigest()  # noqa: E731
    return sorted(others, key=key)[:feedback_count]


def test_multiagent_feedback_matches_moco(run_cli, tmp_path, monkeypatch):
    from moco_lit.methods.text.multiagent_feedback import MultiagentFeedback

    models, rounds, feedback_count = ["alpha", "beta", "gamma", "delta"], 3, 2
    # MoCo draws with random.sample for round r = 1.., author, then example, in that order
    draws = [
        reviewers(example["id"], author, r + 1, len(models), feedback_count)
        for r in range(1, rounds)
        for author in range(len(models))
        for example in TASK.test
    ]

    class InjectedRandom:
        @staticmethod
        def sample(population, k):
            drawn = draws.pop(0)
            assert k == len(drawn) and set(drawn) <= set(population)
            return drawn

    hyper = {"round": rounds, "feedback_count": feedback_count}
    moco = run_moco(
        monkeypatch,
        tmp_path,
        "text_multiagent_feedback",
        TASK,
        models,
        policy,
        hyper,
        {"random": InjectedRandom},
    )
    assert not draws
    monkeypatch.setattr(
        MultiagentFeedback,
        "reviewers",
        lambda self, example_id, author, number: reviewers(
            example_id, author, number, len(models), feedback_count
        ),
    )
    lit = run_moco_lit(
        run_cli,
        tmp_path,
        "multiagent_feedback",
        TASK,
        models,
        policy,
        "--model.feedback_count",
        str(feedback_count),
    )
    compare(moco, lit, 0.75)
    # dev 4 x 3; round 1: 4 x 4; each later round: 2 reviews and 1 revision per answer; summary 4
    assert len(lit.calls) == 12 + 16 + 2 * (16 * 2 + 16) + 4


def test_knowledge_card_matches_moco(run_cli, tmp_path, monkeypatch):
    models = ["alpha", "beta", "gamma"]
    moco = run_moco(monkeypatch, tmp_path, "text_knowledge_card", TASK, models, policy)
    lit = run_moco_lit(run_cli, tmp_path, "knowledge_card", TASK, models, policy)
    compare(moco, lit, 0.75)
    assert len(lit.calls) == 9 + 12 + 4


def test_knowledge_card_without_the_answerers_card_skips_only_the_card_moco_discards(
    run_cli, tmp_path, monkeypatch
):
    models = ["alpha", "beta", "gamma"]
    moco = run_moco(
        monkeypatch, tmp_path, "text_knowledge_card", TASK, models, policy, {"exclude_self": True}
    )
    lit = run_moco_lit(
        run_cli, tmp_path, "knowledge_card", TASK, models, policy, "--model.exclude_self", "true"
    )
    # MoCo also asks gamma (the answerer) for a card per question and never shows it to anyone
    discarded = [c for c in moco.calls if c.split == "test" and c.model == "gamma" and not c.quoted]
    assert len(discarded) == 4
    assert_same_calls([c for c in moco.calls if c not in discarded], lit.calls)
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score


def test_structure_star_is_mocos_star(run_cli, tmp_path, monkeypatch):
    models = ["alpha", "beta", "gamma", "delta"]
    moco = run_moco(monkeypatch, tmp_path, "text_structure", TASK, models, policy, {"structure_type": "star"})
    lit = run_moco_lit(run_cli, tmp_path, "structure", TASK, models, policy, "--model.structure_type", "star")
    compare(moco, lit, 0.75)
    # in MoCo's star with 4 models, beta reads alpha (the hub) and its two ring neighbours
    second_round = [c for c in lit.calls if c.model == "beta" and c.example == "t0" and c.quoted]
    assert {q.split()[0] for q in second_round[0].quoted} == {"alpha", "beta", "gamma", "delta"}


def test_structure_chain_and_other_match_moco(run_cli, tmp_path, monkeypatch):
    models = ["alpha", "beta", "gamma", "delta"]
    moco = run_moco(
        monkeypatch, tmp_path, "text_structure", TASK, models, policy, {"structure_type": "chain"}
    )
    lit = run_moco_lit(
        run_cli, tmp_path, "structure", TASK, models, policy, "--model.structure_type", "chain"
    )
    compare(moco, lit, lit.score)
    # a directed graph: alpha reads nobody (keeps its answer), beta reads alpha, gamma reads beta
    matrix = [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    hyper = {"structure_type": "other", "structure_matrix": matrix, "num_rounds": 2}
    moco = run_moco(monkeypatch, tmp_path, "text_structure", TASK, models, policy, hyper)
    lit = run_moco_lit(
        run_cli,
        tmp_path,
        "structure",
        TASK,
        models,
        policy,
        "--model.structure_type",
        "other",
        "--model.structure_matrix",
        str(matrix),
        "--model.num_rounds",
        "2",
    )
    compare(moco, lit, lit.score)
    assert not [c for c in lit.calls if c.model == "alpha" and c.quoted]


assert set(BELIEFS) <= set(MODELS)
