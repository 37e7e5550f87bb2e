"""AggLM: an aggregator model trained with reinforcement learning to write one answer from many.

On dev, each collaborator samples ``sample_size`` answers per question, giving ``sample_size``
sets of one answer per collaborator. A set whose majority answer is wrong is "hard"; every hard
set is kept and as many easy ones. The aggregator (``agg_model``, LoRA r 64) reads a set and
writes the final answer; GRPO trains it: ``group_size`` sampled aggregations per set, reward 1
when correct, group-normalised advantages. At test the collaborators answer and the trained
aggregator aggregates. Zhao et al., "The Majority is not always right: RL training for solution
aggregation" (2025). MoCo: ``text_agglm``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from typing import Literal

import torch

from moco_lit.collaborators import Collaborator, load_collaborator
from moco_lit.errors import UserError
from moco_lit.methods.core.agent_trained import AgentTrainedModule
from moco_lit.methods.core.dev_trained import even_out_training_batches
from moco_lit.methods.core.module import Answer, Batch, Example
from moco_lit.methods.text.discussion import question_of
from moco_lit.training import completion_batch, grpo_batch_loss

AGGREGATE_PROMPT = """A question and several candidate solutions to it follow. The candidates may \
disagree and the majority may be wrong. Check them, then write the correct final answer.

Question:
{question}

{solutions}

Write your final answer to the question."""


class AggLM(AgentTrainedModule):
    """Args:
    agg_model: the aggregator: a collaborator index or a model (MoCo: Qwen/Qwen2.5-1.5B-Instruct).
    sample_size: answer sets sampled per dev question.
    group_size: GRPO samples per set.
    grpo_temperature: sampling temperature of the aggregator during GRPO.
    clip_eps, kl_beta: GRPO's ratio clip and KL weight (to the adapter-free aggregator).
    majority_of: which answers of a set elect its majority answer (the set is hard when that is
        wrong): ``all`` (MoCo's), "no readable answer" included, so a set where it leads is hard;
        ``readable``: only readable answers vote (a set with none is hard).
    (LoRA defaults follow MoCo: r 64, alpha 16, dropout 0.1; learning rate 1e-4.)
    """

    method_name = "agglm"
    level = "text"
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        agg_model: int | str = "Qwen/Qwen2.5-1.5B-Instruct",
        sample_size: int = 2,
        group_size: int = 4,
        grpo_temperature: float = 1.0,
        clip_eps: float = 0.2,
        kl_beta: float = 0.0,
        majority_of: Literal["all", "readable"] = "all",
        aggregate_prompt: str = AGGREGATE_PROMPT,
        learning_rate: float = 1e-4,
        weight_decay: float = 1e-5,
        lora_r: int = 64,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(
            collaborators,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            **kwargs,
        )
        if sample_size < 1 or group_size < 2:
            raise UserError(
                f"agglm needs sample_size >= 1 and group_size >= 2, got {sample_size}, {group_size}"
            )
        if isinstance(agg_model, int) and not 0 <= agg_model < len(collaborators):
            raise UserError(f"agglm.agg_model={agg_model} but there are {len(collaborators)} collaborators")
        self.agg_model = agg_model
        self.sample_size = sample_size
        self.group_size = group_size
        self.clip_eps = clip_eps
        self.kl_beta = kl_beta
        self.aggregate_prompt = aggregate_prompt
        if majority_of not in ("all", "readable"):
            raise UserError(f"agglm.majority_of must be all or readable, got {majority_of!r}")
        self.majority_of = majority_of

    def on_fit_start(self) -> None:
        """No greedy dev table: as in MoCo, the collaborators answer dev only for the sampled sets."""
        self.calibrated.fill_(True)
        even_out_training_batches(self)

    def models_to_train(self) -> dict[str, Collaborator]:
        if isinstance(self.agg_model, int):
            base = self.collaborators[self.agg_model]
        else:
            base = load_collaborator(self.agg_model, self.trainer.strategy.root_device)
        return {"aggregator": base}

    def install_agents(self) -> None:
        """The collaborators stay as they are; only the aggregator is trained."""

    @property
    def aggregator(self) -> Collaborator:
        return self.agents.agents["aggregator"]

    def prompt_for(self, example: Example, solutions: list[str]) -> str:
        listed = "\n\n".join(f"Solution {k}:\n{text.strip()}" for k, text in enumerate(solutions, 1))
        return self.aggregate_prompt.format(question=question_of(example), solutions=listed)

    # -- fit: answer sets, hard and easy, then GRPO ------------------------------------------------

    def build_iteration(self, iteration: int) -> dict[str, list[dict]]:
        examples = self.dev_examples()
        ids, prompts = [e["id"] for e in examples], [e["prompt"] for e in examples]
        samples = [
            self.ask_samples(m, prompts, ids, self.sample_size, step="sets")
            for m in range(len(self.collaborators))
        ]
        sets = []
        for i, example in enumerate(examples):
            for s in range(self.sample_size):
                solutions = [samples[m][i][s].text for m in range(len(self.collaborators))]
                sets.append(
                    {
                        "example": example,
                        "solutions": solutions,
                        "hard": self.majority_wrong(example, solutions),
                    }
                )
        hard = [x for x in sets if x["hard"]]
        easy = [x for x in sets if not x["hard"]]
        random.Random(self.hparams.seed).shuffle(easy)
        items: dict[str, list[dict]] = {}
        for x in hard + easy[: len(hard)]:
            item = {
                "agent": "aggregator",
                "prompt": self.prompt_for(x["example"], x["solutions"]),
                "hard": x["hard"],
            }
            items.setdefault(x["example"]["id"], []).append(item)
        self._example_cost.clear()
        return items

    def majority_wrong(self, example: Example, solutions: list[str]) -> bool:
        """Whether the set's most common answer (the first to reach the top count) is wrong."""
        answers = [self.answer_of(text, example) for text in solutions]
        votes = Counter(a for a in answers if self.majority_of == "all" or a is not None)
        if not votes:
            return True
        majority = votes.most_common(1)[0][0]
        text = solutions[answers.index(majority)]
        return not (self.score([text], [example])[0] or 0.0) > 0.5

    def items_loss(self, items: list[dict]) -> torch.Tensor:
        """One on-policy GRPO step: ``group_size`` sampled aggregations per set, reward = correct."""
        by_id = {e["id"]: e for e in self.dev_examples()}
        examples = [by_id[item["id"]] for item in items]
        agent = self.aggregator
        self.agents.activate(agent)
        # TRL's GRPO rollouts in MoCo: the GRPO temperature, no nucleus cut
        decoding = replace(self.decoding, temperature=self.hparams.grpo_temperature, top_p=1.0)
        seeds = [self.seed_of(e["id"], "grpo", self.global_step, k) for k, e in enumerate(examples)]
        with self.agents.generating():
            groups = self.engine.sample(
                agent, [item["prompt"] for item in items], decoding, self.group_size, seeds
            )
        completions = [g.text for group in groups for g in group]
        graded = [e for e in examples for _ in range(self.group_size)]
        rewards = torch.tensor([float(s or 0.0) for s in self.score(completions, graded)])
        rendered = [
            agent.render(item["prompt"], decoding.enable_thinking)
            for item in items
            for _ in range(self.group_size)
        ]
        tokens = completion_batch(agent.tokenizer, rendered, completions, self.max_length)
        tokens = {key: value.to(self.device) for key, value in tokens.items()}
        self.log("train/reward", rewards.mean(), batch_size=len(items))
        model = self.agents.activate(agent)
        return grpo_batch_loss(
            model, tokens, rewards.to(self.device), self.group_size, None, self.clip_eps, self.kl_beta
        )

    def training_step(self, batch: list[Example], batch_idx: int) -> torch.Tensor | None:
        for example in batch:  # items_loss needs each set's question id
            for item in self.items.get(example["id"], []):
                item["id"] = example["id"]
        return super().training_step(batch, batch_idx)

    # -- test: the collaborators answer, the trained aggregator aggregates -------------------------

    def collaborate(self, batch: Batch) -> list[Answer]:
        ids = batch.ids
        outputs = self.ask_all(batch.prompts, ids)
        solutions = [[outputs[m][i].text for m in range(len(self.collaborators))] for i in range(len(batch))]
        prompts = [self.prompt_for(e, s) for e, s in zip(batch, solutions)]
        final = self.ask(self.aggregator, prompts, ids, step="aggregate")
        names = self.collaborator_names
        return [
            Answer(f.text, by=self.aggregator.name, details={"solutions": dict(zip(names, s))})
            for f, s in zip(final, solutions)
        ]
