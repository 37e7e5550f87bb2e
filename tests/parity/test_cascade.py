"""cascade against MoCo's ``api_cascade``: logit mode (dev thresholds from the scripted
confidences, 256-token scored levels) and just_ask mode."""

from __future__ import annotations

import pytest

from tests.parity.moco_harness import Ask, assert_same, assert_same_calls, boxed, run_moco, run_moco_lit
from tests.parity.test_discussion import TASK

MODELS = ["alpha", "beta", "gamma"]
# (answer, confidence) per model and example; gamma, the last level, needs no confidence
REPLIES = {
    "alpha": {
        "d0": ("5", 0.9),
        "d1": ("0", 0.6),
        "d2": ("7", 0.8),  # the median: alpha's threshold is 0.8
        "t0": ("21", 0.95),
        "t1": ("0", 0.8),  # exactly the threshold: accepted
        "t2": ("0", 0.3),
        "t3": ("0", 0.1),
    },
    "beta": {
        "d0": ("5", 0.5),
        "d1": ("0", 0.7),
        "d2": ("0", 0.3),
        "t2": ("63", 0.6),
        "t3": ("0", 0.4),
    },
    "gamma": {"t3": ("84", None)},
}


def logit_policy(ask: Ask):
    answer, confidence = REPLIES[ask.model][ask.example]
    return boxed(answer) if confidence is None else (boxed(answer), confidence)


def budgets_of_asks(monkeypatch) -> list[tuple[int, int]]:
    """(model, max_new_tokens) of every ``ask`` of moco_lit from now on."""
    from moco_lit.methods.base import CollaborationModule

    seen, original = [], CollaborationModule.ask

    def spy(self, model, prompts, ids, *, step="", decoding=None):
        seen.append((model, (decoding or self.decoding).max_new_tokens))
        return original(self, model, prompts, ids, step=step, decoding=decoding)

    monkeypatch.setattr(CollaborationModule, "ask", spy)
    return seen


def test_cascade_logit_matches_moco(run_cli, tmp_path, monkeypatch):
    moco = run_moco(monkeypatch, tmp_path, "api_cascade", TASK, MODELS, logit_policy, {"mode": "logit"})
    budgets = budgets_of_asks(monkeypatch)
    lit = run_moco_lit(
        run_cli,
        tmp_path,
        "cascade",
        TASK,
        MODELS,
        logit_policy,
        "--model.mode",
        "logit",
        "--model.max_new_tokens",
        "512",
    )
    assert_same_calls(moco.calls, lit.calls)
    assert not [c for c in lit.calls if c.split == "dev" and c.model == "gamma"]  # no threshold, no dev
    assert lit.module.thresholds.tolist() == pytest.approx([0.8, 0.5])
    levels = [[step["model"] for step in r["details"]["trail"]] for r in lit.records]
    assert levels == [["alpha"], ["alpha"], ["alpha", "beta"], ["alpha", "beta", "gamma"]]
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score == 0.75
    # scored levels (and dev) get 256 new tokens, the last level the run's 512
    assert set(moco.script.scored_budgets) == {256}
    assert sorted(set(budgets)) == [(0, 256), (1, 256), (2, 512)]


def test_cascade_just_ask_matches_moco(run_cli, tmp_path, monkeypatch):
    doubts = {"alpha": {"t1", "t2", "t3"}, "beta": {"t3"}}

    def policy(ask: Ask) -> str:
        answer = REPLIES[ask.model].get(ask.example, ("0", None))[0]
        if ask.example in doubts.get(ask.model, ()):
            return boxed(answer) + " but I am unconfident"
        return boxed(answer) + (" Unconfident? No." if ask.example == "t0" else "")

    moco = run_moco(monkeypatch, tmp_path, "api_cascade", TASK, MODELS, policy, {"mode": "just_ask"})
    lit = run_moco_lit(run_cli, tmp_path, "cascade", TASK, MODELS, policy, "--model.mode", "just_ask")
    assert_same_calls(moco.calls, lit.calls)
    assert not [c for c in lit.calls if c.split == "dev"]
    # t0's capitalised "Unconfident" is not the marker (MoCo matches the word as written)
    levels = [len(r["details"]["trail"]) for r in lit.records]
    assert levels == [1, 2, 2, 3]
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score
