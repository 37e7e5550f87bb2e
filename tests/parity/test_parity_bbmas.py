"""bbmas against MoCo's ``text_bbmas``: every agent on the dev-best model, the same agents drawn,
the same choices retried, the same blackboards, votes and final conclusions.

The scripted agents choose an action by naming it (``CHOICES``); a choice names its sample index
(``draft``) so that the contribution written after it can depend on it. A prompt that lists a reply
of the blackboard a second time is a vote (the conclusions are listed after the board): that is
found from the replies' positions, never from template wording. Agent draws: both systems read the
same scripted orders (``Sampler``); moco_lit runs one question per batch so that both draw in the
same order (question by question, iteration by iteration).
"""

from __future__ import annotations

import pytest

from tests.parity.moco_harness import Ask, Script, assert_same_calls, boxed, run_moco, run_moco_lit
from tests.parity.test_discussion import BELIEFS, DEV_RIGHT, TASK

MODELS = ["alpha", "beta", "gamma"]  # gamma is the best on dev: every agent speaks with it
CHOICES = {  # how an agent names each action; MoCo reads these phrases, moco_lit the action word
    "propose": "I choose to propose a solving strategy.",
    "execute": "I choose to execute a solution step.",
    "critique": "I choose to critique and refine existing work.",
    "terminate": "I choose to terminate and finalize the solution.",
}
UNREADABLE = "Let me look at the board first."


def tail(quote) -> str:
    return f"{quote.content} [{quote.tag}]".split("FINAL:")[-1].strip()


def is_vote(ask: Ask) -> bool:
    return any(ask.prompt.count(tail(q)) >= 2 for q in ask.quotes)


def choice_of(content: str) -> tuple[str, int] | None:
    """(action, draft) of an agent's choice reply, None for any other reply."""
    for action, phrase in CHOICES.items():
        if content.startswith(phrase):
            return action, int(content.rsplit("draft ", 1)[1].rstrip(")"))
    return None


def choose(action: str | None, ask: Ask) -> str:
    return f"{CHOICES[action]} (draft {ask.repeat})" if action else UNREADABLE


def contribute(ask: Ask, finals: dict[tuple[str, int], str]) -> str:
    action, draft = choice_of(ask.in_order[-1].content)
    if action == "terminate":
        return (
            f"FINAL: the answer is {boxed(finals.get((ask.example, draft), BELIEFS['gamma'][ask.example]))}"
        )
    return f"Working on it ({action}, draft {draft}): {boxed(BELIEFS['gamma'][ask.example])}"


def board_entries(ask: Ask) -> int:
    """Entries with a contribution on the board (an unreadable choice leaves an entry without one)."""
    return sum(choice_of(q.content) is None for q in ask.quotes)


# -- one agent per iteration (MoCo's defaults) ----------------------------------------------------


def solo_policy(ask: Ask) -> str:
    if ask.split == "dev":
        return boxed(ask.record["output"] if ask.example in DEV_RIGHT[ask.model] else "0")
    if choice_of(ask.in_order[-1].content if ask.in_order else "") is not None:
        return contribute(ask, {("t3", 1): "4"})
    done = board_entries(ask)
    plan = {
        "t0": ["propose", "execute", "terminate"][min(done, 2)],  # finishes in iteration 3
        "t1": "critique" if done % 2 else "execute",  # never finishes: ten iterations
        "t2": "terminate" if ask.repeat >= 3 else None,  # three unreadable choices, then finishes
        "t3": "terminate" if ask.repeat == 1 else None,  # finishes on the second try
    }
    return choose(plan[ask.example], ask)


class Sampler:
    """The agents that act, for both systems: ``sample(population, k)`` takes the next scripted
    order; ``Random(seed)`` (moco_lit's seeded stream) returns the same sampler."""

    ORDERS = [[2, 0, 1], [0, 1, 2], [1, 2, 0], [2, 1, 0]]

    def __init__(self) -> None:
        self.used = 0

    def sample(self, population, k):
        order = self.ORDERS[self.used % len(self.ORDERS)]
        self.used += 1
        return [population[j] for j in order[:k]]

    def Random(self, seed):  # noqa: N802 - stands in for random.Random
        return self


def run_both(run_cli, tmp_path, monkeypatch, policy, hyper: dict, *lit_args: str):
    from moco_lit.methods.text import bbmas

    moco_draws, lit_draws = Sampler(), Sampler()
    patches = {
        "random": moco_draws,
        "hf_gen": lambda model, tokenizer, prompt: model.script(model.name, prompt),
    }
    moco = run_moco(monkeypatch, tmp_path, "text_bbmas", TASK, MODELS, policy, hyper, patches)
    monkeypatch.setattr(bbmas, "random", lit_draws)
    lit = run_moco_lit(
        run_cli,
        tmp_path,
        "bbmas",
        TASK,
        MODELS,
        policy,
        "--model.temperature",
        "1.0",  # MoCo's: sampling, so unreadable choices and votes are asked again
        "--data.batch_size",
        "1",
        *lit_args,
    )
    assert moco_draws.used == lit_draws.used > 0
    return moco, lit


def replies_in(output: str, script: Script) -> tuple[list[str], str]:
    """The tags of the replies an output quotes, in order, and what is left around them."""
    found, rest = [], output
    for text in sorted(script.replies, key=len, reverse=True):
        if text in rest:
            found.append((output.index(text), script.replies[text].tag))
            rest = rest.replace(text, "")
    return [tag for _, tag in sorted(found)], rest.strip()


def assert_same_outputs(moco, lit, fallbacks: set[int]) -> None:
    """Identical outputs, except where no agent finished: there the answer is the last entry, a
    choice and its contribution, each system joining the two with its own words."""
    for i, (a, b) in enumerate(zip(moco.outputs, lit.outputs, strict=True)):
        if i not in fallbacks:
            assert a == b, f"output {i}:\nMoCo:     {a}\nmoco_lit: {b}"
            continue
        (moco_tags, moco_rest), (lit_tags, lit_rest) = replies_in(a, moco.script), replies_in(b, lit.script)
        assert moco_tags == lit_tags and len(lit_tags) == 2, f"output {i}: {moco_tags} vs {lit_tags}"
        assert lit_rest == "--- contribution ---" and moco_rest and not any(c.isdigit() for c in moco_rest)


def test_bbmas_defaults_match_moco(run_cli, tmp_path, monkeypatch):
    moco, lit = run_both(run_cli, tmp_path, monkeypatch, solo_policy, {})
    assert_same_calls(moco.calls, lit.calls)
    assert lit.module.dev_best == 2 and {c.model for c in lit.calls if c.split == "test"} == {"gamma"}
    assert_same_outputs(moco, lit, fallbacks={1})
    assert [r["calls"] for r in lit.records] == [e["num_llm_calls"] for e in moco.log["logs"]]
    details = [r["details"] for r in lit.records]
    assert [d["iterations"] for d in details] == [3, 10, 2, 1]
    assert details[2]["actions"] == [None, "terminate"]
    assert moco.score == lit.score == 0.75  # t3's agent finishes with 4


# -- two agents per iteration, two finishers needed: votes ----------------------------------------

VOTES = {  # question -> the vote replies, in the order they are asked (retries included)
    "t0": ["Conclusion #2", "Undecided.", "Conclusion #1", "Conclusion #1"],  # 2, 1, 1: #1 wins
    "t1": ["Conclusion #2", "Conclusion #1", "Conclusion #3"],  # 2, 1 and one out of range: a tie
    "t3": ["Conclusion #0 is empty.", "Conclusion #1", "Conclusion #2", "Conclusion #2"],
}


def pair_policy(ask: Ask) -> str:
    if ask.split == "dev":
        return boxed(ask.record["output"] if ask.example in DEV_RIGHT[ask.model] else "0")
    if is_vote(ask):
        return VOTES[ask.example][ask.repeat]
    if choice_of(ask.in_order[-1].content if ask.in_order else "") is not None:
        return contribute(ask, {("t0", 1): "7", ("t1", 0): "5"})
    plan = {
        "t0": "terminate",  # both finish at once, with different answers
        "t1": "terminate",
        "t2": "terminate" if ask.repeat == 0 else "execute",  # one finisher is not enough
        "t3": "execute",  # nobody finishes: the last entries are the conclusions
    }
    return choose(plan[ask.example], ask)


@pytest.mark.parametrize("agents", [2, 3])
def test_bbmas_votes_match_moco(run_cli, tmp_path, monkeypatch, agents):
    hyper = {"max_num_agents_to_act": agents, "min_num_agents_to_stop": 2, "max_iterations": 3}
    moco, lit = run_both(
        run_cli,
        tmp_path,
        monkeypatch,
        pair_policy,
        hyper,
        *(f"--model.{name}={value}" for name, value in hyper.items()),
    )
    assert_same_calls(moco.calls, lit.calls)
    assert_same_outputs(moco, lit, fallbacks={3})
    details = [r["details"] for r in lit.records]
    assert [d["iterations"] for d in details] == [1, 1, 3, 3]
    assert details[0]["votes"] == {"1": 2, "2": 1} and details[0]["winner"] == 1
    # a tie (three ways with three conclusions, #3 being out of range with two): the first voted wins
    tie = {"1": 1, "2": 1} | ({"3": 1} if agents == 3 else {})
    assert details[1]["votes"] == tie and details[1]["winner"] == 2
    assert details[3]["winner"] == 2
    assert [r["calls"] for r in lit.records] == [e["num_llm_calls"] for e in moco.log["logs"]]
    assert moco.score == lit.score
