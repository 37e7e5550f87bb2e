"""Optimisers of the weight-level searches, each with an ask/tell loop and a plain-dict state.

- :class:`GreedySelection`: forward selection over a fixed order (greedy soup).
- :class:`CoefficientSwarm`: ``moco_lit.search.ParticleSwarm`` over coefficient vectors on the
  collaborators (Model Swarms), restarting a stalled particle at rest, as MoCo's weight swarm does.
- :class:`BoundedSwarm`: the same swarm whose positions are clipped to a box (LoraHub without
  nevergrad).
- :class:`NevergradSearch`: an adaptor for nevergrad (optional extra) whose state is the list of
  evaluated points; restoring replays them into a freshly seeded optimiser.

Every state is plain tensors, numbers and lists, so it goes into the Lightning checkpoint and a
search resumed from it continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from moco_lit.errors import UserError
from moco_lit.search import ParticleSwarm


class GreedySelection:
    """Walk ``order``; keep each item whose addition scores at least the current best.

    ``ask()`` gives the selection to try next (``None`` when done); ``tell(score)`` keeps or skips.
    """

    def __init__(self, order: list[int], start_score: float) -> None:
        self.order = list(order)
        self.selected = self.order[:1]
        self.best_score = float(start_score)
        self.position = 1
        self.skipped: list[int] = []

    @property
    def finished(self) -> bool:
        return self.position >= len(self.order)

    def ask(self) -> list[int] | None:
        return None if self.finished else [*self.selected, self.order[self.position]]

    def tell(self, score: float) -> bool:
        """Record the score of ``ask()``'s selection; True when the new item was kept."""
        item = self.order[self.position]
        self.position += 1
        # MoCo keeps a model that ties the current soup: averaging in more models rarely hurts
        if score >= self.best_score:
            self.selected.append(item)
            self.best_score = float(score)
            return True
        self.skipped.append(item)
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            "order": list(self.order),
            "selected": list(self.selected),
            "best_score": self.best_score,
            "position": self.position,
            "skipped": list(self.skipped),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order = list(state["order"])
        self.selected = list(state["selected"])
        self.best_score = float(state["best_score"])
        self.position = int(state["position"])
        self.skipped = list(state["skipped"])


class CoefficientSwarm(ParticleSwarm):
    """Particles are coefficient vectors over the collaborators (particle i starts as model i).

    The starting velocity of particle i points to a randomly chosen other model (``e_j − e_i``),
    and a stalled particle restarts at its personal best with zero velocity, as in Model Swarms.
    """

    def __init__(self, models: int, seed: int = 0, **overrides: Any) -> None:
        super().__init__(initial_positions=torch.eye(models, dtype=torch.float64), seed=seed, **overrides)
        velocities = torch.zeros_like(self.positions)
        for particle in range(models):
            if models > 1:
                partner = int(torch.randint(models - 1, (1,), generator=self.generator))
                partner += partner >= particle  # any model but itself
                velocities[particle] = self.positions[partner] - self.positions[particle]
        self.velocities = velocities

    def _restart(self, particle: int) -> None:
        self.positions[particle] = self.personal_best[particle]
        self.velocities[particle] = torch.zeros(self.dimension, dtype=torch.float64)


class BoundedSwarm(ParticleSwarm):
    """A particle swarm whose candidates are clipped to ``[-bound, bound]``; particle 0 starts at 0."""

    def __init__(
        self, dimension: int, population: int, bound: float, seed: int = 0, **overrides: Any
    ) -> None:
        super().__init__(
            dimension=dimension,
            population=population,
            seed=seed,
            init_low=-bound,
            init_high=bound,
            **overrides,
        )
        self.positions[0] = 0.0  # the starting point of LoraHub: no adapter at all
        self.personal_best = self.positions.clone()
        self.bound = bound

    def ask(self) -> torch.Tensor:
        return super().ask().clamp(-self.bound, self.bound)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "bound": self.bound}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.bound = float(state["bound"])


def nevergrad_available() -> bool:
    try:
        import nevergrad  # noqa: F401
    except ImportError:
        return False
    return True


class NevergradSearch:
    """One nevergrad optimiser (``NGOpt`` by default) maximising a score over a box.

    The state is the list of (point, score) already evaluated; a restored search replays them into
    an optimiser built with the same seed, which asks the same points again (nevergrad is
    deterministic given its random state), so it continues where it stopped.
    """

    def __init__(
        self,
        dimension: int,
        budget: int,
        bound: float,
        seed: int = 0,
        optimizer: str = "NGOpt",
        init: list[float] | None = None,
    ) -> None:
        if not nevergrad_available():
            raise UserError("the nevergrad optimiser needs the nevergrad package: pip install nevergrad")
        self.settings = {
            "dimension": dimension,
            "budget": budget,
            "bound": bound,
            "seed": seed,
            "optimizer": optimizer,
            "init": list(init) if init is not None else [0.0] * dimension,
        }
        self.history: list[tuple[list[float], float]] = []
        self._build()

    def _build(self) -> None:
        import nevergrad as ng
        import numpy as np

        s = self.settings
        parametrization = ng.p.Array(
            init=np.asarray(s["init"], dtype=float), lower=-s["bound"], upper=s["bound"]
        )
        parametrization.random_state = np.random.RandomState(s["seed"])
        self._optimizer = ng.optimizers.registry[s["optimizer"]](
            parametrization=parametrization, budget=s["budget"]
        )
        self._pending: Any = None
        for _point, score in self.history:
            candidate = self._optimizer.ask()
            self._optimizer.tell(candidate, -score)

    @property
    def finished(self) -> bool:
        return len(self.history) >= self.settings["budget"]

    def ask(self) -> torch.Tensor:
        """One point to evaluate, as a (1, dimension) matrix."""
        self._pending = self._optimizer.ask()
        return torch.as_tensor(self._pending.value, dtype=torch.float64).reshape(1, -1)

    def tell(self, scores: Any) -> bool:
        score = float(torch.as_tensor(scores, dtype=torch.float64).reshape(-1)[0])
        self._optimizer.tell(self._pending, -score)
        self.history.append(([float(v) for v in self._pending.value], score))
        return self.finished

    @property
    def best(self) -> tuple[list[float], float]:
        return max(self.history, key=lambda item: item[1]) if self.history else ([], -math.inf)

    def state_dict(self) -> dict[str, Any]:
        return {"settings": dict(self.settings), "history": [[list(p), s] for p, s in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.settings = dict(state["settings"])
        self.history = [(list(p), float(s)) for p, s in state["history"]]
        self._build()
