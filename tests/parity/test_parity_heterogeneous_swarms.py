"""heterogeneous_swarms against MoCo's ``text_heterogeneous_swarms``: the same swarm moves, the
same graphs decoded from it, scored on all of dev with the same calls, and the same fresh test
graph decoded from the best particle, with the same outputs.

Randomness is injected on both sides: the swarm's uniform draws (``Draws``, as in the weight
swarm tests) and the graph decoding's choices (``Chooser``: one scripted uniform number per choice,
turned into an option by the choice's own probabilities). MoCo's process pool runs in-process so
that its scripted calls are seen.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from tests.parity.moco_harness import Ask, assert_same, assert_same_calls, boxed, run_moco, run_moco_lit
from tests.parity.test_discussion import BELIEFS, DEV_RIGHT, TASK
from tests.parity.test_parity_weight import Draws, ScriptedRandom

MODELS = ["alpha", "beta", "gamma"]


def policy(ask: Ask) -> str:
    """A node answers its own belief, or the most common answer among it and what it reads."""
    if ask.split == "dev":
        belief = ask.record["output"] if ask.example in DEV_RIGHT[ask.model] else "0"
    else:
        belief = BELIEFS[ask.model][ask.example]
    votes = Counter([re.search(r"\\boxed\{([^}]*)\}", c).group(1) for c in ask.quoted_contents] + [belief])
    top = max(votes.values())
    return boxed(belief if votes[belief] == top else min(a for a in votes if votes[a] == top))


class Chooser:
    """``choice(options, p)`` by inverse CDF of the next scripted uniform number, as numpy does."""

    def __init__(self) -> None:
        self.draws = Draws(seed=1)

    def choice(self, options, p):
        cdf = np.cumsum(p)
        index = int(np.searchsorted(cdf / cdf[-1], self.draws.next(), side="right"))
        return options[min(index, len(options) - 1)]


class NumpyWithChooser:
    """MoCo's module-level ``np``, with ``np.random`` replaced by a :class:`Chooser`."""

    def __init__(self, chooser: Chooser) -> None:
        self.random = chooser

    def __getattr__(self, name):
        return getattr(np, name)


class InProcessPool:
    def __init__(self, processes: int) -> None:
        pass

    def starmap(self, function, arguments):
        return [function(*args) for args in arguments]

    def close(self) -> None:
        pass

    def join(self) -> None:
        pass


SEARCH = {"population": 3, "max_iterations": 3}


@pytest.mark.parametrize("velocity", ["random", "zero"])
def test_heterogeneous_swarms_matches_moco(run_cli, tmp_path, monkeypatch, velocity):
    from model_collaboration.method import text_heterogeneous_swarms as moco_module
    from model_collaboration.utils import numeric_swarm

    from moco_lit.methods.text import heterogeneous_swarms as lit_module
    from moco_lit.search import ParticleSwarm

    moco_graphs, moco_scores, moco_swarms, moco_chooser = [], [], [], Chooser()
    monkeypatch.setattr(numeric_swarm, "random", ScriptedRandom(Draws()))

    class RecordingSwarm(numeric_swarm.NumericSwarm):
        def update(self, scores):
            moco_scores.append(list(scores))
            moco_swarms.append(self)
            return super().update(scores)

    def moco_decode(matrix, top_p=0):
        moco_graphs.append(moco_module.graph_decode.__wrapped__(matrix, top_p).astype(int).tolist())
        return np.array(moco_graphs[-1], dtype=float)

    moco_decode.__wrapped__ = moco_module.graph_decode
    patches = {
        "Pool": InProcessPool,
        "np": NumpyWithChooser(moco_chooser),
        "NumericSwarm": RecordingSwarm,
        "graph_decode": moco_decode,
    }
    hyper = {**SEARCH, "starting_velocity_mode": velocity, "temperature": 0.7, "top_p": 0.9}
    moco = run_moco(monkeypatch, tmp_path, "text_heterogeneous_swarms", TASK, MODELS, policy, hyper, patches)

    lit_draws, lit_chooser, lit_graphs = Draws(), Chooser(), []
    monkeypatch.setattr(ParticleSwarm, "_rand", lambda self, *shape: lit_draws.tensor(*shape))
    monkeypatch.setattr(lit_module.HeterogeneousSwarms, "graph_rng", lambda self, particle: lit_chooser)
    real_decode = lit_module.decode_graph

    def lit_decode(weights, top_p, rng):
        lit_graphs.append(real_decode(weights, top_p, rng).tolist())
        return np.array(lit_graphs[-1])

    monkeypatch.setattr(lit_module, "decode_graph", lit_decode)
    lit = run_moco_lit(
        run_cli,
        tmp_path,
        "heterogeneous_swarms",
        TASK,
        MODELS,
        policy,
        "--model.temperature",
        "0.7",  # MoCo's: sampled, so every graph asks its models again
        "--model.swarm.starting_velocity",  # MoCo's starting_velocity_mode
        velocity,
        *(f"--model.{name}={value}" for name, value in SEARCH.items()),
    )
    swarm = lit.module.swarm
    assert_same("dev scores per iteration", moco_scores, swarm.score_history)
    assert len({tuple(map(tuple, g)) for g in lit_graphs}) > 1  # the search does try different graphs
    assert_same("decoded graphs (dev iterations, then the test graph)", moco_graphs, lit_graphs)
    assert moco_chooser.draws.used == lit_chooser.draws.used
    # the best particle the test graph is decoded from (MoCo's log holds it after its decoding
    # zeroed some entries in place)
    np.testing.assert_allclose(swarm.global_best.numpy(), moco_swarms[-1].global_best.numpy(), atol=1e-6)
    assert_same_calls(moco.calls, lit.calls)
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score


def test_best_evaluated_test_graph_reuses_the_searched_graph(run_cli, tmp_path, monkeypatch):
    """The option: no fresh decoding at test, the graph the search scored best runs instead."""
    from moco_lit.methods.text import heterogeneous_swarms as lit_module

    decoded = []
    real_decode = lit_module.decode_graph
    monkeypatch.setattr(lit_module, "decode_graph", lambda *a: decoded.append(1) or real_decode(*a))
    lit = run_moco_lit(
        run_cli,
        tmp_path,
        "heterogeneous_swarms",
        TASK,
        MODELS,
        policy,
        "--model.test_graph",
        "best_evaluated",
        *(f"--model.{name}={value}" for name, value in SEARCH.items()),
    )
    assert len(decoded) == 3 * lit.module.swarm.iteration  # dev candidates only
    searched = lit.module.best_graph.numpy()
    edges = [[MODELS[i], MODELS[j]] for i, j in zip(*np.nonzero(searched))]
    assert all(r["details"]["edges"] == edges for r in lit.records)
