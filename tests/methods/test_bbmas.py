"""bbmas: end to end on tiny models; the discussion stops when enough agents choose to finish,
and the agents' vote picks among several conclusions."""

from __future__ import annotations

import string

import pytest

from moco_lit.methods.text.bbmas import parse_action, parse_vote
from tests.conftest import collaborators_arg, run_records
from tests.scripted import solve_quickstart


@pytest.fixture(scope="module")
def long_context_models(tmp_path_factory) -> list[str]:
    """Two tiny random Llamas with room for the blackboard prompts (over 512 tokens)."""
    from moco_lit.quickstart import TinyModelConfig, build_tiny_llama, build_tokenizer, prompt_wording_corpus

    tokenizer = build_tokenizer(prompt_wording_corpus() + list(string.printable), vocab_size=400)
    config = TinyModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, max_positions=2048)
    folders = []
    for seed in range(2):
        folder = tmp_path_factory.mktemp("bbmas_models") / f"tiny{seed}"
        build_tiny_llama(tokenizer, config, seed=seed).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(str(folder))
    return folders


def finisher(rendered: str) -> str:
    """Always chooses to finish, and gives the right answer; votes for the last conclusion."""
    if "I vote for Conclusion" in rendered:
        count = rendered.count("Conclusion #") - 1  # the instruction itself names one
        return f"I vote for Conclusion #{count}"
    if "Action: <propose" in rendered:
        return "The answer is on the board. Action: terminate"
    return f"FINAL:\n{solve_quickstart(rendered)}"


def worker(rendered: str) -> str:
    """Never finishes: always carries out another step."""
    if "I vote for Conclusion" in rendered:
        return "I vote for Conclusion #1"
    if "Action: <propose" in rendered:
        return "More work is needed. Action: execute"
    return "Step: still thinking."


def _run_scripted(run_cli, agents: list[str], *options: str):
    scripted = collaborators_arg([f"callable:tests.methods.test_bbmas.{name}" for name in agents])
    return run_cli(
        "test",
        "--model",
        "bbmas",
        "--model.collaborators",
        scripted,
        "--model.max_iterations",
        "4",
        "--model.agent_models",
        "own",  # each scripted agent speaks for itself
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
        *options,
    )[1]


def test_bbmas_runs_on_tiny_models(run_cli, long_context_models):
    code, cli = run_cli(
        "test",
        "--model",
        "bbmas",
        "--model.collaborators",
        collaborators_arg(long_context_models),
        "--model.max_iterations",
        "2",
        "--model.max_new_tokens",
        "4",
        "--model.temperature",
        "0",  # greedy: the call counts below assume the random models' most likely tokens
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
    )
    assert code == 0
    records = run_records(cli)
    assert len(records) == 3
    for record in records:
        # random tiny models never finish: two iterations of one agent (select, + act if readable)
        assert record["details"]["iterations"] == 2 and len(record["details"]["actions"]) == 2
        assert 2 <= record["calls"] <= 4


def test_discussion_stops_when_enough_agents_choose_to_finish(run_cli):
    cli = _run_scripted(
        run_cli,
        ["finisher", "finisher", "worker"],
        "--model.max_num_agents_to_act",
        "3",
        "--model.min_num_agents_to_stop",
        "2",
    )
    for record in run_records(cli):
        details = record["details"]
        assert details["iterations"] == 1 and details["stopped_by_agents"]
        assert sorted(details["actions"]) == ["execute", "terminate", "terminate"]  # in drawn order
        # two final solutions, so every agent voted: finishers for #2, the worker for #1
        assert details["conclusions"] == 2 and details["votes"] == {"1": 1, "2": 2} and details["winner"] == 2
        second_finisher = [a for a, act in zip(details["agents"], details["actions"]) if act == "terminate"][
            1
        ]
        assert record["answered_by"] == ["finisher", "finisher#2"][second_finisher] and record["score"] == 1.0
        assert record["calls"] == 3 * 2 + 3  # three agents select and act, then three votes


def test_too_few_finishers_run_to_max_iterations(run_cli):
    cli = _run_scripted(
        run_cli,
        ["finisher", "worker", "worker"],
        "--model.max_num_agents_to_act",
        "3",
        "--model.min_num_agents_to_stop",
        "2",
    )
    for record in run_records(cli):
        assert record["details"]["iterations"] == 4 and not record["details"]["stopped_by_agents"]
        assert len(record["details"]["actions"]) == 12


def test_parsers():
    assert parse_action("hmm\nAction: Critique") == "critique"
    assert parse_action("I will terminate now.") == "terminate"
    assert parse_action("propose or execute?") is None
    assert parse_vote("Conclusion #1 is weak, I vote for Conclusion #2", 2) == 1  # MoCo: the first
    assert parse_vote("Conclusion #1 is weak, I vote for Conclusion #2", 2, "last_valid") == 2
    assert parse_vote("Conclusion #7", 2) == 7  # read, then not counted
    assert parse_vote("Conclusion #0", 2) is None
    assert parse_vote("Conclusion #7", 2, "last_valid") is None


def test_a_single_finisher_stops_after_one_iteration(run_cli):
    record = run_records(_run_scripted(run_cli, ["finisher"]))[0]
    assert record["details"]["iterations"] == 1 and record["details"]["conclusions"] == 1
    assert record["calls"] == 2 and record["score"] == 1.0
