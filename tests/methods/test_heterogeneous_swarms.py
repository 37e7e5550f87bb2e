"""heterogeneous_swarms: graph decoding, the search under fit (iterations, checkpointed swarm, exact
resume) and test running the best graph found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from moco_lit.methods.text.heterogeneous_swarms import decode_graph, topological_order
from tests.conftest import ROOT, collaborators_arg, run_records

SCRIPTED = collaborators_arg(
    ["callable:tests.scripted.wrong", "callable:tests.scripted.oracle", "callable:tests.scripted.wrong"]
)
# right on a third (multiplier) or two thirds of questions: dev scores that differ between graphs
SCRIPTED_MIXED = collaborators_arg(
    [
        "callable:tests.scripted.multiplier",
        "callable:tests.scripted.reverser",
        "callable:tests.scripted.oracle",
    ]
)
SEARCH = [
    "--model.population",
    "3",
    "--model.max_iterations",
    "3",
    "--data.benchmark",
    "quickstart",
    "--data.dev_limit",
    "8",
]


def _checkpoint(cli) -> Path:
    (path,) = (cli.model.runtime.run_folder.path / "checkpoints").glob("last.ckpt")
    return path


def test_decoded_graphs_are_trees_into_one_sink():
    rng = np.random.default_rng(0)
    for _ in range(20):
        edges = decode_graph(rng.uniform(-1, 1, (4, 4)), 0.7, rng)
        order = topological_order(edges)
        sink = order[-1]
        assert sorted(order) == [0, 1, 2, 3] and edges[sink].sum() == 0 and np.trace(edges) == 0
        assert all(edges[node].sum() == 1 for node in order[:-1])  # every other node feeds exactly one
    weights = np.array([[0, 1.0, 0.2], [0.1, 0, 0.1], [0.9, 0.1, 0]])
    greedy = decode_graph(weights, 0.0, rng)
    assert topological_order(greedy)[-1] == 1  # the weakest outgoing weights make the sink
    # MoCo's softmax(1 / out-degree): a negative out-degree makes the least likely sink
    weights = np.array([[0, 1.0, 0.2], [-1, 0, -1], [0.9, 0.1, 0]])
    assert topological_order(decode_graph(weights, 0.0, rng))[-1] == 2


def test_fit_searches_checkpoints_the_swarm_and_resumes_exactly(run_cli):
    _, straight = run_cli(
        "fit",
        "--model",
        "heterogeneous_swarms",
        "--model.collaborators",
        SCRIPTED,
        *SEARCH,
        "--trainer.max_epochs",
        "3",
        "--run_id",
        "straight",
    )
    swarm = straight.model.swarm
    assert swarm.iteration == 3 and len(swarm.score_history) == 3 and len(swarm.score_history[0]) == 3
    saved = torch.load(_checkpoint(straight), weights_only=False)
    assert saved["swarm"]["iteration"] == 3 and saved["state_dict"]["search_iterations"] == 3
    best = saved["state_dict"]["best_graph"]
    assert topological_order(best.numpy())[-1] == 1 and float(saved["state_dict"]["best_score"]) == 1.0

    # kill after 2 iterations, resume from the checkpoint: the same search as straight through
    common = ["fit", "--model", "heterogeneous_swarms", "--model.collaborators", SCRIPTED, *SEARCH]
    _, first = run_cli(
        *common, "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "0", "--run_id", "first"
    )
    assert first.model.swarm.iteration == 2
    _, resumed = run_cli(
        *common,
        "--trainer.max_epochs",
        "3",
        "--trainer.limit_val_batches",
        "0",
        "--ckpt_path",
        str(_checkpoint(first)),
        "--run_id",
        "resumed",
    )
    assert resumed.model.swarm.iteration == 3
    assert torch.equal(resumed.model.swarm.positions, swarm.positions)
    assert resumed.model.swarm.score_history == swarm.score_history

    # test runs the best graph from the checkpoint, without searching again
    _, tested = run_cli(
        "test",
        "--model",
        "heterogeneous_swarms",
        "--model.collaborators",
        SCRIPTED,
        *SEARCH,
        "--data.limit",
        "6",
        "--ckpt_path",
        str(_checkpoint(straight)),
    )
    assert torch.equal(tested.model.best_graph, best) and tested.model.swarm.iteration == 3
    for record in run_records(tested):
        assert record["answered_by"] == "oracle" and record["score"] == 1.0 and record["calls"] == 3
        assert record["details"]["order"][-1] == "oracle" and record["details"]["dev_score"] == 1.0


def test_test_on_tiny_models_searches_first(run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "heterogeneous_swarms",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.population",
        "2",
        "--model.max_iterations",
        "1",
        "--model.ratio",
        "0.5",
        "--model.max_new_tokens",
        "4",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
        "--data.dev_limit",
        "4",
    )
    assert code == 0 and bool(cli.model.calibrated) and cli.model.swarm.iteration == 1
    names = cli.model.collaborator_names
    for record in run_records(cli):
        assert record["calls"] == 3  # every node of the graph speaks once
        assert record["answered_by"] == record["details"]["order"][-1] and set(
            record["details"]["order"]
        ) == set(names)


@pytest.mark.slow
def test_ddp_ranks_take_the_same_search_decisions(run_cli, tmp_path):
    """Two gloo ranks score disjoint halves of dev; the reduced scores equal a one-process search."""
    args = [
        "--model.ratio",
        "1.0",
        "--data.batch_size",
        "2",
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_val_batches",
        "0",
    ]
    common = ["--model", "heterogeneous_swarms", "--model.collaborators", SCRIPTED_MIXED, *SEARCH, *args]
    _, single = run_cli("fit", *common, "--model.max_iterations", "2", "--run_id", "single")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    command = [
        sys.executable,
        "-m",
        "moco_lit",
        "fit",
        *common,
        "--model.max_iterations",
        "2",
        "--run_id",
        "ddp",
    ]
    command += [
        "--run_dir",
        str(tmp_path / "ddp_runs"),
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
    ]
    command += [
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--progress",
        "false",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (checkpoint,) = (tmp_path / "ddp_runs").rglob("last.ckpt")
    state = torch.load(checkpoint, weights_only=False)["swarm"]
    assert state["score_history"] == single.model.swarm.score_history
    assert torch.equal(state["positions"], single.model.swarm.positions)
