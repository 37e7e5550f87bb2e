"""single_model and majority_vote against MoCo's ``single_model`` and ``text_majority_vote``."""

from __future__ import annotations

from tests.parity.moco_harness import (
    ADDITIONS,
    LARGER_ADDITIONS,
    MODELS,
    Ask,
    assert_same,
    assert_same_calls,
    boxed,
    exact_match_task,
    multiple_choice_task,
    run_moco,
    run_moco_lit,
)

TASK = exact_match_task(dev=ADDITIONS[:3], test=LARGER_ADDITIONS)


def truth(ask: Ask) -> str:
    return ask.record["output"]


def test_single_model_matches_moco(run_cli, tmp_path, monkeypatch):
    def policy(ask: Ask) -> str:
        return boxed(truth(ask) if ask.example in {"t0", "t2"} else "0")

    moco = run_moco(monkeypatch, tmp_path, "single_model", TASK, ["alpha"], policy)
    lit = run_moco_lit(run_cli, tmp_path, "single_model", TASK, ["alpha"], policy)
    assert_same_calls(moco.calls, lit.calls)
    assert_same("outputs", moco.outputs, lit.outputs)
    assert len(lit.calls) == 4 and {c.split for c in lit.calls} == {"test"}
    assert moco.score == lit.score == 0.5


# multiple choice: (question, choices, answer); each model's reply per test example below
MC_TASK = multiple_choice_task(
    dev=[
        ("Which colour is grass?", {"A": "green", "B": "red", "C": "blue", "D": "black"}, "A"),
        ("Which number is even?", {"A": "three", "B": "four", "C": "five", "D": "seven"}, "B"),
        ("Which animal barks?", {"A": "cat", "B": "cow", "C": "dog", "D": "owl"}, "C"),
    ],
    test=[
        (
            "Which metal is liquid at room temperature?",
            {"A": "mercury", "B": "iron", "C": "gold", "D": "tin"},
            "A",
        ),
        (
            "Which shape has three sides?",
            {"A": "square", "B": "triangle", "C": "circle", "D": "hexagon"},
            "B",
        ),
        (
            "Which gas do plants take in?",
            {"A": "oxygen", "B": "helium", "C": "carbon dioxide", "D": "neon"},
            "C",
        ),
        ("Which ocean is the largest?", {"A": "Indian", "B": "Arctic", "C": "Atlantic", "D": "Pacific"}, "D"),
        ("Which month has the fewest days?", {"A": "May", "B": "June", "C": "July", "D": "February"}, "D"),
        ("Which sense uses the nose?", {"A": "smell", "B": "sight", "C": "touch", "D": "taste"}, "A"),
    ],
)
UNPARSED = "I cannot tell."
VOTES = {  # test example -> replies of alpha, beta, gamma (None: nothing to parse)
    "t0": ["A", "A", "A"],
    "t1": ["A", "B", "B"],
    "t2": ["C", None, None],  # MoCo: the two unparsed replies outvote the only (right) answer
    "t3": ["A", "B", "C"],  # a three-way tie
    "t4": [None, "D", None],
    "t5": [None, "A", "B"],  # a tie that includes "no answer"
}


def vote_policy(ask: Ask) -> str:
    index = MODELS.index(ask.model)
    if ask.split == "dev":
        letter = ask.record["answer"] if ask.model in DEV_RIGHT else "D"
    else:
        letter = VOTES[ask.example][index]
    return UNPARSED if letter is None else f"Answer: {letter}"


DEV_RIGHT = {"alpha"}


class Draws:
    """The same tie draw for both systems: the tied answer that sorts last by ``str``."""

    @staticmethod
    def pick(options):
        return max(options, key=str)

    # MoCo calls random.choice(tied); moco_lit calls random.Random(seed).choice(sorted(tied))
    choice = pick

    @staticmethod
    def Random(seed):  # noqa: N802 - stands in for random.Random
        return Draws


def test_majority_vote_with_moco_vote_matches_moco(run_cli, tmp_path, monkeypatch):
    from moco_lit.methods.text import majority_vote

    models = ["alpha", "beta", "gamma"]
    moco = run_moco(
        monkeypatch, tmp_path, "text_majority_vote", MC_TASK, models, vote_policy, patches={"random": Draws}
    )
    monkeypatch.setattr(majority_vote, "random", Draws)
    lit = run_moco_lit(
        run_cli, tmp_path, "majority_vote", MC_TASK, models, vote_policy, "--model.count_unparsed", "true"
    )
    assert_same_calls(moco.calls, lit.calls)
    assert len(lit.calls) == 18  # three models, six test questions, no dev
    answers = [r["answer"] for r in lit.records]
    assert_same("voted answers", moco.outputs, answers)
    assert answers == ["A", "B", None, "C", None, None]
    assert moco.score == lit.score == 2 / 6


def test_majority_vote_default_keeps_answers_that_moco_loses_to_unparsed_replies(
    run_cli, tmp_path, monkeypatch
):
    from moco_lit.methods.text import majority_vote

    models = ["alpha", "beta", "gamma"]
    moco = run_moco(
        monkeypatch, tmp_path, "text_majority_vote", MC_TASK, models, vote_policy, patches={"random": Draws}
    )
    monkeypatch.setattr(majority_vote, "random", Draws)
    lit = run_moco_lit(run_cli, tmp_path, "majority_vote", MC_TASK, models, vote_policy)
    assert_same_calls(moco.calls, lit.calls)
    answers = [r["answer"] for r in lit.records]
    # t2 and t4: one model answered and nobody contradicted it; MoCo outputs None and scores 0
    assert moco.outputs == ["A", "B", None, "C", None, None]
    assert answers == ["A", "B", "C", "C", "D", "B"]
    assert [r["score"] for r in lit.records] == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert moco.score == 2 / 6 and lit.score == 4 / 6


def test_majority_vote_dev_based_tie_matches_moco(run_cli, tmp_path, monkeypatch):
    # t1 ties two-two: alpha and delta say B, beta and gamma say A. beta and delta share the best
    # dev score; MoCo takes the voters of the first-given tied answer first, so delta's B wins
    votes = {"t0": ["A", "A", "A", "B"], "t1": ["B", "A", "A", "B"], "t2": ["C", "C", "D", "D"]}
    dev_right = {"beta": {"d0", "d1"}, "delta": {"d1", "d2"}, "alpha": set(), "gamma": {"d0"}}

    def policy(ask: Ask) -> str:
        if ask.split == "dev":
            return "Answer: " + (ask.record["answer"] if ask.example in dev_right[ask.model] else "D")
        return "Answer: " + votes.get(ask.example, ["A"] * 4)[MODELS.index(ask.model)]

    task = multiple_choice_task(
        dev=[(r["question"], r["choices"], r["answer"]) for r in MC_TASK.dev],
        test=[(r["question"], r["choices"], r["answer"]) for r in MC_TASK.test[:3]],
    )
    models = ["alpha", "beta", "gamma", "delta"]
    moco = run_moco(monkeypatch, tmp_path, "text_majority_vote", task, models, policy, {"tie": "dev-based"})
    lit = run_moco_lit(run_cli, tmp_path, "majority_vote", task, models, policy, "--model.tie", "dev-based")
    assert_same_calls(moco.calls, lit.calls)
    assert sum(c.split == "dev" for c in lit.calls) == 12
    answers = [r["answer"] for r in lit.records]
    assert_same("voted answers", moco.outputs, answers)
    assert answers == ["A", "B", "C"]
    assert moco.score == lit.score == 1.0


NUMBER_VOTES = {
    "t0": ["21", "21.0", "7"],
    "t1": ["1/2", "0.5", "3"],
    "t2": ["63", "63", "1"],
    "t3": ["84", "84", "x"],
}


def number_policy(ask: Ask) -> str:
    return boxed(NUMBER_VOTES[ask.example][MODELS.index(ask.model)])


def test_majority_vote_grouping_answers_as_written_matches_moco(run_cli, tmp_path, monkeypatch):
    from moco_lit.methods.text import majority_vote

    models = ["alpha", "beta", "gamma"]
    moco = run_moco(
        monkeypatch, tmp_path, "text_majority_vote", TASK, models, number_policy, patches={"random": Draws}
    )
    monkeypatch.setattr(majority_vote, "random", Draws)
    lit = run_moco_lit(
        run_cli, tmp_path, "majority_vote", TASK, models, number_policy, "--model.answer_grouping", "text"
    )
    assert_same_calls(moco.calls, lit.calls)
    answers = [r["answer"] for r in lit.records]
    assert_same("voted answers", moco.outputs, answers)
    # "21" and "21.0" split their votes: a three-way tie, drawn the same way on both sides
    assert answers == ["7", "3", "63", "84"]
    assert moco.score == lit.score == 0.5


def test_majority_vote_default_counts_equal_numbers_as_one_answer(run_cli, tmp_path, monkeypatch):
    models = ["alpha", "beta", "gamma"]
    lit = run_moco_lit(run_cli, tmp_path, "majority_vote", TASK, models, number_policy)
    assert [r["details"]["votes"] for r in lit.records][:2] == [{"21": 2, "7": 1}, {"1/2": 2, "3": 1}]
    assert lit.score == 0.75
