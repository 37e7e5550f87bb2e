"""Gradient-free search with ask/tell loops and checkpointable state.

- ``swarm``: the seeded particle swarm over real vectors (:class:`ParticleSwarm`, its settings
  :class:`SwarmConfig`), shared by the text-level and weight-level swarm methods.
- ``weights``: the optimisers of the weight-level searches (:class:`GreedySelection`,
  :class:`CoefficientSwarm`, :class:`BoundedSwarm`, :class:`NevergradSearch`).
"""

from __future__ import annotations

from moco_lit.search.swarm import ParticleSwarm, SwarmConfig, VelocityWeights
from moco_lit.search.weights import (
    RESTART_COOLDOWN,
    BoundedSwarm,
    CoefficientSwarm,
    GreedySelection,
    NevergradSearch,
    SwarmRules,
    nevergrad_available,
)

__all__ = [
    "RESTART_COOLDOWN",
    "BoundedSwarm",
    "CoefficientSwarm",
    "GreedySelection",
    "NevergradSearch",
    "ParticleSwarm",
    "SwarmConfig",
    "SwarmRules",
    "VelocityWeights",
    "nevergrad_available",
]
