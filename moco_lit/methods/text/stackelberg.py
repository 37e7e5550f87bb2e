"""Stackelberg SPARTA: a leader picks the instructions the followers duel on, then SPARTA runs.

The leader moves first: each iteration it keeps the ``leader_fraction`` of dev instructions that
are worst for the followers, by ``leader_type``: ``difficulty`` (most collaborators fail it in
the dev table: the followers' weak spots) or ``contested`` (the last iteration's judges were the
least decided on it: the preferences that are hardest to learn; the first iteration falls back to
difficulty). The followers then duel, are judged and DPO-tuned exactly as in SPARTA.
MoCo: ``text_sparta_stackelberg`` (adversarial instruction selection; kept to these two rules).
"""

from __future__ import annotations

import math
from typing import Literal

from moco_lit.errors import UserError
from moco_lit.methods.base import Example
from moco_lit.methods.text.sparta import Sparta


class Stackelberg(Sparta):
    """Args:
    leader_type: ``difficulty`` or ``contested`` (see the module docstring).
    leader_fraction: share of the dev instructions the leader keeps each iteration.
    (every SPARTA argument applies to the followers)
    """

    method_name = "stackelberg"
    level = "text"
    iteration_attributes = (*Sparta.iteration_attributes, "leader_choice")
    uses_dev_table = True  # the difficulty leader reads it

    def __init__(
        self,
        collaborators: list[str | dict],
        leader_type: Literal["difficulty", "contested"] = "difficulty",
        leader_fraction: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if not 0.0 < leader_fraction <= 1.0:
            raise UserError(f"stackelberg.leader_fraction must be in (0, 1], got {leader_fraction}")
        if leader_type not in ("difficulty", "contested"):
            raise UserError(f"stackelberg.leader_type must be difficulty or contested, got {leader_type!r}")
        self.leader_type = leader_type
        self.leader_fraction = leader_fraction
        self.leader_choice: list[str] = []  # dev ids the leader kept for the latest iteration

    def leader_scores(self, examples: list[Example]) -> dict[str, float]:
        """How much the leader wants each instruction duelled on (higher first)."""
        if self.leader_type == "contested" and self.last_duels:
            return {d["id"]: -abs(d["outcome_a"] - 0.5) for d in self.last_duels}
        index = self.dev_table.index_of()
        scores = self.dev_table.score_matrix()
        difficulty = {}
        for example in examples:
            row = [v for v in scores[index[example["id"]]].tolist() if not math.isnan(v)]
            difficulty[example["id"]] = 1.0 - (sum(row) / len(row) if row else 0.0)
        return difficulty

    def choose_instructions(self, iteration: int, examples: list[Example]) -> list[Example]:
        pool = examples[: self.num_instructions]
        wanted = self.leader_scores(pool)
        keep = max(1, round(len(pool) * self.leader_fraction))
        # stable: among equally wanted instructions the dev order decides
        ranked = sorted(range(len(pool)), key=lambda i: -wanted.get(pool[i]["id"], -math.inf))
        chosen = sorted(ranked[:keep])
        self.leader_choice = [pool[i]["id"] for i in chosen]
        return [pool[i] for i in chosen]
