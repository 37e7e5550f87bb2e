"""ExPO: extrapolate from a weaker model through a stronger one, past it.

merged = target + alpha·(target − source). ``mode``: ``worst_to_best`` (source = the collaborator
with the lowest dev score, target = the highest), ``topk_bottomk`` (target = uniform average of the
top ``k`` by dev score, source = of the bottom ``k``), ``pairs`` (collaborators listed as source,
target, source, target...; with several pairs the one chosen by ``pair_selection`` on dev). With
``alpha_mode: optimized`` each of ``alpha_candidates`` is merged and scored on dev and the best
is kept. Every merge here is a linear combination of the collaborators' weights. Zheng et al.,
"Model Extrapolation Expedites Alignment", ACL 2025. MoCo: ``weight_expo``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from moco_lit.errors import UserError
from moco_lit.merging import extrapolate
from moco_lit.methods.core.merge_search import MergeSearch, Recipe


class Expo(MergeSearch):
    """Args:
    mode: ``worst_to_best``, ``topk_bottomk`` or ``pairs``.
    alpha: extrapolation strength when ``alpha_mode`` is ``fixed``.
    alpha_mode: ``fixed`` or ``optimized`` (pick from ``alpha_candidates`` on dev).
    alpha_candidates: the alphas tried by ``optimized``.
    k: models averaged on each side in ``topk_bottomk`` (at most half the collaborators).
    pair_selection: with several pairs, pick by the target's dev score (``dpo_score``), the
        target's gain over its source (``improvement``) or the source's score (``sft_score``).
    """

    method_name = "expo"
    report_label_args = ("mode",)
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        mode: Literal["worst_to_best", "topk_bottomk", "pairs"] = "worst_to_best",
        alpha: float = 0.3,
        alpha_mode: Literal["fixed", "optimized"] = "fixed",
        alpha_candidates: list[float] | None = None,
        k: int = 1,
        pair_selection: Literal["dpo_score", "improvement", "sft_score"] = "dpo_score",
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if mode == "pairs" and len(collaborators) % 2:
            raise UserError("expo mode pairs needs collaborators as source, target, source, target, ...")
        self.mode = mode
        self.alpha = alpha
        self.alpha_mode = alpha_mode
        self.alpha_candidates = list(alpha_candidates or [0.1, 0.2, 0.3, 0.4, 0.5])
        self.k = k
        self.pair_selection = pair_selection
        self.chosen_alpha: float | None = None

    def needs_dev_scores(self) -> bool:
        return self.mode != "pairs" or len(self.inputs) > 2

    def endpoints(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Coefficients over the collaborators of the target and of the source."""
        count = len(self.inputs)
        target, source = torch.zeros(count, dtype=torch.float64), torch.zeros(count, dtype=torch.float64)
        if self.mode == "pairs":
            pair = self.chosen_pair()
            source[2 * pair], target[2 * pair + 1] = 1.0, 1.0
            return target, source
        ranking = self.dev_ranking()
        k = max(1, min(self.k, count // 2)) if self.mode == "topk_bottomk" else 1
        target[ranking[:k]] = 1.0 / k
        source[ranking[-k:]] = 1.0 / k
        return target, source

    def chosen_pair(self) -> int:
        pairs = len(self.inputs) // 2
        if pairs == 1:
            return 0
        scores = self.dev_scores.tolist()
        rule = {
            "dpo_score": lambda p: scores[2 * p + 1],
            "improvement": lambda p: scores[2 * p + 1] - scores[2 * p],
            "sft_score": lambda p: scores[2 * p],
        }[self.pair_selection]
        return max(range(pairs), key=lambda p: (rule(p), -p))

    def recipe(self, alpha: float) -> Recipe:
        target, source = self.endpoints()
        return {"op": "linear", "weights": extrapolate(target, source, alpha).tolist(), "alpha": alpha}

    def propose(self) -> list[Recipe]:
        return [self.recipe(a) for a in self.alpha_candidates] if self.alpha_mode == "optimized" else []

    def tell(self, recipes: list[Recipe], scores: list[float]) -> None:
        if recipes:  # the first best alpha wins a tie, as in MoCo
            self.chosen_alpha = recipes[max(range(len(scores)), key=lambda i: (scores[i], -i))]["alpha"]
        else:
            self.chosen_alpha = self.alpha
        self.finished = True

    def final_recipe(self) -> Recipe:
        return self.recipe(self.chosen_alpha if self.chosen_alpha is not None else self.alpha)

    def search_state(self) -> dict[str, Any]:
        return {"chosen_alpha": self.chosen_alpha}

    def load_search_state(self, state: dict[str, Any]) -> None:
        self.chosen_alpha = state.get("chosen_alpha")
