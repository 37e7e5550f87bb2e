"""Multiagent fine-tuning: debate on dev, then fine-tune each agent on what the debate agreed on.

Each collaborator has a generation agent (answers the question) and a critic agent (later rounds:
reads the others' answers and its own, answers again). On dev the agents debate for ``rounds``;
the final round's majority answer is the consensus. Generation agents are SFT-tuned on their
first answers that agree with it; critic agents on their final answers that agree, weighted ``w``
when they corrected a wrong first answer and ``1 - w`` when they kept a right one. ``iterations``
repeat this with the tuned agents; test runs the debate with them and votes. Subramaniam et al.,
"Multiagent Finetuning: Self Improvement with Diverse Reasoning Chains" (ICLR 2025).
"""

from __future__ import annotations

from collections import Counter

import torch

from moco_lit.errors import UserError
from moco_lit.methods.base import Answer, Example
from moco_lit.methods.text.arena import AgentTrainedModule
from moco_lit.methods.text.discussion import question_of

CRITIC_PROMPT = """Question:
{question}

Other agents answered:
{others}

Your previous answer:
{own}

Check these answers against each other and the question, then give your own best answer."""


class MultiagentFinetuning(AgentTrainedModule):
    """Args:
    rounds: debate rounds (1 generation round + ``rounds - 1`` critic rounds).
    w: weight of the critic data that corrects a wrong first answer (kept answers get ``1 - w``).
    iterations: debate-then-fine-tune cycles in ``fit``.
    epochs_per_iteration: SFT epochs over each iteration's data.
    multi_model: ``shared_base`` (adapters on one base copy; needs one shared base), ``one_by_one``
        (a copy per agent) or ``auto`` (shared_base when possible).
    """

    method_name = "multiagent_finetuning"
    level = "text"
    supported_task_types = frozenset({"multiple_choice", "exact_match", "f1_match"})

    def __init__(
        self,
        collaborators: list[str | dict],
        rounds: int = 2,
        w: float = 0.5,
        iterations: int = 1,
        critic_prompt: str = CRITIC_PROMPT,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, num_iterations=iterations, **kwargs)
        if rounds < 1 or not 0.0 <= w <= 1.0:
            raise UserError(f"multiagent_finetuning needs rounds >= 1 and 0 <= w <= 1, got {rounds}, {w}")
        self.rounds = rounds
        self.w = w
        self.critic_prompt = critic_prompt

    def models_to_train(self):
        models = {f"agent{i}": c for i, c in enumerate(self.collaborators)}
        if self.rounds > 1:
            models.update({f"critic{i}": c for i, c in enumerate(self.collaborators)})
        return models

    def critic(self, model: int):
        return self.agents.agents[f"critic{model}"] if self.agents is not None else self.collaborators[model]

    # -- the debate ----------------------------------------------------------------------------

    def debate(self, batch: list[Example], step: str) -> tuple[list[list[str]], list[list[str]]]:
        """Per round, each model's outputs and critic prompts: ``texts[round][model][example]``."""
        ids = [e["id"] for e in batch]
        first = self.ask_all([e["prompt"] for e in batch], ids, step=f"{step}round1")
        rounds = [[[o.text for o in outs] for outs in first]]
        prompts: list[list[list[str]]] = [[[e["prompt"] for e in batch]] * len(self.collaborators)]
        for r in range(1, self.rounds):
            last = rounds[-1]
            round_prompts = [
                [self.critic_prompt_for(batch[i], last, m, i) for i in range(len(batch))]
                for m in range(len(self.collaborators))
            ]
            texts = [
                [o.text for o in self.ask(self.critic(m), round_prompts[m], ids, step=f"{step}round{r + 1}")]
                for m in range(len(self.collaborators))
            ]
            rounds.append(texts)
            prompts.append(round_prompts)
        return rounds, prompts

    def critic_prompt_for(self, example: Example, last: list[list[str]], model: int, i: int) -> str:
        others = "\n".join(f"- {last[o][i].strip()}" for o in range(len(last)) if o != model) or "(none)"
        return self.critic_prompt.format(
            question=question_of(example), others=others, own=last[model][i].strip()
        )

    def consensus(self, example: Example, outputs: list[str]) -> str | None:
        counts = Counter(a for a in (self.answer_of(o, example) for o in outputs) if a is not None)
        return counts.most_common(1)[0][0] if counts else None

    # -- fit: debate on dev, keep what agrees with the consensus -------------------------------

    def build_iteration(self, iteration: int) -> dict[str, list[dict]]:
        examples = self.dev_examples()
        size = self.trainer.datamodule.hparams.batch_size
        items: dict[str, list[dict]] = {}
        for start in range(0, len(examples), size):
            batch = examples[start : start + size]
            rounds, prompts = self.debate(batch, step=f"train{iteration}")
            for i, example in enumerate(batch):
                items[example["id"]] = self.sft_items(example, rounds, prompts, i)
        self._example_cost.clear()
        return items

    def sft_items(self, example: Example, rounds, prompts, i: int) -> list[dict]:
        """The consensus-agreeing answers of one dev question, as SFT items per agent."""
        agreed = self.consensus(example, [outs[i] for outs in rounds[-1]])
        if agreed is None:
            return []
        items = []
        for m in range(len(self.collaborator_specs)):
            first_right = self.answer_of(rounds[0][m][i], example) == agreed
            if first_right:
                items.append(
                    {
                        "agent": f"agent{m}",
                        "prompt": prompts[0][m][i],
                        "completion": rounds[0][m][i],
                        "weight": 1.0,
                    }
                )
            if len(rounds) > 1 and self.answer_of(rounds[-1][m][i], example) == agreed:
                weight = 1.0 - self.w if first_right else self.w
                if weight > 0:
                    items.append(
                        {
                            "agent": f"critic{m}",
                            "prompt": prompts[-1][m][i],
                            "completion": rounds[-1][m][i],
                            "weight": weight,
                        }
                    )
        return items

    def items_loss(self, items: list[dict]) -> torch.Tensor:
        losses = []
        for key in sorted({item["agent"] for item in items}):
            own = [item for item in items if item["agent"] == key]
            loss = self.agent_sft_loss(
                key, [x["prompt"] for x in own], [x["completion"] for x in own], [x["weight"] for x in own]
            )
            losses.append(loss * len(own))
        return torch.stack(losses).sum() / len(items)

    # -- test: the debate with the tuned agents, then a vote ----------------------------------

    def collaborate(self, batch: list[Example]) -> list[Answer]:
        rounds, _ = self.debate(batch, step="")
        names = self.collaborator_names
        answers = []
        for i, example in enumerate(batch):
            final = [outs[i] for outs in rounds[-1]]
            winner = self.consensus(example, final)
            model = next((m for m, o in enumerate(final) if self.answer_of(o, example) == winner), 0)
            answers.append(
                Answer(
                    final[model],
                    by=names[model],
                    details={
                        "winner": winner,
                        "round_answers": [
                            {names[m]: self.answer_of(outs[i], example) for m, outs in enumerate(r)}
                            for r in rounds
                        ],
                    },
                )
            )
        return answers
