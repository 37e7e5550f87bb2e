"""Optimisers of the weight-level searches, each with an ask/tell loop and a plain-dict state.

- :class:`GreedySelection`: forward selection over a fixed order (greedy soup).
- :class:`CoefficientSwarm`: ``ParticleSwarm`` (``search.swarm``) over coefficient vectors on the
  collaborators (Model Swarms), with the stop and restart rules of MoCo's weight swarm.
- :class:`BoundedSwarm`: the same swarm whose positions are clipped to a box (LoraHub without
  nevergrad).
- :class:`NevergradSearch`: an adaptor for nevergrad (optional extra) whose state is the list of
  evaluated points; restoring replays them into a freshly seeded optimiser.

Every state is plain tensors, numbers and lists, so it goes into the Lightning checkpoint and a
search resumed from it continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from moco_lit.errors import UserError
from moco_lit.search.swarm import ParticleSwarm


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


SwarmRules = Literal["model_swarms", "numeric"]

RESTART_COOLDOWN = 3
"""Updates after a restart during which Model Swarms does not restart the particle again."""


class CoefficientSwarm(ParticleSwarm):
    """Particles are coefficient vectors over the collaborators (particle i starts as model i).

    The starting velocity of particle i points to a randomly chosen other model (``e_j − e_i``).
    ``rules`` sets when the search stops and when a particle restarts (at its personal best, at rest):

    - ``model_swarms`` (MoCo's weight swarm): stop when the global best equals its value
      ``patience − 1`` updates earlier; restart a particle whose score is not above its score
      ``restart_patience − 1`` updates earlier, unless it restarted in the last
      ``RESTART_COOLDOWN`` updates; a restarted particle still moves in that update.
    - ``numeric`` (MoCo's ``NumericSwarm``, as DARE-TIES' search): stop when the global best did
      not improve in the last update; restart a particle whose score is not above the best of its
      previous ``restart_patience − 1``, and let it sit that update out.

    A patience of 0 turns that rule off.
    """

    def __init__(
        self, models: int, seed: int = 0, rules: SwarmRules = "model_swarms", **overrides: Any
    ) -> None:
        if rules not in ("model_swarms", "numeric"):
            raise UserError(f"swarm rules must be model_swarms or numeric, got {rules!r}")
        super().__init__(initial_positions=torch.eye(models, dtype=torch.float64), seed=seed, **overrides)
        self.rules = rules
        self.cooldown = [0] * models
        velocities = torch.zeros_like(self.positions)
        for particle in range(models):
            if models > 1:
                velocities[particle] = self.positions[self._partner(particle)] - self.positions[particle]
        self.velocities = velocities

    def _partner(self, particle: int) -> int:
        """A uniformly drawn model other than ``particle`` (the starting velocity's target)."""
        partner = int(torch.randint(self.population - 1, (1,), generator=self.generator))
        return partner + (partner >= particle)

    def _should_stop(self) -> bool:
        if self.rules == "numeric":
            return super()._should_stop()
        return _lagging(self.best_history, self.config.patience)

    def _update(self, particle: int) -> None:
        if self.rules == "numeric":
            return super()._update(particle)
        stalled = _lagging(self.particle_history(particle), self.config.restart_patience)
        if stalled and self.cooldown[particle] == 0:
            self._restart(particle)
            self.cooldown[particle] = RESTART_COOLDOWN
        else:
            self.cooldown[particle] = max(0, self.cooldown[particle] - 1)
        self._move(particle)

    def _restart(self, particle: int) -> None:
        self.positions[particle] = self.personal_best[particle]
        self.velocities[particle] = torch.zeros(self.dimension, dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rules": self.rules, "cooldown": list(self.cooldown)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        # checkpoints written before the rules were an option ran the numeric ones
        self.rules = state.get("rules", "numeric")
        self.cooldown = list(state.get("cooldown", [0] * self.population))


def _lagging(history: Sequence[float], patience: int) -> bool:
    """True when the last value is not above the one ``patience − 1`` entries before it."""
    return patience >= 1 and len(history) > patience and history[-1] <= history[-patience]


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

    def recommendation(self) -> list[float]:
        """The optimiser's own pick (what ``minimize`` returns); it need not be an evaluated point."""
        return [float(v) for v in self._optimizer.provide_recommendation().value]

    @property
    def best(self) -> tuple[list[float], float]:
        return max(self.history, key=lambda item: item[1]) if self.history else ([], -math.inf)

    def state_dict(self) -> dict[str, Any]:
        return {"settings": dict(self.settings), "history": [[list(p), s] for p, s in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.settings = dict(state["settings"])
        self.history = [(list(p), float(s)) for p, s in state["history"]]
        self._build()
