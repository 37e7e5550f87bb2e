"""Prompt routing: the dev-best model reads the model descriptions and picks who answers each question.

The collaborator with the best dev score acts as the router: for every question it reads a
numbered list of the collaborators' descriptions and names the number of the one that should
answer. That collaborator then answers (one batched call per chosen model). The route is the first
valid model number in the reply; one that names none falls back to the dev-best model itself.
MoCo reads the highest model number that appears anywhere in the reply, digits inside other
numbers included ("1, not 3" routes to 3; "12" to 2): ``route_parsing: highest_substring``
restores that. MoCo: ``api_prompt_routing``.
"""

from __future__ import annotations

import re
from typing import Literal

from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule
from moco_lit.methods.text.discussion import question_of

ROUTER_PROMPT = """You decide which AI model should answer a user's question. The models are:

{descriptions}

Question: {question}

Which model is best suited to answer this question? Reply with the model's number only."""


class PromptRouting(CollaborationModule):
    """Args:
    model_descriptions: one short description per collaborator (its strengths); default: its name.
    router_prompt: the router's template (fields ``{descriptions}``, ``{question}``).
    route_parsing: how the reply is read: ``first_number`` (the first valid model number) or
        ``highest_substring`` (MoCo's: the highest model number found anywhere in the text).
    """

    method_name = "prompt_routing"
    level = "api"
    needs_calibration = True
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        model_descriptions: list[str] | None = None,
        router_prompt: str = ROUTER_PROMPT,
        route_parsing: Literal["first_number", "highest_substring"] = "first_number",
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if model_descriptions is not None and len(model_descriptions) != len(collaborators):
            raise UserError(
                f"prompt_routing.model_descriptions has {len(model_descriptions)} entries for "
                f"{len(collaborators)} collaborators; give one description per collaborator"
            )
        self.model_descriptions = model_descriptions
        self.router_prompt = router_prompt
        self.route_parsing = route_parsing

    def descriptions(self) -> str:
        texts = self.model_descriptions or self.collaborator_names
        return "\n".join(f"{number}. {text}" for number, text in enumerate(texts, 1))

    def collaborate(self, batch: Batch) -> list[Answer]:
        ids = batch.ids
        router = self.dev_best
        prompts = [
            self.router_prompt.format(descriptions=self.descriptions(), question=question_of(e))
            for e in batch
        ]
        replies = [output.text for output in self.ask(router, prompts, ids, step="route")]
        routes = [self.parse_route(reply) for reply in replies]
        chosen = [route if route is not None else router for route in routes]
        texts: dict[int, str] = {}
        for model in sorted(set(chosen)):
            rows = [i for i, m in enumerate(chosen) if m == model]
            routed = batch.pick(rows)
            outputs = self.ask(model, routed.prompts, routed.ids)
            texts.update({i: output.text for i, output in zip(rows, outputs)})
        return [
            Answer(
                texts[i],
                by=self.collaborator_names[chosen[i]],
                details={
                    "router": self.collaborator_names[router],
                    "router_reply": replies[i],
                    "route": self.collaborator_names[chosen[i]],
                    "fallback": routes[i] is None,
                },
            )
            for i in range(len(batch))
        ]

    def parse_route(self, reply: str) -> int | None:
        """The collaborator index the reply names (its first valid model number), None if none."""
        if self.route_parsing == "highest_substring":
            count = len(self.collaborators)
            return next((n - 1 for n in range(count, 0, -1) if str(n) in reply), None)
        for number in re.findall(r"\d+", reply):
            if 1 <= int(number) <= len(self.collaborators):
                return int(number) - 1
        return None
