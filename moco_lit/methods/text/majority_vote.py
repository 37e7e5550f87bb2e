"""Majority vote: every collaborator answers; the most frequent extracted answer wins.

Answers are compared after extraction and normalisation (the letter of a multiple-choice answer,
the normalised final answer otherwise). A tie is broken at random (seeded per example) or, with
``tie: dev-based``, in favour of the tied answer given by the collaborator with the best dev
score: the tied answers in the order they were first given, the models that gave each in recipe
order, and the first of those with the best dev score wins (MoCo's order). With
``samples_per_model`` above 1 each collaborator contributes that many sampled answers
(self-consistency when there is a single collaborator). MoCo: ``text_majority_vote``.

Answers with nothing to extract (no option letter) do not vote by default: in MoCo they count as
one more answer, "None", which can outvote a real answer and then scores 0 although no model
contradicted it. ``count_unparsed: true`` restores MoCo's vote. Free-form answers vote by value
("21" and "21.0" together); MoCo compares the extracted text, so they split their votes:
``answer_grouping: text`` restores that.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Literal

from moco_lit.errors import UserError
from moco_lit.evaluation import VOTING_TASK_TYPES, answer_key
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule


class MajorityVote(CollaborationModule):
    """Args:
    tie: how to break a tie between the most frequent answers: ``random`` or ``dev-based``.
    samples_per_model: answers each collaborator contributes (sampled when above 1).
    count_unparsed: let unparsed answers vote as one more answer, None (MoCo's vote); when None
        wins, the output is the first unparsed response.
    answer_grouping: which free-form answers vote together: ``value`` (equal after normalising,
        numbers by value) or ``text`` (MoCo's: the extracted answer as written).
    """

    method_name = "majority_vote"
    report_label_args = ("tie",)
    level = "text"
    supported_task_types = VOTING_TASK_TYPES  # those whose spec has a vote key

    def __init__(
        self,
        collaborators: list[str | dict],
        tie: Literal["random", "dev-based"] = "random",
        samples_per_model: int = 1,
        count_unparsed: bool = False,
        answer_grouping: Literal["value", "text"] = "value",
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if samples_per_model < 1:
            raise UserError(f"majority_vote.samples_per_model must be >= 1, got {samples_per_model}")
        self.tie = tie
        self.samples_per_model = samples_per_model
        self.count_unparsed = count_unparsed
        self.answer_grouping = answer_grouping
        self.needs_calibration = tie == "dev-based"

    def collaborate(self, batch: Batch) -> list[Answer]:
        ids, prompts = batch.ids, batch.prompts
        candidates: list[list[tuple[int, str]]] = [[] for _ in batch]  # (model, output) per example
        for model in range(len(self.collaborators)):
            if self.samples_per_model == 1:
                per_example = [[o] for o in self.ask(model, prompts, ids)]
            else:
                per_example = self.ask_samples(model, prompts, ids, self.samples_per_model)
            for i, outputs in enumerate(per_example):
                candidates[i].extend((model, output.text) for output in outputs)
        return [self.vote(example, options) for example, options in zip(batch, candidates)]

    def answer_of(self, output: str, example: dict) -> str | None:
        return answer_key(example["task_type"], output, example["record"], by=self.answer_grouping)

    def vote(self, example: dict, options: list[tuple[int, str]]) -> Answer:
        answers = [(model, output, self.answer_of(output, example)) for model, output in options]
        counts = Counter(answer for _, _, answer in answers if answer is not None or self.count_unparsed)
        details = {
            "votes": dict(counts),
            "answers": {self.collaborator_names[m]: a for m, _, a in answers}
            if self.samples_per_model == 1
            else None,
        }
        if not counts:
            model, output, _ = answers[0]
            return Answer(output, by=self.collaborator_names[model], details={**details, "winner": None})
        top = max(counts.values())
        tied = [answer for answer in counts if counts[answer] == top]
        winner = tied[0] if len(tied) == 1 else self.break_tie(example, tied, answers)
        model, output = next((m, o) for m, o, a in answers if a == winner)
        voters = sorted({self.collaborator_names[m] for m, _, a in answers if a == winner})
        return Answer(output, by=voters, details={**details, "winner": winner, "tie": len(tied) > 1})

    def break_tie(
        self, example: dict, tied: list[str | None], answers: list[tuple[int, str, str | None]]
    ) -> str | None:
        if self.tie == "dev-based":
            # MoCo's order: tied answers as first given, each one's voters in recipe order; the
            # first of them with the best dev score decides
            dev = [-1.0 if math.isnan(s) else s for s in self.dev_scores.tolist()]
            voters = [(m, a) for answer in tied for m, _, a in answers if a == answer]
            best = max(dev[m] for m, _ in voters)
            return next(a for m, a in voters if dev[m] == best)
        # drawn through this module's `random` (not self.rng) so differential tests can script it
        return random.Random(self.seed_of(example["id"], "tie")).choice(
            sorted(tied, key=lambda a: (a is None, a or ""))
        )
