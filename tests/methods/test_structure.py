"""structure: end to end on tiny models; each node reads exactly its neighbours; the graphs themselves."""

from __future__ import annotations

import pytest

from moco_lit.errors import UserError
from moco_lit.methods.text.structure import Structure, neighbours_of
from tests.conftest import run_records
from tests.methods.discussion_agents import agents, metrics, prompt_log, read_prompts, record_asks

NAMES = ["wrong_a", "wrong_b", "right", "wrong_c"]


def test_structure_runs_on_tiny_models(run_on_tiny_models):
    code, cli = run_on_tiny_models("structure", "--model.structure_type", "star", "--model.num_rounds", "2")
    assert code == 0 and bool(cli.model.calibrated)
    rows = run_records(cli)
    assert len(rows) == 2 and all(r["calls"] == 6 and len(r["details"]["rounds"]) == 2 for r in rows)
    final = cli.model.collaborator_names[cli.model.dev_best]
    assert all(r["output"] == r["details"]["rounds"][-1][final] for r in rows)
    assert metrics(cli)["n"] == 2


def _run(run_cli, monkeypatch, tmp_path, *options: str):
    log = prompt_log(monkeypatch, tmp_path)
    asks = record_asks(monkeypatch)
    code, cli = run_cli(
        "test",
        "--model",
        "structure",
        "--model.collaborators",
        agents(*NAMES),
        "--data.limit",
        "3",
        "--data.dev_limit",
        "3",
        *options,
    )
    return log, [(m, step, n) for m, step, n in asks if step != "dev"], run_records(cli)


def _seen(log, row: dict, number: int) -> dict[str, list[str] | None]:
    """Whose round-``number`` answers each node read in the next round (None: it made no call).

    A node's next-round prompt is the only one of its prompts that holds its own answer.
    """
    answers = row["details"]["rounds"][number]
    seen: dict[str, list[str] | None] = {}
    for name in NAMES:
        prompts = read_prompts(log, name, containing=answers[name])
        assert len(prompts) <= 1
        seen[name] = [o for o in NAMES if o != name and answers[o] in prompts[0]] if prompts else None
    return seen


def test_undirected_chain_shows_each_node_its_two_neighbours(run_cli, monkeypatch, tmp_path):
    log, asks, rows = _run(run_cli, monkeypatch, tmp_path, "--model.structure_type", "chain")
    for row in rows:
        for number in (0, 1):
            assert _seen(log, row, number) == {
                "wrong_a": ["wrong_b"],
                "wrong_b": ["wrong_a", "right"],
                "right": ["wrong_b", "wrong_c"],
                "wrong_c": ["right"],
            }
        assert row["answered_by"] == "right" and row["output"] == row["details"]["rounds"][-1]["right"]
        assert row["details"]["neighbours"]["wrong_c"] == ["right"]
    assert asks == [(m, f"round{r}", 3) for r in (1, 2, 3) for m in range(4)]


def test_directed_chain_shows_model_k_only_model_k_minus_1(run_cli, monkeypatch, tmp_path):
    # matrix[j][i] = 1: model i reads model j; here i reads i-1 only, and model 0 reads nobody
    matrix = "[[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]"
    options = ("--model.structure_type", "other", "--model.structure_matrix", matrix)
    log, asks, rows = _run(run_cli, monkeypatch, tmp_path, *options)
    for row in rows:
        assert _seen(log, row, 0) == {
            "wrong_a": None,
            "wrong_b": ["wrong_a"],
            "right": ["wrong_b"],
            "wrong_c": ["right"],
        }
        first, second, third = row["details"]["rounds"]
        assert first["wrong_a"] == second["wrong_a"] == third["wrong_a"]  # nobody to read: keeps it
        assert row["calls"] == 4 + 3 + 3
    assert all(m != 0 for m, step, _ in asks if step != "round1")


def test_graphs():
    assert neighbours_of("chain", 4) == [[1], [0, 2], [1, 3], [2]]
    assert neighbours_of("circle", 4) == [[1, 3], [0, 2], [1, 3], [0, 2]]
    assert neighbours_of("tree", 5) == [[1, 2], [0, 3, 4], [0], [1], [1]]
    # MoCo's "star": a hub joined to everyone, and the spokes in a ring; "hub" is the hub alone
    assert neighbours_of("star", 5) == [[1, 2, 3, 4], [0, 2, 4], [0, 1, 3], [0, 2, 4], [0, 1, 3]]
    assert neighbours_of("star", 2) == [[1], [0]]
    assert neighbours_of("hub", 4) == [[1, 2, 3], [0], [0], [0]]
    assert neighbours_of("complete", 3) == [[1, 2], [0, 2], [0, 1]]
    assert neighbours_of("other", 3, [[1, 1, 0], [0, 0, 1], [1, 0, 0]]) == [[2], [0], [1]]


def test_bad_structures_fail_at_configuration():
    oracle = ["callable:tests.scripted.oracle"] * 3
    with pytest.raises(UserError, match="needs structure_matrix"):
        Structure(oracle, structure_type="other")
    with pytest.raises(UserError, match="3x3 matrix of 0/1"):
        Structure(oracle, structure_type="other", structure_matrix=[[0, 1], [1, 0]])
    with pytest.raises(UserError, match="expected chain, tree"):
        Structure(oracle, structure_type="ring")
