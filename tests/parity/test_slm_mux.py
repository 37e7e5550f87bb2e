"""slm_mux against MoCo's ``text_slm_mux``: three samples per model (the script's repeat index is
the sample), ties inside a model and between models drawn the same way on both sides."""

from __future__ import annotations

import pytest

from tests.parity.moco_harness import Ask, assert_same, assert_same_calls, boxed, run_moco, run_moco_lit
from tests.parity.test_discussion import DEV_RIGHT, TASK

SAMPLES = {  # example -> each model's three sampled answers
    "t0": {"alpha": ["21", "21", "21"], "beta": ["5", "5", "6"], "gamma": ["21", "7", "8"]},
    "t1": {"alpha": ["1", "2", "3"], "beta": ["42", "42", "9"], "gamma": ["8", "8", "8"]},
    "t2": {"alpha": ["63", "63", "1"], "beta": ["2", "2", "3"], "gamma": ["4", "5", "6"]},
    "t3": {"alpha": ["84", "84", "84"], "beta": ["3", "3", "3"], "gamma": ["1", "1", "1"]},
}


def policy(ask: Ask) -> str:
    if ask.split == "dev":
        return boxed(ask.record["output"] if ask.example in DEV_RIGHT[ask.model] else "0")
    return boxed(SAMPLES[ask.example][ask.model][ask.repeat])


class Draws:
    """The same draw for both systems: the option that sorts last by its text."""

    @staticmethod
    def choice(options):
        return max(options, key=lambda o: str(getattr(o, "answer", o[1] if isinstance(o, tuple) else o)))

    @staticmethod
    def seed(value):
        pass

    @staticmethod
    def Random(seed):  # noqa: N802 - stands in for random.Random
        return Draws


@pytest.mark.parametrize(
    ("tie", "winners", "score"),
    [
        # t2: alpha and beta are equally consistent; beta is better on dev. t3: all three are
        # fully consistent; gamma is the best on dev
        ("dev-based", ["21", "8", "2", "1"], 0.25),
        ("random", ["21", "8", "63", "84"], 0.75),  # the draw takes the answer that sorts last
    ],
)
def test_slm_mux_matches_moco(run_cli, tmp_path, monkeypatch, tie, winners, score):
    from moco_lit.methods.text import slm_mux

    models = ["alpha", "beta", "gamma"]
    hyper = {"samples_per_model": 3, "tie": tie}
    moco = run_moco(monkeypatch, tmp_path, "text_slm_mux", TASK, models, policy, hyper, {"random": Draws})
    monkeypatch.setattr(slm_mux, "random", Draws)
    lit = run_moco_lit(
        run_cli,
        tmp_path,
        "slm_mux",
        TASK,
        models,
        policy,
        "--model.samples_per_model",
        "3",
        "--model.tie",
        tie,
    )
    assert_same_calls(moco.calls, lit.calls)
    assert len([c for c in lit.calls if c.split == "test"]) == 3 * 4 * 3
    assert_same("chosen answers", moco.outputs, [r["answer"] for r in lit.records])
    assert_same(
        "chosen models",
        [e["selected_model"] for e in moco.log["logs"]],
        [r["answered_by"] for r in lit.records],
    )
    # each model's own majority answer (alpha's three-way tie on t1 included)
    assert_same(
        "majority per model",
        [e["per_model_selected"] for e in moco.log["logs"]],
        [r["details"]["majority"] for r in lit.records],
    )
    assert lit.records[1]["details"]["majority"]["alpha"] == "3"
    assert [r["answer"] for r in lit.records] == winners
    assert moco.score == lit.score == score


def test_slm_mux_grouping_answers_as_written_matches_moco(run_cli, tmp_path, monkeypatch):
    from moco_lit.methods.text import slm_mux

    # alpha's "21" and "21.0" agree by value but not as written
    samples = {**SAMPLES, "t0": {**SAMPLES["t0"], "alpha": ["21", "21.0", "5"], "beta": ["6", "6", "2"]}}

    def written(ask: Ask) -> str:
        if ask.split == "dev":
            return policy(ask)
        return boxed(samples[ask.example][ask.model][ask.repeat])

    models = ["alpha", "beta", "gamma"]
    hyper = {"samples_per_model": 3}
    moco = run_moco(monkeypatch, tmp_path, "text_slm_mux", TASK, models, written, hyper, {"random": Draws})
    monkeypatch.setattr(slm_mux, "random", Draws)
    lit = run_moco_lit(
        run_cli,
        tmp_path,
        "slm_mux",
        TASK,
        models,
        written,
        "--model.samples_per_model",
        "3",
        "--model.answer_grouping",
        "text",
    )
    assert_same_calls(moco.calls, lit.calls)
    assert_same("chosen answers", moco.outputs, [r["answer"] for r in lit.records])
    assert lit.records[0]["details"]["majority"]["alpha"] == "5" and lit.records[0]["answer"] == "6"
    assert moco.score == lit.score
