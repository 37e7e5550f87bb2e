"""LoraHub: learn scalar weights that combine several LoRA adapters of one base model.

The merged adapter is Σ w_i·A_i, Σ w_i·B_i (each adapter's tensors scaled by its weight). The
weights, bounded to ±``lora_weight_bound``, maximise the dev score on the first
``lorahub_dev_samples`` dev examples minus ``regular_coef`` × mean |w| (an L1 pull toward small
weights), found by a gradient-free optimiser with a budget of ``max_inference_step`` evaluations:
nevergrad's NGOpt when nevergrad is installed (MoCo's choice), else a particle swarm clipped to the
bounds. As in MoCo, NGOpt's recommendation is merged and tested, the models read the bare prompt
(no chat template) and answer in up to 256 tokens. Huang et al., "LoraHub", COLM 2024. MoCo:
``weight_lorahub``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from moco_lit.collaborators import Prompt, RawText
from moco_lit.errors import UserError
from moco_lit.merging import is_lora
from moco_lit.methods.core.merge_search import MergeSearch, Recipe
from moco_lit.methods.core.module import Example
from moco_lit.search import BoundedSwarm, NevergradSearch, nevergrad_available


class LoraHub(MergeSearch):
    """Args:
    lorahub_dev_samples: dev examples the weights are searched on.
    max_inference_step: evaluation budget (candidates scored on dev).
    lora_weight_bound: each weight stays within ±bound.
    regular_coef: weight of the L1 penalty (mean |w|) subtracted from the dev score.
    optimizer: ``auto`` (nevergrad if installed, else swarm), ``nevergrad`` or ``swarm``.
    population: candidates per iteration of the swarm (nevergrad asks one per iteration).
    final_weights: ``recommendation`` (MoCo) merges what NGOpt recommends at the end of its budget;
        ``best_evaluated`` the evaluated point with the best objective (the swarm always does this).
    prompt: ``raw`` (MoCo) feeds the bare prompt text, with only the start token the tokenizer adds
        itself; ``chat`` renders it with the model's chat template.
    max_new_tokens: generation budget on dev and test (MoCo's LoraHub: 256).
    """

    method_name = "lorahub"

    def __init__(
        self,
        collaborators: list[str | dict],
        lorahub_dev_samples: int = 5,
        max_inference_step: int = 20,
        lora_weight_bound: float = 1.5,
        regular_coef: float = 0.05,
        optimizer: Literal["auto", "nevergrad", "swarm"] = "auto",
        population: int = 5,
        final_weights: Literal["recommendation", "best_evaluated"] = "recommendation",
        prompt: Literal["raw", "chat"] = "raw",
        max_new_tokens: int = 256,
        temperature: float = 0.0,  # MoCo's LoraHub decodes greedily
        **kwargs,
    ) -> None:
        super().__init__(collaborators, max_new_tokens=max_new_tokens, temperature=temperature, **kwargs)
        for name, value, allowed in (
            ("final_weights", final_weights, ("recommendation", "best_evaluated")),
            ("prompt", prompt, ("raw", "chat")),
        ):
            if value not in allowed:
                raise UserError(f"lorahub.{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.dev_examples = lorahub_dev_samples
        self.budget = max_inference_step
        self.bound = lora_weight_bound
        self.regular_coef = regular_coef
        self.optimizer_name = optimizer
        self.population = population
        self.final_weights = final_weights
        self.optimizer: NevergradSearch | BoundedSwarm | None = None
        self.evaluations = 0

    def merge_space(self) -> Literal["full", "adapters"]:
        not_lora = [c.name for c in self.collaborators[: len(self.inputs)] if not is_lora(c.model)]
        if not_lora:
            raise UserError(f"lorahub combines LoRA adapters; {not_lora[0]!r} is not one (give base+adapter)")
        return "adapters"

    def prompt_of(self, example: Example) -> Prompt:
        return RawText(example["prompt"]) if self.hparams.prompt == "raw" else example["prompt"]

    def uses_nevergrad(self) -> bool:
        return self.optimizer_name == "nevergrad" or (self.optimizer_name == "auto" and nevergrad_available())

    def start_search(self) -> None:
        dimension, seed = len(self.inputs), self.hparams.seed
        if self.uses_nevergrad():
            self.optimizer = NevergradSearch(dimension, self.budget, self.bound, seed=seed)
        else:
            population = max(1, min(self.population, self.budget))
            self.optimizer = BoundedSwarm(dimension, population, self.bound, seed=seed, patience=0)

    def propose(self) -> list[Recipe]:
        remaining = self.budget - self.evaluations
        candidates = self.optimizer.ask()[: max(remaining, 0)]
        return [{"op": "linear", "weights": row.tolist()} for row in candidates]

    def objective(self, recipe: Recipe, score: float) -> float:
        weights = recipe["weights"]
        return score - self.regular_coef * sum(abs(w) for w in weights) / len(weights)

    def tell(self, recipes: list[Recipe], scores: list[float]) -> None:
        objectives = [self.objective(r, s) for r, s in zip(recipes, scores)]
        self.evaluations += len(recipes)
        if isinstance(self.optimizer, BoundedSwarm) and len(objectives) < self.optimizer.population:
            self.finished = True  # the budget ran out inside this iteration
        elif recipes:
            self.optimizer.tell(torch.tensor(objectives, dtype=torch.float64))
        self.finished = self.finished or self.evaluations >= self.budget

    def final_recipe(self) -> Recipe:
        if self.final_weights == "recommendation" and isinstance(self.optimizer, NevergradSearch):
            if self.optimizer.history:
                return {"op": "linear", "weights": self.optimizer.recommendation()}
        # the best regularised objective, as MoCo's optimiser minimises loss + penalty
        scored = [(self.objective(h["recipe"], h["score"]), i) for i, h in enumerate(self.history)]
        if not scored:
            raise RuntimeError("lorahub has no weights yet: run its search first")
        return self.history[max(scored, key=lambda item: (item[0], -item[1]))[1]]["recipe"]

    def search_state(self) -> dict[str, Any]:
        state = self.optimizer.state_dict() if self.optimizer else None
        return {"optimizer": state, "evaluations": self.evaluations}

    def load_search_state(self, state: dict[str, Any]) -> None:
        self.evaluations = int(state["evaluations"])
        if state.get("optimizer") is not None:
            self.start_search()
            self.optimizer.load_state_dict(state["optimizer"])
