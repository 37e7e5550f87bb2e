"""What the text-level discussion methods share: reading a question, listing other agents' answers,
asking each model its own prompts of a round in one batched call, and the per-example transcript.

Not a method (it defines no ``CollaborationModule``): ``multiagent_refine``, ``multiagent_feedback``,
``knowledge_card``, ``structure`` and ``moa`` build their rounds from these pieces.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from moco_lit.collaborators import Prompt
from moco_lit.errors import UserError
from moco_lit.methods.core.module import Batch, CollaborationModule

Example = dict[str, Any]
Texts = list[list[str]]
"""texts[model][example]: one round's outputs."""

SUMMARY_TEMPLATE = (
    "Several assistants have answered the question below. Combine their answers into one final "
    "answer, deciding carefully where they disagree.\n\n"
    "Question: {question}\n\n"
    "Their answers:\n{answers}\n\n"
    "Write the final answer to the question."
)
"""The dev-best model's closing turn in refine and feedback discussions."""


def question_of(example: Example) -> str:
    """The question as the models first saw it (the user turns of a chat prompt, joined)."""
    prompt = example["prompt"]
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(m["content"] for m in prompt if m.get("role") == "user")


def bullet_list(texts: Sequence[str]) -> str:
    """One ``- text`` line per text (an empty list reads as "(none)" rather than nothing)."""
    return "\n".join(f"- {text.strip()}" for text in texts) or "(none)"


def numbered_list(texts: Sequence[str], label: str = "Assistant") -> str:
    """``Assistant 1: text`` lines: for prompts where the agents stay anonymous but distinct."""
    return "\n".join(f"{label} {k}: {text.strip()}" for k, text in enumerate(texts, 1)) or "(none)"


def check_template(method: str, name: str, template: str, fields: set[str]) -> None:
    """Fail at configuration time when a prompt template misses or invents a ``{field}``."""
    used = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    missing, unknown = fields - used, used - fields
    if missing or unknown:
        raise UserError(
            f"{method}.{name} must use the fields {{{'}, {'.join(sorted(fields))}}}"
            + (f"; missing {sorted(missing)}" if missing else "")
            + (f"; unknown {sorted(unknown)} (write {{{{ }}}} for literal braces)" if unknown else "")
        )


def ask_each(
    method: CollaborationModule,
    prompts: Sequence[Sequence[Prompt]],
    ids: Sequence[Sequence[str]],
    step: str,
) -> Texts:
    """Model m answers ``prompts[m]`` (example ids ``ids[m]``) in ONE batched call; no call when empty."""
    return [
        [output.text for output in method.ask(model, list(own), list(own_ids), step=step)] if own else []
        for model, (own, own_ids) in enumerate(zip(prompts, ids))
    ]


def first_round(method: CollaborationModule, batch: Sequence[Example], step: str = "round1") -> Texts:
    """Every collaborator answers every question on its own (one batched call per model)."""
    batch = Batch.of(batch)
    outputs = method.ask_all(batch.prompts, batch.ids, step=step)
    return [[output.text for output in per_model] for per_model in outputs]


def summarise(
    method: CollaborationModule, template: str, batch: list[Example], last: Texts, step: str = "summary"
) -> list[str]:
    """The dev-best collaborator turns the last round's answers into one answer per example."""
    prompts = [
        template.format(question=question_of(example), answers=bullet_list([out[i] for out in last if out]))
        for i, example in enumerate(batch)
    ]
    ids = Batch.of(batch).ids
    return [output.text for output in method.ask(method.dev_best, prompts, ids, step=step)]


def transcript(
    method: CollaborationModule, rounds: Sequence[Texts], batch: list[Example]
) -> list[dict[str, list[dict[str, Any]]]]:
    """Per example: each round's output and extracted answer, keyed by collaborator name.

    A model absent from a round (it had nothing to read) is absent from that round's entry.
    """
    names = method.collaborator_names
    logs = []
    for i, example in enumerate(batch):
        texts, answers = [], []
        for texts_by_model in rounds:
            said = {names[m]: out[i] for m, out in enumerate(texts_by_model) if out}
            texts.append(said)
            answers.append({name: method.answer_of(text, example) for name, text in said.items()})
        logs.append({"rounds": texts, "round_answers": answers})
    return logs
