"""prompt_routing against MoCo's ``api_prompt_routing``: the dev-best model routes each question
by the models' descriptions; the routed models answer."""

from __future__ import annotations

from tests.parity.moco_harness import Ask, assert_same, assert_same_calls, run_moco, run_moco_lit
from tests.parity.test_discussion import TASK
from tests.parity.test_discussion import policy as answer_policy

MODELS = ["alpha", "beta", "gamma"]
DESCRIPTIONS = ["Knows sums up to fifty", "Knows sums above fifty", "Knows a little of everything"]
ROUTES = {  # the router's reply per test question
    "t0": "2",
    "t1": "Send it to model 3.",
    "t2": "I would not know.",  # no number: the dev-best model answers
    "t3": "1, not 3",  # MoCo reads the highest number in the reply
}


def policy(ask: Ask) -> str:
    if all(description in ask.prompt for description in DESCRIPTIONS):  # a routing request
        return ROUTES[ask.example]
    return answer_policy(ask)


def run_both(run_cli, tmp_path, monkeypatch, *lit_args):
    hyper = {"model_descriptions": DESCRIPTIONS}
    moco = run_moco(monkeypatch, tmp_path, "api_prompt_routing", TASK, MODELS, policy, hyper)
    descriptions = "[" + ", ".join(DESCRIPTIONS) + "]"
    lit = run_moco_lit(
        run_cli,
        tmp_path,
        "prompt_routing",
        TASK,
        MODELS,
        policy,
        "--model.model_descriptions",
        descriptions,
        *lit_args,
    )
    return moco, lit


def test_prompt_routing_with_moco_s_reply_reading_matches_moco(run_cli, tmp_path, monkeypatch):
    moco, lit = run_both(run_cli, tmp_path, monkeypatch, "--model.route_parsing", "highest_substring")
    assert_same_calls(moco.calls, lit.calls)
    routes = [r["details"]["route"] for r in lit.records]
    assert_same("routes", [e["routed_model"] for e in moco.log["logs"]], routes)
    assert routes == ["beta", "gamma", "gamma", "gamma"] and lit.module.dev_best == 2
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score


def test_prompt_routing_takes_the_first_model_number_named(run_cli, tmp_path, monkeypatch):
    moco, lit = run_both(run_cli, tmp_path, monkeypatch)
    # t3's "1, not 3": MoCo routes to model 3, moco_lit to model 1
    assert moco.log["logs"][3]["routed_model"] == "gamma"
    assert [r["details"]["route"] for r in lit.records] == ["beta", "gamma", "gamma", "alpha"]
