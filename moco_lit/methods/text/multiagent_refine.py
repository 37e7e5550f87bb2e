"""Multiagent refine: every collaborator answers, then each rewrites its answer after reading the others'.

Round 1 is each model alone; in each of the ``round`` − 1 later rounds a model sees its own previous
answer and every other model's, and writes a refined one. The collaborator with the best dev score
then summarises the last round's answers into the final answer. Multiagent debate, Du et al. 2023
("Improving Factuality and Reasoning in Language Models through Multiagent Debate"). MoCo:
``text_multiagent_refine``.
"""

from __future__ import annotations

from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule
from moco_lit.methods.text.discussion import (
    SUMMARY_TEMPLATE,
    Example,
    Texts,
    ask_each,
    bullet_list,
    check_template,
    first_round,
    question_of,
    summarise,
    transcript,
)

REFINE_TEMPLATE = (
    "You and several other assistants are answering the same question together. Read their answers, "
    "then improve your own: keep what is right, fix what is wrong.\n\n"
    "Question: {question}\n\n"
    "Your previous answer: {own}\n\n"
    "The other assistants' answers:\n{others}\n\n"
    "Write your improved answer to the question."
)


class MultiagentRefine(CollaborationModule):
    """Args:
    round: rounds of answering, the first one included (MoCo's ``round``).
    refine_template: prompt of a refinement turn; fields ``{question}``, ``{own}``, ``{others}``.
    summary_template: prompt of the dev-best summariser; fields ``{question}``, ``{answers}``.
    """

    method_name = "multiagent_refine"
    level = "text"
    needs_calibration = True

    def __init__(
        self,
        collaborators: list[str | dict],
        round: int = 3,  # MoCo's name (it shadows the builtin here only), kept so configs carry over
        refine_template: str = REFINE_TEMPLATE,
        summary_template: str = SUMMARY_TEMPLATE,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if round < 1:
            raise UserError(f"multiagent_refine.round must be >= 1, got {round}")
        check_template(self.method_name, "refine_template", refine_template, {"question", "own", "others"})
        check_template(self.method_name, "summary_template", summary_template, {"question", "answers"})
        self.rounds = round
        self.refine_template = refine_template
        self.summary_template = summary_template

    def collaborate(self, batch: Batch) -> list[Answer]:
        rounds = [first_round(self, batch)]
        for number in range(2, self.rounds + 1):
            rounds.append(self.refine(batch, rounds[-1], step=f"round{number}"))
        finals = summarise(self, self.summary_template, batch, rounds[-1])
        summariser = self.collaborator_names[self.dev_best]
        return [
            Answer(final, by=summariser, details={**log, "summariser": summariser})
            for final, log in zip(finals, transcript(self, rounds, batch))
        ]

    def refine(self, batch: list[Example], previous: Texts, step: str) -> Texts:
        """Each model rewrites its answer to every example after reading the others' (one call each)."""
        ids = Batch.of(batch).ids
        models = range(len(self.collaborators))
        prompts = [
            [
                self.refine_template.format(
                    question=question_of(example),
                    own=previous[m][i],
                    others=bullet_list([previous[k][i] for k in models if k != m]),
                )
                for i, example in enumerate(batch)
            ]
            for m in models
        ]
        return ask_each(self, prompts, [ids] * len(prompts), step)
