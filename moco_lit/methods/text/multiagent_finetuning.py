"""Multiagent fine-tuning: debate on dev, then fine-tune each agent on what the debate agreed on.

Each collaborator has a generation agent (answers the question) and a critic agent (later rounds:
reads the others' answers and its own, answers again). On dev the agents debate for ``rounds``;
the final round's majority answer is the consensus. A generation agent learns its own first
answers that agree with it; a critic agent learns the consensus answer after its own answer
history, on a random share ``w`` of the questions where it corrected a wrong first answer and
``1 - w`` of those where it kept a right one. ``iterations`` repeat this with the tuned agents;
test runs the debate with them and votes. Subramaniam et al., "Multiagent Finetuning: Self
Improvement with Diverse Reasoning Chains" (ICLR 2025).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Literal

import torch

from moco_lit.dev_table import DevTable
from moco_lit.errors import UserError
from moco_lit.evaluation import VOTING_TASK_TYPES
from moco_lit.methods.core.agent_trained import AgentTrainedModule
from moco_lit.methods.core.dev_trained import even_out_training_batches
from moco_lit.methods.core.module import Answer, Batch, Example
from moco_lit.methods.text.discussion import question_of

CRITIC_PROMPT = """Question:
{question}

Other agents answered:
{others}

Your previous answer:
{own}

Check these answers against each other and the question, then give your own best answer."""

CRITIC_TRAINING_PROMPT = """Question:
{question}

Your answers so far, one per round:
{history}

Check your reasoning and give your best answer to the question."""

CriticData = Literal["subsample", "weight"]


def most_common(values: list[str]) -> str | None:
    """The most frequent value, a tie going to the smallest (MoCo's vote); None for no values."""
    counts = Counter(values)
    if not counts:
        return None
    return min(counts, key=lambda value: (-counts[value], value))


class MultiagentFinetuning(AgentTrainedModule):
    """Args:
    rounds: debate rounds (1 generation round + ``rounds - 1`` critic rounds).
    w: share of the critic data drawn from corrected answers (kept answers: ``1 - w``).
    critic_data: ``subsample`` (MoCo's: each critic trains on ``max(1, int(n * w))`` of its ``n``
        corrected answers and ``max(1, int(n * (1 - w)))`` of its kept ones, drawn at random, a
        share of 0 taking none) or ``weight`` (all of them, the loss weighted ``w`` and ``1 - w``).
    training_ratio: share of dev questions, drawn at random once, that each iteration debates on.
    iterations: debate-then-fine-tune cycles in ``fit``.
    epochs_per_iteration: SFT epochs over each iteration's data.
    multi_model: ``shared_base`` (adapters on one base copy; needs one shared base), ``one_by_one``
        (a copy per agent) or ``auto`` (shared_base when possible).
    """

    method_name = "multiagent_finetuning"
    level = "text"
    supported_task_types = VOTING_TASK_TYPES  # those whose spec has a vote key

    def __init__(
        self,
        collaborators: list[str | dict],
        rounds: int = 2,
        w: float = 0.5,
        critic_data: CriticData = "subsample",
        training_ratio: float = 1.0,
        iterations: int = 1,
        critic_prompt: str = CRITIC_PROMPT,
        critic_training_prompt: str = CRITIC_TRAINING_PROMPT,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, num_iterations=iterations, **kwargs)
        if rounds < 1 or not 0.0 <= w <= 1.0:
            raise UserError(f"multiagent_finetuning needs rounds >= 1 and 0 <= w <= 1, got {rounds}, {w}")
        if critic_data not in ("subsample", "weight"):
            raise UserError(
                f"multiagent_finetuning.critic_data must be subsample or weight, got {critic_data!r}"
            )
        if not 0.0 < training_ratio <= 1.0:
            raise UserError(f"multiagent_finetuning.training_ratio must be in (0, 1], got {training_ratio}")
        self.rounds = rounds
        self.w = w
        self.critic_data = critic_data
        self.training_ratio = training_ratio
        self.critic_prompt = critic_prompt
        self.critic_training_prompt = critic_training_prompt

    def models_to_train(self):
        # scripted collaborators (no weights) still debate and get training data; only real models learn
        models = {f"agent{i}": c for i, c in enumerate(self.collaborators) if c.model is not None}
        if self.rounds > 1:
            models.update({f"critic{i}": c for i, c in enumerate(self.collaborators) if c.model is not None})
        return models

    def critic(self, model: int):
        agents = self.agents.agents if self.agents is not None else {}
        return agents.get(f"critic{model}", self.collaborators[model])

    def on_fit_start(self) -> None:
        # no dev table: the debate makes the only dev calls, as in MoCo
        self.calibrated.fill_(True)
        self.dev_table = DevTable(self.collaborator_names, [])
        self.dev_labels = self.prepare_training(self.dev_table)
        even_out_training_batches(self)

    def prepare_training(self, table: DevTable) -> list[int]:
        self.trainer.fit_loop.max_epochs = self.num_iterations * self.epochs_per_iteration
        return []

    # -- the debate ----------------------------------------------------------------------------

    def debate(self, batch: list[Example], step: str) -> tuple[list[list[list[str]]], list[list[list[str]]]]:
        """Per round, each model's outputs and prompts: ``texts[round][model][example]``."""
        batch = Batch.of(batch)
        ids = batch.ids
        first = self.ask_all(batch.prompts, ids, step=f"{step}round1")
        rounds = [[[o.text for o in outs] for outs in first]]
        prompts: list[list[list[str]]] = [[batch.prompts] * len(self.collaborators)]
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

    def consensus(self, example: Example, outputs: list[str]) -> tuple[str | None, str]:
        """The majority answer of ``outputs`` and the output that carries it: the most frequent
        text among those giving that answer (ties to the smallest, as the answers' vote)."""
        answers = [self.answer_of(o, example) for o in outputs]
        agreed = most_common([a for a in answers if a is not None])
        carriers = [o.strip() for o, a in zip(outputs, answers) if agreed is not None and a == agreed]
        return agreed, most_common(carriers) or ""

    # -- fit: debate on dev, keep what agrees with the consensus -------------------------------

    def dev_examples(self) -> list[Example]:
        examples = super().dev_examples()
        if self.training_ratio >= 1.0:
            return examples
        keep = max(1, int(len(examples) * self.training_ratio))
        rng = random.Random(self.seed_of(self.method_name, "training_ratio"))
        return [examples[i] for i in sorted(rng.sample(range(len(examples)), keep))]

    def build_iteration(self, iteration: int) -> dict[str, list[dict]]:
        examples = self.dev_examples()
        size = self.trainer.datamodule.hparams.batch_size
        count = len(self.collaborators)
        generation: list[list[dict]] = [[] for _ in range(count)]
        corrected: list[list[dict]] = [[] for _ in range(count)]
        kept: list[list[dict]] = [[] for _ in range(count)]
        first_scores: list[list[float]] = [[] for _ in range(count)]
        for start in range(0, len(examples), size):
            batch = examples[start : start + size]
            rounds, prompts = self.debate(batch, step=f"train{iteration}")
            for i, example in enumerate(batch):
                self.collect(example, rounds, prompts, i, generation, corrected, kept)
            for m, texts in enumerate(rounds[0]):
                first_scores[m] += [s for s in self.score(texts, batch) if s is not None]
        if iteration == 0:  # the first round is each base model alone: its dev score, for free
            means = [sum(v) / len(v) if v else float("nan") for v in first_scores]
            self.dev_scores.copy_(torch.tensor(means).to(self.dev_scores))
        items: dict[str, list[dict]] = {e["id"]: [] for e in examples}
        for m in range(count):
            chosen = generation[m] + self.critic_items(iteration, m, corrected[m], kept[m])
            for item in chosen:
                items[item["id"]].append({k: v for k, v in item.items() if k != "id"})
        self._example_cost.clear()
        return items

    def collect(self, example: Example, rounds, prompts, i: int, generation, corrected, kept) -> None:
        """Sort one dev question's consensus-agreeing answers into each agent's data."""
        agreed, carrier = self.consensus(example, [outs[i] for outs in rounds[-1]])
        if agreed is None:
            return
        for m in range(len(rounds[0])):
            first_right = self.answer_of(rounds[0][m][i], example) == agreed
            if first_right:
                generation[m].append(
                    {
                        "id": example["id"],
                        "agent": f"agent{m}",
                        "prompt": prompts[0][m][i],
                        "completion": rounds[0][m][i].strip(),
                        "weight": 1.0,
                    }
                )
            # with one round no critic answers: MoCo trains critics that are never asked
            if self.rounds > 1 and self.answer_of(rounds[-1][m][i], example) == agreed:
                history = "\n".join(f"Round {r + 1}: {outs[m][i].strip()}" for r, outs in enumerate(rounds))
                prompt = self.critic_training_prompt.format(question=question_of(example), history=history)
                item = {"id": example["id"], "agent": f"critic{m}", "prompt": prompt, "completion": carrier}
                (kept if first_right else corrected)[m].append(item)

    def critic_items(self, iteration: int, model: int, corrected: list[dict], kept: list[dict]) -> list[dict]:
        """Critic ``model``'s data: a drawn share of corrected and of kept answers, or all weighted."""
        if self.critic_data == "weight":
            return [{**x, "weight": self.w} for x in corrected if self.w > 0] + [
                {**x, "weight": 1.0 - self.w} for x in kept if self.w < 1
            ]
        rng = random.Random(self.seed_of(self.method_name, "critic_data", iteration, model))
        chosen = []
        for group, share in ((corrected, self.w), (kept, 1.0 - self.w)):
            if group and share > 0:
                chosen += rng.sample(group, min(max(1, int(len(group) * share)), len(group)))
        return [{**x, "weight": 1.0} for x in chosen]

    def training_step(self, batch: list[Example], batch_idx: int) -> torch.Tensor | None:
        if self.agents is None or not self.agents.agents:
            return None  # only scripted collaborators: the data is built and written, nothing learns
        return super().training_step(batch, batch_idx)

    def items_loss(self, items: list[dict]) -> torch.Tensor:
        losses = []
        learning = [item for item in items if item["agent"] in self.agents.agents]
        for key in sorted({item["agent"] for item in learning}):
            own = [item for item in learning if item["agent"] == key]
            loss = self.agent_sft_loss(
                key, [x["prompt"] for x in own], [x["completion"] for x in own], [x["weight"] for x in own]
            )
            losses.append(loss * len(own))
        if not losses:  # these questions' data all belong to scripted collaborators
            return self.ddp_anchor.sum() * 0.0
        return torch.stack(losses).sum() / len(learning)

    # -- test: the debate with the tuned agents, then a vote ----------------------------------

    def collaborate(self, batch: Batch) -> list[Answer]:
        rounds, _ = self.debate(batch, step="")
        names = self.collaborator_names
        answers = []
        for i, example in enumerate(batch):
            final = [outs[i] for outs in rounds[-1]]
            winner, carrier = self.consensus(example, final)
            model = next((m for m, o in enumerate(final) if o.strip() == carrier), 0)
            answers.append(
                Answer(
                    final[model] if winner is not None else final[0],
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
