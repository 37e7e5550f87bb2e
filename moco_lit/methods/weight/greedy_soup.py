"""Greedy soup: average models one at a time, keeping each only if the soup does not get worse.

Score every collaborator alone on dev and sort them best first; the soup starts as the best model.
Each next model is tried in a uniform average with the models kept so far and stays in the soup if
the average's dev score is at least the soup's. One epoch of ``fit`` tries one model. The final
soup (uniform weights over the kept models) is tested. Wortsman et al., "Model soups", ICML 2022.
MoCo: ``weight_greedy_soup``.
"""

from __future__ import annotations

from typing import Any

from moco_lit.methods.core.merge_search import MergeSearch, Recipe
from moco_lit.search import GreedySelection


class GreedySoup(MergeSearch):
    """Greedy soup over the collaborators (full weights; LoRA collaborators count as W + B·A).

    Args:
        merge_rule: the registered merge rule a soup is made with (``linear``: the model soup;
            ``task_arithmetic``, ``ties``, ``dare_ties`` merge the members' task vectors against
            ``base_model_name``; see ``moco_lit.merging.MERGE_RULES``).
        merge_rule_args: the rule's parameters (e.g. ``{density: 0.5}`` for ``ties``).
        base_model_name: the base of the task-vector rules (None with LoRA collaborators: their base).
    """

    method_name = "greedy_soup"

    def __init__(
        self,
        collaborators: list[str | dict],
        merge_rule: str = "linear",
        merge_rule_args: dict[str, Any] | None = None,
        base_model_name: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        self.choose_rule(merge_rule, merge_rule_args, base_model_name)
        self.selection: GreedySelection | None = None

    def needs_dev_scores(self) -> bool:
        return True

    def start_search(self) -> None:
        ranking = self.dev_ranking()
        self.selection = GreedySelection(ranking, float(self.dev_scores[ranking[0]]))
        self.best = {"recipe": self.soup(self.selection.selected), "score": self.selection.best_score}

    def soup(self, members: list[int]) -> Recipe:
        weights = [0.0] * len(self.inputs)
        for member in members:
            weights[member] = 1.0 / len(members)
        return self.rule_recipe(weights)

    def propose(self) -> list[Recipe]:
        members = self.selection.ask()
        return [] if members is None else [self.soup(members)]

    def tell(self, recipes: list[Recipe], scores: list[float]) -> None:
        for score in scores:
            kept = self.selection.tell(score)
            added = self.collaborator_names[
                self.selection.selected[-1] if kept else self.selection.skipped[-1]
            ]
            self.note(f"greedy_soup: {'kept' if kept else 'skipped'} {added} (soup dev score {score:.4f})")
        self.finished = self.selection.finished

    def final_recipe(self) -> Recipe:
        return self.soup(self.selection.selected)

    def search_state(self) -> dict[str, Any]:
        return {"selection": self.selection.state_dict() if self.selection else None}

    def load_search_state(self, state: dict[str, Any]) -> None:
        if state.get("selection") is not None:
            self.selection = GreedySelection([], 0.0)
            self.selection.load_state_dict(state["selection"])
