"""DARE-TIES: merge task vectors (model − base) after random drops and a sign election.

Every collaborator's task vector against ``base_model_name`` is DARE-sparsified (each entry kept
with probability ``density``, seeded, the rest rescaled to the task vector's L1 norm), optionally
trimmed to its largest ``ties_density`` share, scaled by the model's weight; per entry the sign
with the larger total mass wins and the agreeing entries are summed (MoCo's merge; TIES' disjoint
mean on request) and added to the base.
``mode: average`` uses equal weights; ``optimized`` searches softmax(weights) with a particle swarm
on dev. Yu et al. 2024 (DARE), Yadav et al. 2023 (TIES). MoCo: ``weight_dare_ties``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from moco_lit.errors import UserError
from moco_lit.merging import DareRescale
from moco_lit.methods.core.merge_search import MergeSearch, Recipe
from moco_lit.search import ParticleSwarm, SwarmConfig


class DareTies(MergeSearch):
    """Args:
    base_model_name: the model the task vectors are taken against (a hub id or folder). None with
        LoRA collaborators on one base: that base.
    mode: ``average`` (equal weights, no search) or ``optimized`` (particle swarm over weights).
    density: DARE's keep probability (1.0: no drop, MoCo's default).
    ties_density: share of each task vector TIES keeps by magnitude (1.0: no trim, as MoCo).
    disjoint_mean: False (MoCo 1.1.2's native merge) sums the agreeing weighted entries; True
        divides them by the weight of the agreeing models (the TIES paper's disjoint mean).
    dare_rescale: how DARE rescales the kept entries: ``l1`` (MoCo's: the task vector keeps its L1
        norm) or ``inverse_density`` (the DARE paper's 1/density, which keeps each expectation).
    population, max_iterations: the particles and iterations of ``optimized``.
    swarm: the particle swarm's settings (``moco_lit.search.SwarmConfig``, MoCo's defaults), e.g.
        ``swarm: {cognitive: 0.5, starting_velocity: zero}``.
    merge_rule: the registered merge rule the weights are merged with: ``dare_ties`` (the method's,
        set by the arguments above) or another one of ``moco_lit.merging.MERGE_RULES`` (e.g.
        ``ties`` or ``task_arithmetic``), set by ``merge_rule_args``.
    merge_rule_args: the parameters of a ``merge_rule`` other than ``dare_ties``.
    """

    method_name = "dare_ties"
    report_label_args = ("mode",)

    def __init__(
        self,
        collaborators: list[str | dict],
        base_model_name: str | None = None,
        mode: Literal["average", "optimized"] = "average",
        density: float = 1.0,
        ties_density: float = 1.0,
        disjoint_mean: bool = False,
        dare_rescale: DareRescale = "l1",
        population: int = 5,
        max_iterations: int = 5,
        swarm: SwarmConfig = SwarmConfig(),
        merge_rule: str = "dare_ties",
        merge_rule_args: dict[str, Any] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        for name, value in (("density", density), ("ties_density", ties_density)):
            if not 0.0 < value <= 1.0:
                raise UserError(f"dare_ties.{name} must be in (0, 1], got {value}")
        if merge_rule == "dare_ties" and merge_rule_args:
            raise UserError(
                "dare_ties.merge_rule_args is for another merge_rule; the dare_ties rule is set by "
                "density, ties_density, disjoint_mean and dare_rescale"
            )
        self.choose_rule(merge_rule, merge_rule_args, base_model_name)
        self.mode = mode
        self.max_iterations = max_iterations
        self.swarm_config = swarm
        self.population = population
        self.swarm: ParticleSwarm | None = None
        self.finished = mode == "average"

    def recipe(self, weights: list[float]) -> Recipe:
        if self.rule.name != "dare_ties":
            return self.rule_recipe([float(w) for w in weights])
        settings = self.hparams
        return {
            "op": "dare_ties",
            "weights": [float(w) for w in weights],
            "density": settings.density,
            "ties_density": settings.ties_density,
            "disjoint_mean": settings.disjoint_mean,
            "dare_rescale": settings.dare_rescale,
            "seed": settings.seed,
        }

    def write_merge(self, recipe: Recipe) -> None:
        # recipes checkpointed before dare_rescale existed used the DARE paper's rescaling
        super().write_merge({"dare_rescale": "inverse_density", **recipe})

    def start_search(self) -> None:
        if self.mode == "optimized":
            self.swarm = ParticleSwarm(
                dimension=len(self.inputs),
                population=self.population,
                seed=self.hparams.seed,
                config=self.swarm_config,
            )

    def propose(self) -> list[Recipe]:
        return [self.recipe(torch.softmax(p, dim=0).tolist()) for p in self.swarm.ask()]

    def tell(self, recipes: list[Recipe], scores: list[float]) -> None:
        stop = self.swarm.tell(scores)
        self.finished = stop or self.swarm.iteration >= self.max_iterations

    def final_recipe(self) -> Recipe:
        if self.mode == "average":
            count = len(self.inputs)
            return self.recipe([1.0 / count] * count)
        if self.swarm is None or not math.isfinite(self.swarm.global_best_score):
            raise RuntimeError("dare_ties has no optimised weights yet: run its search first")
        return self.recipe(torch.softmax(self.swarm.global_best, dim=0).tolist())

    def search_state(self) -> dict[str, Any]:
        return {"swarm": self.swarm.state_dict() if self.swarm else None}

    def load_search_state(self, state: dict[str, Any]) -> None:
        if state.get("swarm") is not None:
            self.start_search()
            self.swarm.load_state_dict(state["swarm"])
