"""SLM-MUX: each model samples several answers; the most self-consistent model's majority answer wins.

Every collaborator draws ``samples_per_model`` sampled answers per question. A model's confidence
on the question is the share of its extracted answers that agree with its most frequent one; the
model with the highest confidence gives its majority answer. Ties between models go to the better
dev model (``tie: dev-based``), the earlier model in the recipe (``model-order``) or a seeded
random one (``random``). Free-form answers agree when equal by value ("21" and "21.0"); MoCo
compares the extracted text (``answer_grouping: text``). Wang et al., "SLM-MUX: Orchestrating Small Language Models for
Reasoning" (ICLR 2026). MoCo: ``text_slm_mux``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from moco_lit.errors import UserError
from moco_lit.evaluation import VOTING_TASK_TYPES, answer_key
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule, Example


@dataclass
class ModelVote:
    """One model's samples on one question, reduced to its majority answer and its confidence."""

    model: int
    answer: str | None
    output: str
    confidence: float
    counts: dict[str, int]


class SlmMux(CollaborationModule):
    """Args:
    samples_per_model: sampled answers per model and question (the method's temperature, at least 0.7).
    tie: how a tie between equally confident models is broken: ``dev-based``, ``model-order``, ``random``.
    answer_grouping: which free-form answers agree: ``value`` (equal after normalising, numbers by
        value) or ``text`` (MoCo's: the extracted answer as written).
    """

    method_name = "slm_mux"
    report_label_args = ("tie",)
    level = "text"
    supported_task_types = VOTING_TASK_TYPES  # those whose spec has a vote key

    def __init__(
        self,
        collaborators: list[str | dict],
        samples_per_model: int = 5,
        tie: Literal["dev-based", "model-order", "random"] = "dev-based",
        answer_grouping: Literal["value", "text"] = "value",
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if samples_per_model < 1:
            raise UserError(f"slm_mux.samples_per_model must be >= 1, got {samples_per_model}")
        if tie not in ("dev-based", "model-order", "random"):
            raise UserError(f"slm_mux.tie must be dev-based, model-order or random, got {tie!r}")
        self.samples_per_model = samples_per_model
        self.tie = tie
        self.answer_grouping = answer_grouping
        self.needs_calibration = tie == "dev-based"

    def collaborate(self, batch: Batch) -> list[Answer]:
        ids, prompts = batch.ids, batch.prompts
        votes: list[list[ModelVote]] = [[] for _ in batch]
        for model in range(len(self.collaborators)):
            samples = self.ask_samples(model, prompts, ids, self.samples_per_model, step="mux")
            for i, outputs in enumerate(samples):
                votes[i].append(self.model_vote(model, [o.text for o in outputs], batch[i]))
        return [self.choose(example, model_votes) for example, model_votes in zip(batch, votes)]

    def answer_of(self, output: str, example: Example) -> str | None:
        return answer_key(example["task_type"], output, example["record"], by=self.answer_grouping)

    def model_vote(self, model: int, outputs: list[str], example: Example) -> ModelVote:
        answers = [self.answer_of(output, example) for output in outputs]
        counts = Counter(answer for answer in answers if answer)
        if not counts:
            return ModelVote(model, None, outputs[0], 0.0, {})
        top = max(counts.values())
        tied = sorted(answer for answer, count in counts.items() if count == top)
        # drawn through this module's `random` (not self.rng) so differential tests can script it
        rng = random.Random(self.seed_of(example["id"], model, "majority"))
        answer = tied[0] if len(tied) == 1 else rng.choice(tied)
        output = next(o for o, a in zip(outputs, answers) if a == answer)
        return ModelVote(model, answer, output, top / sum(counts.values()), dict(counts))

    def choose(self, example: Example, votes: list[ModelVote]) -> Answer:
        best = max(vote.confidence for vote in votes)
        tied = [vote for vote in votes if abs(vote.confidence - best) < 1e-9]
        winner = tied[0] if len(tied) == 1 else self.break_tie(example, tied)
        names = self.collaborator_names
        return Answer(
            winner.output,
            by=names[winner.model],
            details={
                "confidence": {names[v.model]: round(v.confidence, 6) for v in votes},
                "majority": {names[v.model]: v.answer for v in votes},
                "votes": {names[v.model]: v.counts for v in votes},
                "tie": len(tied) > 1,
            },
        )

    def break_tie(self, example: Example, tied: list[ModelVote]) -> ModelVote:
        if self.tie == "dev-based":
            rank = {model: position for position, model in enumerate(self.dev_ranking())}
            return min(tied, key=lambda vote: rank[vote.model])
        if self.tie == "random":
            return random.Random(self.seed_of(example["id"], "tie")).choice(tied)
        return tied[0]  # model-order: votes are in the recipe's order
