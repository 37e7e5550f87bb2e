"""llm_blender (zero-shot) against MoCo's ``text_llm_blender``: candidates, one pairwise verdict per
pair from a separate ranker, the top-k by wins, and the fusion by the first collaborator."""

from __future__ import annotations

from tests.parity.moco_harness import Ask, assert_same, assert_same_calls, run_moco, run_moco_lit
from tests.parity.test_discussion import TASK, answer_in
from tests.parity.test_discussion import policy as discussion_policy

MODELS = ["alpha", "beta", "gamma"]
UNDECIDED = "Both look equally good."  # MoCo reads the B of "Both" as a verdict


def policy(ask: Ask) -> str:
    if ask.model != "epsilon":  # the candidates, and alpha as the fuser
        return discussion_policy(ask)
    first, second = (answer_in(q.content) == ask.record["output"] for q in ask.in_order)
    return "A" if first and not second else "B" if second and not first else UNDECIDED


def run_both(run_cli, tmp_path, monkeypatch, *lit_args):
    hyper = {"ranker_model_name": "epsilon", "top_k": 2}
    moco = run_moco(monkeypatch, tmp_path, "text_llm_blender", TASK, MODELS, policy, hyper)
    ranker = ("--model.ranker", "callable:tests.parity.moco_harness.epsilon", "--model.top_k", "2")
    lit = run_moco_lit(run_cli, tmp_path, "llm_blender", TASK, MODELS, policy, *ranker, *lit_args)
    return moco, lit


def wins_and_top(moco, lit):
    moco_side = [
        (e["ranker_scores"], [MODELS[m] for m in e["top_k_model_indices"]]) for e in moco.log["logs"]
    ]
    lit_side = [(list(r["details"]["wins"].values()), r["details"]["top"]) for r in lit.records]
    return moco_side, lit_side


def test_llm_blender_with_moco_s_verdict_reading_matches_moco(run_cli, tmp_path, monkeypatch):
    moco, lit = run_both(run_cli, tmp_path, monkeypatch, "--model.verdict_parsing", "first_letter")
    assert_same_calls(moco.calls, lit.calls)
    # 3 candidates and 3 pairs per question, then one fusion each
    assert len(lit.calls) == 4 * (3 + 3 + 1) and sum(c.model == "epsilon" for c in lit.calls) == 12
    assert_same("wins and top-k", *wins_and_top(moco, lit))
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score


def test_llm_blender_reads_an_undecided_verdict_as_no_verdict(run_cli, tmp_path, monkeypatch):
    moco, lit = run_both(run_cli, tmp_path, monkeypatch)
    moco_side, lit_side = wins_and_top(moco, lit)
    # t2: alpha and beta both say 2 (wrong), gamma says 63 (right). MoCo counts "Both look equally
    # good." as a win for beta; moco_lit gives each half a point, so alpha keeps its place
    assert moco_side[2] == ([0.0, 1.0, 2.0], ["gamma", "beta"])
    assert lit_side[2] == ([0.5, 0.5, 2.0], ["gamma", "alpha"])
    assert [c for c in lit.calls if c.model == "epsilon"] == [c for c in moco.calls if c.model == "epsilon"]
