"""ParticleSwarm: it improves a toy objective, is seeded, and resumes exactly from its state dict."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from moco_lit.search import ParticleSwarm, SwarmConfig


def sphere(positions: torch.Tensor) -> list[float]:
    """Maximum 0 at (0.5, ..., 0.5)."""
    return (-((positions - 0.5) ** 2).sum(dim=1)).tolist()


def run(swarm: ParticleSwarm, iterations: int) -> list[float]:
    for _ in range(iterations):
        if swarm.tell(sphere(swarm.ask())):
            break
    return swarm.best_history


def test_the_swarm_improves_a_toy_objective():
    swarm = ParticleSwarm(dimension=4, population=8, seed=1, patience=0, restart_patience=0)
    history = run(swarm, 40)
    assert history[-1] > history[0]
    assert all(b >= a for a, b in zip(history, history[1:]))  # the global best never gets worse
    assert history[-1] > -0.05
    assert swarm.global_best_score == pytest.approx(max(max(row) for row in swarm.score_history))


def test_same_seed_same_search_and_other_seed_differs():
    a = run(ParticleSwarm(dimension=3, population=5, seed=7), 6)
    b = run(ParticleSwarm(dimension=3, population=5, seed=7), 6)
    c = run(ParticleSwarm(dimension=3, population=5, seed=8), 6)
    assert a == b and a != c


def test_state_round_trip_gives_identical_continuation():
    straight = ParticleSwarm(dimension=5, population=4, seed=3, patience=0)
    run(straight, 3)
    state = copy.deepcopy(straight.state_dict())
    run(straight, 4)

    resumed = ParticleSwarm(dimension=5, population=4, seed=999)  # different seed: the state wins
    resumed.load_state_dict(state)
    run(resumed, 4)
    assert resumed.iteration == straight.iteration == 7
    assert torch.equal(resumed.positions, straight.positions)
    assert torch.equal(resumed.global_best, straight.global_best)
    assert resumed.best_history == straight.best_history


def test_patience_stops_a_search_that_no_longer_improves():
    swarm = ParticleSwarm(dimension=2, population=3, seed=0, patience=2)
    stops = [swarm.tell([1.0, 0.0, 0.5]) for _ in range(3)]
    assert stops == [False, False, True]
    assert swarm.stopped


def test_initial_positions_from_numpy_and_a_repel_only_config():
    start = np.array([[0.0, 0.0], [1.0, 1.0]])
    swarm = ParticleSwarm(initial_positions=start, seed=0, config=SwarmConfig(starting_velocity="zero"))
    assert swarm.population == 2 and swarm.dimension == 2
    assert torch.equal(swarm.ask(), torch.tensor(start))
    weights = swarm.velocity_weights()
    assert sum(vars(weights).values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="scores"):
        swarm.tell([1.0])
