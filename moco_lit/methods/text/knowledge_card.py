"""Knowledge card: collaborators write background knowledge; the dev-best model answers with all of it.

Every collaborator writes a short knowledge paragraph (a "card") for the question. The collaborator
with the best dev score then answers the question with every card in its context; with
``exclude_self`` it reads only the other collaborators' cards (and writes none itself: MoCo generates
that card and throws it away). Feng et al. 2024, "Knowledge Card: Filling LLMs' Knowledge Gaps with
Plug-in Specialized Language Models". MoCo: ``text_knowledge_card``.
"""

from __future__ import annotations

from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule
from moco_lit.methods.text.discussion import ask_each, bullet_list, check_template, question_of

CARD_TEMPLATE = (
    "Do not answer the question below yet. Instead, write down the facts, definitions and methods "
    "that someone would need to answer it well.\n\n"
    "Question: {question}\n\n"
    "Useful knowledge:"
)
ANSWER_TEMPLATE = (
    "Other assistants have written down knowledge that may help with the question below. Some of it "
    "may be wrong, so use it with care.\n\n"
    "Question: {question}\n\n"
    "Knowledge from other assistants:\n{cards}\n\n"
    "Using this knowledge where it helps, answer the question."
)


class KnowledgeCard(CollaborationModule):
    """Args:
    exclude_self: the answering (dev-best) collaborator writes no card and reads only the others'.
    card_template: a card writer's prompt; field ``{question}``.
    answer_template: the answerer's prompt; fields ``{question}``, ``{cards}``.
    """

    method_name = "knowledge_card"
    level = "text"
    needs_calibration = True

    def __init__(
        self,
        collaborators: list[str | dict],
        exclude_self: bool = False,
        card_template: str = CARD_TEMPLATE,
        answer_template: str = ANSWER_TEMPLATE,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if exclude_self and len(collaborators) < 2:
            raise UserError(
                "knowledge_card with exclude_self needs at least 2 collaborators (someone must write)"
            )
        check_template(self.method_name, "card_template", card_template, {"question"})
        check_template(self.method_name, "answer_template", answer_template, {"question", "cards"})
        self.exclude_self = exclude_self
        self.card_template = card_template
        self.answer_template = answer_template

    def writers(self) -> list[int]:
        everyone = range(len(self.collaborators))
        return [m for m in everyone if not (self.exclude_self and m == self.dev_best)]

    def collaborate(self, batch: Batch) -> list[Answer]:
        ids = batch.ids
        writers = self.writers()
        card_prompts = [self.card_template.format(question=question_of(example)) for example in batch]
        # one batched call per writer; a model that writes no card gets no call
        cards = ask_each(
            self,
            [card_prompts if m in writers else [] for m in range(len(self.collaborators))],
            [ids] * len(self.collaborators),
            step="cards",
        )
        answer_prompts = [
            self.answer_template.format(
                question=question_of(example), cards=bullet_list([cards[m][i] for m in writers])
            )
            for i, example in enumerate(batch)
        ]
        answers = self.ask(self.dev_best, answer_prompts, ids, step="answer")
        names = self.collaborator_names
        answerer = names[self.dev_best]
        return [
            Answer(
                output.text,
                by=answerer,
                details={"cards": {names[m]: cards[m][i] for m in writers}, "answerer": answerer},
            )
            for i, output in enumerate(answers)
        ]
