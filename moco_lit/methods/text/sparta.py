"""SPARTA: alignment by combat — collaborators duel, judge each other, and learn from the verdicts.

Each iteration every dev instruction is a duel: a player (in turn) meets the opponent closest in
rating, or a random one with probability ``random_match_prob``. Both answer; the other
collaborators judge the pair (A or B); Elo-like ratings move by a step that starts at
``initial_k`` and decays. A decided duel gives a (chosen, rejected) pair that trains both players
with DPO (LoRA; the reference is the adapter disabled). After ``num_iterations`` the collaborator
with the best dev score is tested. Jiang et al., "SPARTA ALIGNMENT: Collectively Aligning Multiple
Language Models through Combat" (NeurIPS 2025). MoCo: ``text_sparta``.
"""

from __future__ import annotations

import logging
import random

import torch

from moco_lit.errors import UserError
from moco_lit.generation import example_seed
from moco_lit.methods.base import Answer, Example
from moco_lit.methods.text.arena import AgentTrainedModule, elo_update, judge_pairs, k_factor
from moco_lit.methods.text.discussion import question_of

log = logging.getLogger(__name__)


class Sparta(AgentTrainedModule):
    """Args:
    num_iterations: combat-then-DPO iterations (one epoch each unless ``epochs_per_iteration``).
    random_match_prob: chance that a duel's opponent is random rather than the closest in rating.
    num_instructions: dev instructions duelled on per iteration (at most the dev split).
    initial_rating: every collaborator's starting rating.
    initial_k, min_k, decay_rate, decay_steps: the rating step ``max(min_k, initial_k *
        decay_rate ** (updates // decay_steps))``.
    scaling_factor: rating difference at which the stronger side is expected to win 10:1.
    beta: DPO's beta.
    """

    method_name = "sparta"
    level = "text"
    min_collaborators = 3  # two players and at least one judge
    iteration_attributes = (*AgentTrainedModule.iteration_attributes, "last_duels")

    def __init__(
        self,
        collaborators: list[str | dict],
        num_iterations: int = 3,
        random_match_prob: float = 0.2,
        num_instructions: int = 500,
        initial_rating: float = 100.0,
        initial_k: float = 10.0,
        min_k: float = 5.0,
        decay_rate: float = 0.9,
        decay_steps: int = 10,
        scaling_factor: float = 20.0,
        beta: float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, num_iterations=num_iterations, **kwargs)
        if not 0.0 <= random_match_prob <= 1.0:
            raise UserError(
                f"{self.method_name}.random_match_prob must be in [0, 1], got {random_match_prob}"
            )
        self.random_match_prob = random_match_prob
        self.num_instructions = num_instructions
        self.beta = beta
        self.last_duels: list[dict] = []  # the latest iteration's duels (ratings already moved)
        count = len(collaborators)
        self.register_buffer("ratings", torch.full((count,), float(initial_rating), dtype=torch.float64))
        self.register_buffer("rating_updates", torch.tensor(0))
        self.register_buffer("final_dev_scores", torch.full((count,), float("nan"), dtype=torch.float64))

    def models_to_train(self):
        # scripted collaborators (no weights) still duel and judge; only real models learn
        return {f"agent{i}": c for i, c in enumerate(self.collaborators) if c.model is not None}

    # -- one iteration of combat ----------------------------------------------------------------

    def choose_instructions(self, iteration: int, examples: list[Example]) -> list[Example]:
        """The instructions duelled on this iteration (SPARTA: the first ``num_instructions``)."""
        return examples[: self.num_instructions]

    def match(self, iteration: int, examples: list[Example]) -> list[tuple[int, int]]:
        """(player, opponent) per instruction: players in turn, opponents by reputation or at random."""
        count = len(self.collaborators)
        pairs = []
        for i, example in enumerate(examples):
            rng = random.Random(example_seed(self.hparams.seed, example["id"], "match", iteration))
            player = (i + iteration) % count
            others = [m for m in range(count) if m != player]
            if rng.random() < self.random_match_prob:
                opponent = rng.choice(others)
            else:
                opponent = min(others, key=lambda m: (abs(float(self.ratings[m] - self.ratings[player])), m))
            pairs.append((player, opponent))
        return pairs

    def duel(self, iteration: int, examples: list[Example]) -> list[dict]:
        """Both players answer (one batched call per model), the others judge; ratings update."""
        pairs = self.match(iteration, examples)
        answers: dict[tuple[int, int], str] = {}
        for model in range(len(self.collaborators)):
            mine = [(i, side) for i, pair in enumerate(pairs) for side in (0, 1) if pair[side] == model]
            if mine:
                outputs = self.ask(
                    model, [examples[i]["prompt"] for i, _ in mine], [examples[i]["id"] for i, _ in mine],
                    step=f"duel{iteration}",
                )  # fmt: skip
                answers.update({(i, side): o.text for (i, side), o in zip(mine, outputs)})
        judges = [[m for m in range(len(self.collaborators)) if m not in pair] for pair in pairs]
        outcomes = judge_pairs(
            self,
            judges,
            [question_of(e) for e in examples],
            [answers[(i, 0)] for i in range(len(examples))],
            [answers[(i, 1)] for i in range(len(examples))],
            [e["id"] for e in examples],
            step=f"judge{iteration}",
        )
        duels = []
        for i, ((a, b), outcome) in enumerate(zip(pairs, outcomes)):
            if answers[(i, 0)] == answers[(i, 1)]:
                outcome = 0.5  # identical answers: nothing to judge or learn
            k = k_factor(
                self.hparams.initial_k, self.hparams.min_k, self.hparams.decay_rate,
                self.hparams.decay_steps, int(self.rating_updates),
            )  # fmt: skip
            elo_update(self.ratings, a, b, outcome, k, self.hparams.scaling_factor)
            self.rating_updates += 1
            duels.append({"id": examples[i]["id"], "players": [a, b], "outcome_a": outcome, "k": k,
                          "answers": [answers[(i, 0)], answers[(i, 1)]]})  # fmt: skip
        self._example_cost.clear()
        return duels

    def build_iteration(self, iteration: int) -> dict[str, list[dict]]:
        examples = self.choose_instructions(iteration, self.dev_examples())
        duels = self.duel(iteration, examples)
        self.last_duels = duels
        by_id = {e["id"]: e for e in examples}
        items: dict[str, list[dict]] = {}
        for duel in duels:
            if duel["outcome_a"] == 0.5:
                continue
            winner = 0 if duel["outcome_a"] > 0.5 else 1
            chosen, rejected = duel["answers"][winner], duel["answers"][1 - winner]
            items[duel["id"]] = [
                {
                    "agent": f"agent{m}",
                    "prompt": by_id[duel["id"]]["prompt"],
                    "chosen": chosen,
                    "rejected": rejected,
                }
                for m in duel["players"]
                if f"agent{m}" in self.agents.agents
            ]
        names = self.collaborator_names
        log.info("%s ratings after iteration %d: %s", self.method_name, iteration,
                 {n: round(float(r), 2) for n, r in zip(names, self.ratings)})  # fmt: skip
        return items

    def items_loss(self, items: list[dict]) -> torch.Tensor:
        losses = [
            self.agent_dpo_loss(
                key,
                [x["prompt"] for x in own],
                [x["chosen"] for x in own],
                [x["rejected"] for x in own],
                self.beta,
            )
            for key in sorted({item["agent"] for item in items})
            for own in [[item for item in items if item["agent"] == key]]
        ]
        return torch.stack(losses).mean()

    # -- after training: the dev-best collaborator is tested ------------------------------------

    def finish_training(self) -> None:
        scores = self.score_on_dev(range(len(self.collaborators)), step="final-dev")
        self.final_dev_scores.copy_(torch.tensor(scores, dtype=torch.float64))

    @property
    def tested_model(self) -> int:
        return int(torch.nan_to_num(self.final_dev_scores, nan=-1.0).argmax())

    def collaborate(self, batch: list[Example]) -> list[Answer]:
        model = self.tested_model
        outputs = self.ask(model, [e["prompt"] for e in batch], [e["id"] for e in batch])
        names = self.collaborator_names
        ratings = {n: round(float(r), 3) for n, r in zip(names, self.ratings)}
        return [Answer(o.text, by=names[model], details={"ratings": ratings}) for o in outputs]

    def extra_epoch_metrics(self) -> dict[str, float]:
        return {f"rating/{n}": float(r) for n, r in zip(self.collaborator_names, self.ratings)}
