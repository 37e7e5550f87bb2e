"""Multiagent feedback: collaborators review each other's answers, then revise their own.

Round 1 is each model alone. In each of the ``round`` − 1 later rounds every answer is reviewed by
``feedback_count`` other models drawn at random (seeded per example, round and author); each model
then rewrites its answer given the reviews it received. The collaborator with the best dev score
summarises the last round into the final answer. In the spirit of Self-Refine (Madaan et al. 2023)
with peer instead of self feedback. MoCo: ``text_multiagent_feedback``.
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

FEEDBACK_TEMPLATE = (
    "You are reviewing another assistant's answer to a question, to help it improve. Point out what "
    "is wrong or missing and say how to fix it.\n\n"
    "Question: {question}\n\n"
    "The assistant's answer: {answer}\n\n"
    "Write your feedback."
)
REVISE_TEMPLATE = (
    "You answered the question below and other assistants reviewed your answer. Use their feedback "
    "to write a better answer.\n\n"
    "Question: {question}\n\n"
    "Your previous answer: {own}\n\n"
    "Feedback you received:\n{feedback}\n\n"
    "Write your improved answer to the question."
)

Reviews = dict[tuple[int, int], dict[int, str]]
"""reviews[(author, example)][reviewer] = feedback text."""


class MultiagentFeedback(CollaborationModule):
    """Args:
    round: rounds of answering, the first one included (MoCo's ``round``).
    feedback_count: reviewers per answer (capped at the number of other collaborators).
    feedback_template: a reviewer's prompt; fields ``{question}``, ``{answer}``.
    revise_template: an author's revision prompt; fields ``{question}``, ``{own}``, ``{feedback}``.
    summary_template: prompt of the dev-best summariser; fields ``{question}``, ``{answers}``.
    """

    method_name = "multiagent_feedback"
    level = "text"
    needs_calibration = True
    min_collaborators = 2  # feedback comes from the other collaborators

    def __init__(
        self,
        collaborators: list[str | dict],
        round: int = 3,  # MoCo's name (it shadows the builtin here only), kept so configs carry over
        feedback_count: int = 3,
        feedback_template: str = FEEDBACK_TEMPLATE,
        revise_template: str = REVISE_TEMPLATE,
        summary_template: str = SUMMARY_TEMPLATE,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if round < 1 or feedback_count < 1:
            raise UserError(
                f"multiagent_feedback needs round >= 1 and feedback_count >= 1, got {round} and {feedback_count}"
            )
        check_template(self.method_name, "feedback_template", feedback_template, {"question", "answer"})
        check_template(self.method_name, "revise_template", revise_template, {"question", "own", "feedback"})
        check_template(self.method_name, "summary_template", summary_template, {"question", "answers"})
        self.rounds = round
        self.feedback_count = feedback_count
        self.feedback_template = feedback_template
        self.revise_template = revise_template
        self.summary_template = summary_template

    def collaborate(self, batch: Batch) -> list[Answer]:
        rounds = [first_round(self, batch)]
        reviews_by_round: list[Reviews] = []
        for number in range(2, self.rounds + 1):
            reviews = self.review(batch, rounds[-1], number)
            reviews_by_round.append(reviews)
            rounds.append(self.revise(batch, rounds[-1], reviews, step=f"round{number}"))
        finals = summarise(self, self.summary_template, batch, rounds[-1])
        summariser = self.collaborator_names[self.dev_best]
        logs = transcript(self, rounds, batch)
        return [
            Answer(
                final,
                by=summariser,
                details={**log, "feedback": self.feedback_log(reviews_by_round, i), "summariser": summariser},
            )
            for i, (final, log) in enumerate(zip(finals, logs))
        ]

    def reviewers(self, example_id: str, author: int, number: int) -> list[int]:
        others = [m for m in range(len(self.collaborator_specs)) if m != author]
        rng = self.rng(example_id, "reviewers", number, author)
        return sorted(rng.sample(others, min(self.feedback_count, len(others))))

    def review(self, batch: list[Example], previous: Texts, number: int) -> Reviews:
        """Each reviewer writes all its reviews of the round (every author, every example) in one call."""
        count = len(self.collaborators)
        jobs: list[list[tuple[int, int]]] = [[] for _ in range(count)]  # per reviewer: (author, example)
        for i, example in enumerate(batch):
            for author in range(count):
                for reviewer in self.reviewers(example["id"], author, number):
                    jobs[reviewer].append((author, i))
        prompts = [
            [
                self.feedback_template.format(question=question_of(batch[i]), answer=previous[author][i])
                for author, i in own
            ]
            for own in jobs
        ]
        ids = [[batch[i]["id"] for _, i in own] for own in jobs]
        texts = ask_each(self, prompts, ids, step=f"feedback{number}")
        reviews: Reviews = {}
        for reviewer, own in enumerate(jobs):
            for (author, i), text in zip(own, texts[reviewer]):
                reviews.setdefault((author, i), {})[reviewer] = text
        return reviews

    def revise(self, batch: list[Example], previous: Texts, reviews: Reviews, step: str) -> Texts:
        ids = Batch.of(batch).ids
        prompts = [
            [
                self.revise_template.format(
                    question=question_of(example),
                    own=previous[author][i],
                    feedback=bullet_list([text for _, text in sorted(reviews[(author, i)].items())]),
                )
                for i, example in enumerate(batch)
            ]
            for author in range(len(self.collaborators))
        ]
        return ask_each(self, prompts, [ids] * len(prompts), step)

    def feedback_log(self, reviews_by_round: list[Reviews], i: int) -> list[dict[str, dict[str, str]]]:
        """Per later round: author name -> {reviewer name: feedback} for example ``i``."""
        names = self.collaborator_names
        return [
            {
                names[author]: {names[r]: text for r, text in sorted(reviews[(author, i)].items())}
                for author in range(len(names))
            }
            for reviews in reviews_by_round
        ]
