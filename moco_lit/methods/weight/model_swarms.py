"""Model Swarms: collaborators as particles that move through weight space, guided by dev scores.

Particle i starts as collaborator i with a velocity toward another collaborator. Each iteration
scores every particle on dev, then moves it: velocity = randomly weighted inertia + pull to its
personal best + pull to the global best + push away from the global worst; position += step ×
velocity, the step length decaying; a stalled particle restarts from its personal best at rest
(and still moves), at most once per three updates; the search stops after ``max_iterations`` or
when the global best has not improved over the last ``patience − 1`` iterations (MoCo's rules). Every
position is a linear combination of the collaborators, so the swarm's state is one coefficient
vector per particle and a particle is materialised by a linear merge (of the LoRA tensors when
every collaborator is a LoRA adapter, as MoCo's fast merge, else of full weights). The global best
is tested. Feng et al., "Model Swarms", ICML 2025. MoCo: ``weight_model_swarms``.
"""

from __future__ import annotations

from typing import Any, Literal

from moco_lit.errors import UserError
from moco_lit.merging import is_lora
from moco_lit.methods.core.merge_search import MergeSearch, Recipe
from moco_lit.search import CoefficientSwarm, SwarmConfig, SwarmRules


class ModelSwarms(MergeSearch):
    """Args:
    max_iterations: search iterations (one ``fit`` epoch each).
    merge: ``auto`` merges LoRA tensors when every collaborator is a LoRA adapter, else full
        weights; ``full`` always merges full weights (W + B·A for adapters).
    swarm: the particle swarm's settings (``moco_lit.search.SwarmConfig``, MoCo's defaults), e.g.
        ``swarm: {cognitive: 0.5, repel_term: false}``; particles start at the collaborators, so
        ``starting_velocity``, ``init_low`` and ``init_high`` do not apply.
    swarm_rules: when to stop and restart. ``model_swarms`` (MoCo's weight swarm, the default) or
        ``numeric`` (MoCo's ``NumericSwarm``, which moco_lit used before: stop after one update
        without a new global best, a restarted particle sits its update out); see
        ``moco_lit.search.CoefficientSwarm``.
    merge_rule: the registered merge rule a particle is materialised with (``linear``, MoCo's;
        ``task_arithmetic``, ``ties``, ``dare_ties`` take the collaborators' task vectors against
        ``base_model_name``; see ``moco_lit.merging.MERGE_RULES``). Any rule other than ``linear``
        merges full weights.
    merge_rule_args: the rule's parameters (e.g. ``{density: 0.5}`` for ``ties``).
    base_model_name: the base of the task-vector rules (None with LoRA collaborators: their base).
    """

    method_name = "model_swarms"
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        max_iterations: int = 10,
        merge: Literal["auto", "full"] = "auto",
        swarm: SwarmConfig = SwarmConfig(),
        swarm_rules: SwarmRules = "model_swarms",
        merge_rule: str = "linear",
        merge_rule_args: dict[str, Any] | None = None,
        base_model_name: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        self.max_iterations = max_iterations
        self.merge = merge
        self.choose_rule(merge_rule, merge_rule_args, base_model_name)
        if (swarm.starting_velocity, swarm.init_low, swarm.init_high) != ("random", -1.0, 1.0):
            raise UserError(
                "model_swarms' particles start at the collaborators: swarm.starting_velocity, "
                "init_low and init_high do not apply; leave them out"
            )
        self.swarm_config = swarm
        self.swarm_rules = swarm_rules
        self.swarm: CoefficientSwarm | None = None

    def merge_space(self) -> Literal["full", "adapters"]:
        models = [c.model for c in self.collaborators[: len(self.inputs)]]
        adapters = self.merge == "auto" and self.rule.name == "linear" and all(is_lora(m) for m in models)
        return "adapters" if adapters else "full"

    def start_search(self) -> None:
        self.swarm = CoefficientSwarm(
            len(self.inputs), seed=self.hparams.seed, rules=self.swarm_rules, config=self.swarm_config
        )

    def propose(self) -> list[Recipe]:
        return [self.rule_recipe(position.tolist()) for position in self.swarm.ask()]

    def tell(self, recipes: list[Recipe], scores: list[float]) -> None:
        stop = self.swarm.tell(scores)
        self.finished = stop or self.swarm.iteration >= self.max_iterations

    def search_state(self) -> dict[str, Any]:
        return {"swarm": self.swarm.state_dict() if self.swarm else None}

    def load_search_state(self, state: dict[str, Any]) -> None:
        if state.get("swarm") is not None:
            self.start_search()
            self.swarm.load_state_dict(state["swarm"])
