"""The differential-test harness itself: what the scripted models see and how mismatches read."""

from __future__ import annotations

import pytest

from tests.parity.moco_harness import (
    Ask,
    Call,
    Script,
    assert_same,
    assert_same_calls,
    boxed,
    exact_match_task,
)

TASK = exact_match_task(
    dev=[("What is 1 plus 1?", "2")], test=[("What is 5 plus 6?", "11"), ("What is 7 plus 8?", "15")]
)


SEEN: list[Ask] = []


def echo(ask: Ask) -> str:
    SEEN.append(ask)
    return boxed("+".join(q.author for q in ask.quotes) or ask.model)


def test_two_systems_asking_the_same_things_get_the_same_replies_whatever_their_wording():
    moco, lit = Script(TASK, echo), Script(TASK, echo)
    first = [moco("alpha", "Q: What is 5 plus 6?"), moco("beta", "What is 5 plus 6? Answer it.")]
    assert [lit("alpha", "User: What is 5 plus 6?\n\nAssistant:"), lit("beta", "What is 5 plus 6?")] == first
    # the quotes are found by their text, whatever the template around them and their order
    moco_reply = moco("gamma", f"Question: What is 5 plus 6?\n- {first[0]}\n- {first[1]}\nImprove.")
    lit_reply = lit("gamma", f"Answers:\n1. {first[1]}\n2. {first[0]}\nQuestion: What is 5 plus 6?")
    assert moco_reply == lit_reply
    assert (
        moco.calls[-1] == lit.calls[-1] and moco.calls[-1].split == "test" and len(moco.calls[-1].quoted) == 2
    )
    assert moco.replies[moco_reply].content == boxed("alpha+beta")
    # in the order each prompt shows them, for judges that are asked "first or second?"
    assert [q.author for q in SEEN[-2].in_order] == ["alpha", "beta"]
    assert [q.author for q in SEEN[-1].in_order] == ["beta", "alpha"]


def test_repeated_asks_count_up_and_the_split_comes_from_the_question():
    script = Script(TASK, lambda ask: boxed(str(ask.repeat)))
    assert [script("alpha", "What is 1 plus 1?")[:9] for _ in range(3)] == [
        "\\boxed{0}",
        "\\boxed{1}",
        "\\boxed{2}",
    ]
    assert {call.split for call in script.calls} == {"dev"}
    with pytest.raises(AssertionError, match="one known question"):
        script("alpha", "What is 9 plus 9?")


def test_mismatches_read_as_a_diff():
    call = Call("test", "alpha", "t0", ())
    with pytest.raises(AssertionError, match=r"MoCo 1 / moco_lit 0: test alpha"):
        assert_same_calls([call], [])
    with pytest.raises(AssertionError, match=r"\[1\] MoCo:     b\n  \[1\] moco_lit: c"):
        assert_same("outputs", ["a", "b"], ["a", "c"])
