"""Mixture of Agents: layers of proposers, then one aggregator writes the answer from all proposals.

Layer 1: every collaborator proposes an answer alone. Each of the ``round`` − 1 later layers
proposes again with all of the previous layer's proposals given as references. The collaborator
with the best dev score aggregates the last layer's proposals into the final answer.
Wang et al. 2024, "Mixture-of-Agents Enhances Large Language Model Capabilities". MoCo: ``text_moa``.
"""

from __future__ import annotations

from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule
from moco_lit.methods.text.discussion import (
    Example,
    Texts,
    ask_each,
    check_template,
    first_round,
    numbered_list,
    question_of,
    transcript,
)

AGGREGATE_TEMPLATE = (
    "Below are several responses to a question, written by different models. Judge them critically: "
    "some may be wrong or biased. Do not just copy one of them; write a single response that is more "
    "accurate and complete than any of them, clearly organised and correct.\n\n"
    "Responses:\n{references}\n\n"
    "Question: {question}"
)


class Moa(CollaborationModule):
    """Args:
    round: proposer layers, the first one included (MoCo's ``round``).
    aggregate_template: prompt of later proposers and of the aggregator; fields ``{question}``,
        ``{references}``.
    """

    method_name = "moa"
    level = "text"
    needs_calibration = True

    def __init__(
        self,
        collaborators: list[str | dict],
        round: int = 1,  # MoCo's name (it shadows the builtin here only), kept so configs carry over
        aggregate_template: str = AGGREGATE_TEMPLATE,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if round < 1:
            raise UserError(f"moa.round must be >= 1, got {round}")
        check_template(self.method_name, "aggregate_template", aggregate_template, {"question", "references"})
        self.rounds = round
        self.aggregate_template = aggregate_template

    def collaborate(self, batch: Batch) -> list[Answer]:
        layers = [first_round(self, batch, step="layer1")]
        count = len(self.collaborators)
        for number in range(2, self.rounds + 1):
            prompts = self.with_references(batch, layers[-1])
            layers.append(ask_each(self, [prompts] * count, [batch.ids] * count, step=f"layer{number}"))
        finals = self.ask(self.dev_best, self.with_references(batch, layers[-1]), batch.ids, step="aggregate")
        aggregator = self.collaborator_names[self.dev_best]
        return [
            Answer(output.text, by=aggregator, details={**entry, "aggregator": aggregator})
            for output, entry in zip(finals, transcript(self, layers, batch))
        ]

    def with_references(self, batch: list[Example], proposals: Texts) -> list[str]:
        """The question with every proposal of the layer as a numbered reference (same for every model)."""
        return [
            self.aggregate_template.format(
                question=question_of(example),
                references=numbered_list([texts[i] for texts in proposals], label="Response"),
            )
            for i, example in enumerate(batch)
        ]
