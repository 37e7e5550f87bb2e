"""Gradient-free search: a small, seeded, checkpointable particle swarm.

``ParticleSwarm`` maximises a score over real vectors with the ask/tell loop every search method
here uses: ``ask()`` gives the positions to evaluate, ``tell(scores)`` records them and moves the
swarm. A particle's velocity mixes inertia, a pull to its personal best, a pull to the global best
and a push away from the global worst (Model Swarms, Feng et al. 2024; Heterogeneous Swarms, Feng
et al. 2025), with randomly drawn, normalised weights and a decaying step length. A particle that
stopped improving restarts from its personal best; the search stops when the global best has not
improved for ``patience`` evaluations. All randomness comes from one seeded generator whose state
is part of ``state_dict()``, so a search resumed from a checkpoint continues exactly as if it had
never stopped. Methods searching over weights (not vectors) can use ``velocity_weights`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from moco_lit.errors import UserError

ArrayLike = torch.Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]]


@dataclass(frozen=True)
class SwarmConfig:
    """A particle swarm's settings, the one spelling every swarm method takes as ``swarm:``
    (defaults: MoCo's ``NumericSwarm``, which all of MoCo's swarms share).

    Args:
        inertia, cognitive, social, repel: the velocity's pull to keep its direction, to the
            particle's best, to the global best, and its push from the global worst.
        repel_term: use the push from the global worst at all.
        weight_randomness: scale each of the four weights by a uniform draw before normalising.
        step_length, step_length_factor, minimum_step_length: the first step, its decay per
            iteration and its floor.
        patience: stop when the global best has not improved for this many evaluations.
        restart_patience: restart a particle that has not improved for this many evaluations.
        starting_velocity: ``random`` (uniform in [-1, 1)) or ``zero``.
        init_low, init_high: the box random starting positions are drawn in.

    MoCo's names (``cognitive_coeff``/``cognitive_coefficient``, ``repel_term_flag``,
    ``starting_velocity_mode``...) are mapped to these only by ``moco_lit.convert``.
    """

    inertia: float = 0.2
    cognitive: float = 0.3
    social: float = 0.4
    repel: float = 0.05
    repel_term: bool = True
    weight_randomness: bool = True
    step_length: float = 0.5
    step_length_factor: float = 0.95
    minimum_step_length: float = 0.1
    patience: int = 5
    restart_patience: int = 3
    starting_velocity: Literal["random", "zero"] = "random"
    init_low: float = -1.0
    init_high: float = 1.0

    def __post_init__(self) -> None:
        if self.starting_velocity not in ("random", "zero"):
            raise UserError(f"swarm.starting_velocity must be random or zero, got {self.starting_velocity!r}")


@dataclass(frozen=True)
class VelocityWeights:
    """Normalised weights of one velocity update (they sum to 1)."""

    inertia: float
    cognitive: float
    social: float
    repel: float


class ParticleSwarm:
    """Particle swarm optimisation (maximisation) over ``population`` vectors of ``dimension`` floats.

    Args:
        dimension: length of a position vector (ignored when ``initial_positions`` is given).
        population: number of particles (ignored when ``initial_positions`` is given).
        seed: seeds initial positions, velocities and every random weight.
        initial_positions: start here instead of uniformly in ``[init_low, init_high]``
            (e.g. one particle per collaborator).
        config: coefficients; keyword arguments override single fields of it.
    """

    def __init__(
        self,
        dimension: int = 0,
        population: int = 5,
        seed: int = 0,
        initial_positions: ArrayLike | None = None,
        config: SwarmConfig | None = None,
        **overrides: Any,
    ) -> None:
        self.config = SwarmConfig(**{**asdict(config or SwarmConfig()), **overrides})
        self.generator = torch.Generator().manual_seed(seed)
        if initial_positions is not None:
            positions = _as_matrix(initial_positions)
        else:
            if dimension < 1 or population < 1:
                raise ValueError(
                    f"a swarm needs dimension >= 1 and population >= 1, got {dimension}, {population}"
                )
            low, high = self.config.init_low, self.config.init_high
            positions = low + (high - low) * self._rand(population, dimension)
        self.positions = positions
        if self.config.starting_velocity == "zero":
            self.velocities = torch.zeros_like(positions)
        else:
            self.velocities = self._uniform(positions.shape)
        self.personal_best = positions.clone()
        self.personal_best_scores = torch.full((len(positions),), -math.inf, dtype=torch.float64)
        self.global_best = positions[0].clone()
        self.global_best_score = -math.inf
        self.global_worst = positions[0].clone()
        self.global_worst_score = math.inf
        self.score_history: list[list[float]] = []  # one row of scores per evaluation
        self.best_history: list[float] = []
        self.step_length = self.config.step_length
        self.iteration = 0
        self.stopped = False

    @property
    def population(self) -> int:
        return self.positions.shape[0]

    @property
    def dimension(self) -> int:
        return self.positions.shape[1]

    # -- the ask / tell loop ------------------------------------------------------------------

    def ask(self) -> torch.Tensor:
        """The positions to evaluate now, one row per particle (a copy)."""
        return self.positions.clone()

    def tell(self, scores: ArrayLike) -> bool:
        """Record the scores of the positions from ``ask()`` and move the swarm; True = stop now."""
        values = torch.as_tensor(np.asarray(scores, dtype=np.float64)).reshape(-1)
        if len(values) != self.population:
            raise ValueError(f"got {len(values)} scores for {self.population} particles")
        self._record(values)
        self.iteration += 1
        if self._should_stop():
            self.stopped = True
            return True
        for particle in range(self.population):
            self._update(particle)
        self.step_length = max(
            self.step_length * self.config.step_length_factor, self.config.minimum_step_length
        )
        return False

    def _record(self, values: torch.Tensor) -> None:
        self.score_history.append(values.tolist())
        improved = values > self.personal_best_scores
        self.personal_best[improved] = self.positions[improved]
        self.personal_best_scores = torch.where(improved, values, self.personal_best_scores)
        best, worst = int(values.argmax()), int(values.argmin())
        if values[best] > self.global_best_score:
            self.global_best_score = float(values[best])
            self.global_best = self.positions[best].clone()
        if values[worst] < self.global_worst_score:
            self.global_worst_score = float(values[worst])
            self.global_worst = self.positions[worst].clone()
        self.best_history.append(self.global_best_score)

    def particle_history(self, particle: int) -> list[float]:
        return [row[particle] for row in self.score_history]

    def _should_stop(self) -> bool:
        return self._stalled(self.best_history, self.config.patience)

    def _update(self, particle: int) -> None:
        """A stalled particle restarts (and sits this iteration out); any other one moves."""
        if self._stalled(self.particle_history(particle), self.config.restart_patience):
            self._restart(particle)
        else:
            self._move(particle)

    @staticmethod
    def _stalled(history: Sequence[float], patience: int) -> bool:
        """True when the last value does not beat the best of the ``patience - 1`` before it."""
        if patience < 1 or len(history) <= patience:
            return False
        window = history[-patience:]
        return window[-1] <= max(window[:-1])

    def _restart(self, particle: int) -> None:
        self.positions[particle] = self.personal_best[particle]
        self.velocities[particle] = self._uniform((self.dimension,))

    def _move(self, particle: int) -> None:
        w = self.velocity_weights()
        x = self.positions[particle]
        self.velocities[particle] = (
            w.inertia * self.velocities[particle]
            + w.cognitive * (self.personal_best[particle] - x)
            + w.social * (self.global_best - x)
            + w.repel * (x - self.global_worst)
        )
        self.positions[particle] = x + self.step_length * self.velocities[particle]

    def velocity_weights(self) -> VelocityWeights:
        """Draw the (normalised) weights of one velocity update from the swarm's generator."""
        config = self.config
        if config.weight_randomness:  # each weight scaled by its own uniform draw in [0, 1)
            r = self._rand(4)
        else:
            r = torch.ones(4, dtype=torch.float64)
        raw = [
            config.inertia * float(r[0]),
            config.cognitive * float(r[1]),
            config.social * float(r[2]),
            config.repel * float(r[3]) if config.repel_term else 0.0,
        ]
        total = sum(raw) or 1.0
        return VelocityWeights(*(value / total for value in raw))

    def _uniform(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        """Uniform in [-1, 1) from the swarm's generator."""
        return self._rand(*shape) * 2 - 1

    def _rand(self, *shape: int) -> torch.Tensor:
        """Uniform draws in [0, 1): the one source of the swarm's randomness (row-major order),
        so a test can feed it the very draws another implementation consumes."""
        return torch.rand(*shape, generator=self.generator, dtype=torch.float64)

    # -- checkpointing ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the search exactly: plain tensors, floats and lists."""
        return {
            "config": asdict(self.config),
            "positions": self.positions.clone(),
            "velocities": self.velocities.clone(),
            "personal_best": self.personal_best.clone(),
            "personal_best_scores": self.personal_best_scores.clone(),
            "global_best": self.global_best.clone(),
            "global_best_score": self.global_best_score,
            "global_worst": self.global_worst.clone(),
            "global_worst_score": self.global_worst_score,
            "score_history": [list(row) for row in self.score_history],
            "best_history": list(self.best_history),
            "step_length": self.step_length,
            "iteration": self.iteration,
            "stopped": self.stopped,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = SwarmConfig(**state["config"])
        for name in (
            "positions",
            "velocities",
            "personal_best",
            "personal_best_scores",
            "global_best",
            "global_worst",
        ):
            setattr(self, name, torch.as_tensor(state[name], dtype=torch.float64).clone())
        self.global_best_score = float(state["global_best_score"])
        self.global_worst_score = float(state["global_worst_score"])
        self.score_history = [list(row) for row in state["score_history"]]
        self.best_history = list(state["best_history"])
        self.step_length = float(state["step_length"])
        self.iteration = int(state["iteration"])
        self.stopped = bool(state["stopped"])
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8))


def _as_matrix(values: ArrayLike) -> torch.Tensor:
    matrix = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise ValueError(
            f"initial_positions must be a non-empty (population, dimension) matrix, got {tuple(matrix.shape)}"
        )
    return matrix.clone()
