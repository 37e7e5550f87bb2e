"""LLM-Blender: rank all answers by pairwise comparison, then fuse the best few into one.

Every collaborator answers. A ranker LM compares each pair of candidates (A or B?); a win counts 1,
an unreadable verdict half a point to each side. The verdict is the first standalone letter A or B
of the ranker's reply; MoCo takes the first A or B character anywhere, so "Both are fine" is a
vote for B and "ANSWER: B" one for A (``verdict_parsing: first_letter`` restores that reading).
The ``top_k`` candidates by wins, best first, go
to a fuser LM that writes the final answer. Ranker and fuser are a collaborator (by index) or any
other model. Jiang et al., "LLM-Blender: Ensembling Large Language Models with Pairwise Ranking
and Generative Fusion" (ACL 2023). MoCo: ``text_llm_blender`` (zero-shot mode).

Trained form (``train_ranker_on_dev`` / ``train_fuser_on_dev``, run ``fit`` then ``test
--ckpt_path``): from the dev table, the ranker is LoRA-SFT-tuned to name the better of every pair
of candidates whose scores differ, shown once in collaborator order as MoCo does
(``ranker_pair_orders: both`` adds the swapped pair, so no position is favoured), and the fuser
to write the dev reference from the dev-ranked top-k: the option text, the gold output, or the
best candidate where there is none, as MoCo does (``fuser_target: answer_line`` writes it as the
"Answer: X" / ``\boxed{}`` line the fusion prompt asks for instead). Zero-shot when both are off.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from itertools import combinations
from typing import Literal

import torch

from moco_lit.collaborators import Collaborator, Prompt, load_collaborator
from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig, Generation
from moco_lit.methods.core.agent_trained import AgentTrainedModule
from moco_lit.methods.core.module import Answer, Batch, Example
from moco_lit.methods.text.discussion import question_of

PAIRWISE_PROMPT = """Two answers to the same question follow. Judge which one is better: more correct, \
more helpful, clearer.

Question:
{question}

Answer A:
{answer_a}

Answer B:
{answer_b}

Which answer is better? Reply with one letter: A or B."""

FUSION_PROMPT = """Several candidate answers to a question follow, ranked from best to worst by a judge. \
Write one final answer that keeps what the candidates get right and drops their mistakes.

Question:
{question}

{candidates}

Write the final answer to the question.{answer_format}"""

ANSWER_FORMATS = {
    "multiple_choice": " End with a line 'Answer: X' where X is the letter of the option you choose.",
    "exact_match": " End with a line 'Final Answer: \\boxed{ANSWER}'.",
    "f1_match": " End with a line 'Final Answer: \\boxed{ANSWER}'.",
}


class LlmBlender(AgentTrainedModule):
    """Args:
    ranker: the pairwise judge: a collaborator index or a model (hub id, folder, ...).
    fuser: the model that writes the final answer: a collaborator index or a model.
    top_k: how many of the best-ranked candidates the fuser reads.
    ranker_max_new_tokens: generation budget of one verdict.
    verdict_parsing: how a verdict is read: ``standalone`` (the first standalone letter A or B) or
        ``first_letter`` (MoCo's: the first A or B character anywhere in the reply).
    train_ranker_on_dev: LoRA-tune the ranker on dev preference pairs (under ``fit``).
    train_fuser_on_dev: LoRA-tune the fuser on dev gold answers (under ``fit``).
    ranker_pair_orders: ``one`` (MoCo's: each dev pair once, the earlier collaborator as A) or
        ``both`` (each pair in both orders).
    fuser_target: ``reference`` (MoCo's: the option text, the gold output, or else the best dev
        candidate) or ``answer_line`` (the gold as "Answer: X" / "Final Answer: \\boxed{...}";
        dev questions without gold are left out).
    epochs_per_iteration: SFT epochs of the ranker and fuser (MoCo's 3).
    (the training arguments of ``agent_trained.AgentTrainedModule`` apply when either is on)
    """

    method_name = "llm_blender"
    report_trained_flags = ("train_ranker_on_dev", "train_fuser_on_dev")
    level = "text"
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        ranker: int | str = "Qwen/Qwen2.5-7B-Instruct",
        fuser: int | str = 0,
        top_k: int = 3,
        ranker_max_new_tokens: int = 128,
        verdict_parsing: Literal["standalone", "first_letter"] = "standalone",
        train_ranker_on_dev: bool = False,
        train_fuser_on_dev: bool = False,
        ranker_pair_orders: Literal["one", "both"] = "one",
        fuser_target: Literal["reference", "answer_line"] = "reference",
        epochs_per_iteration: int = 3,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, epochs_per_iteration=epochs_per_iteration, **kwargs)
        self.trained_roles = [
            role for role, on in (("ranker", train_ranker_on_dev), ("fuser", train_fuser_on_dev)) if on
        ]
        self.needs_calibration = bool(self.trained_roles)  # zero-shot needs neither dev nor fit
        if top_k < 1:
            raise UserError(f"llm_blender.top_k must be >= 1, got {top_k}")
        for role, value in (("ranker", ranker), ("fuser", fuser)):
            if isinstance(value, int) and not 0 <= value < len(collaborators):
                raise UserError(
                    f"llm_blender.{role}={value} but there are {len(collaborators)} collaborators"
                )
        self.ranker = ranker
        self.fuser = fuser
        self.top_k = top_k
        self.verdict_parsing = verdict_parsing
        self.ranker_pair_orders = ranker_pair_orders
        self.fuser_target = fuser_target
        self.ranker_decoding = replace(self.decoding, max_new_tokens=ranker_max_new_tokens)
        self.helpers: dict[str, Collaborator] = {}

    def setup(self, stage: str) -> None:
        if stage == "fit" and not self.trained_roles:
            raise UserError(
                "llm_blender: nothing to fit in the zero-shot form; set train_ranker_on_dev and/or "
                "train_fuser_on_dev to train on dev, or run `test`"
            )
        super().setup(stage)
        device = self.trainer.strategy.root_device if self._trainer is not None else "cpu"
        for role, value in (("ranker", self.ranker), ("fuser", self.fuser)):
            if isinstance(value, str) and role not in self.helpers:
                self.helpers[role] = load_collaborator(value, device)

    # -- the trained form ------------------------------------------------------------------------

    def configure_model(self) -> None:
        if self.trained_roles:
            super().configure_model()

    def models_to_train(self) -> dict[str, Collaborator]:
        roles = {}
        for role in self.trained_roles:
            value = getattr(self, role)
            roles[role] = self.collaborators[value] if isinstance(value, int) else self.helpers[role]
        return roles

    def install_agents(self) -> None:
        """The collaborators answer as they are; only the ranker and fuser are tuned."""

    def ensure_calibrated(self) -> None:
        if self.trained_roles:
            super().ensure_calibrated()  # a trained form needs its fit checkpoint

    def build_iteration(self, iteration: int) -> dict[str, list[dict]]:
        examples = {e["id"]: e for e in self.dev_examples()}
        names = self.collaborator_names
        items: dict[str, list[dict]] = {}
        for row in self.dev_table.rows:
            example = examples[row["id"]]
            outputs = [row["outputs"][n] for n in names]
            scores = [row["scores"][n] if row["scores"][n] is not None else 0.0 for n in names]
            own = items.setdefault(row["id"], [])
            if "ranker" in self.trained_roles:
                for a, b in combinations(range(len(names)), 2):
                    if scores[a] == scores[b]:
                        continue
                    orders = ((a, b), (b, a)) if self.ranker_pair_orders == "both" else ((a, b),)
                    for first, second in orders:
                        prompt = PAIRWISE_PROMPT.format(
                            question=question_of(example), answer_a=outputs[first], answer_b=outputs[second]
                        )
                        verdict = "A" if scores[first] > scores[second] else "B"
                        own.append({"agent": "ranker", "prompt": prompt, "completion": verdict})
            if "fuser" in self.trained_roles:
                ranked = sorted(range(len(names)), key=lambda m: -scores[m])
                if self.fuser_target == "answer_line":
                    target = gold_answer(example)
                else:  # MoCo's: the reference as the task stores it, else the best dev candidate
                    target = reference_text(example) or outputs[ranked[0]]
                if target is not None:
                    prompt = self.fusion_prompt(example, [outputs[m] for m in ranked[: self.top_k]])
                    own.append({"agent": "fuser", "prompt": prompt, "completion": target})
        return items

    def items_loss(self, items: list[dict]) -> torch.Tensor:
        losses = []
        for role in sorted({item["agent"] for item in items}):
            own = [item for item in items if item["agent"] == role]
            loss = self.agent_sft_loss(role, [x["prompt"] for x in own], [x["completion"] for x in own])
            losses.append(loss * len(own))
        return torch.stack(losses).sum() / len(items)

    # -- zero-shot and trained: rank, then fuse -----------------------------------------------

    def role_name(self, role: str) -> str:
        value = getattr(self, role)
        return self.collaborator_names[value] if isinstance(value, int) else self.helpers[role].name

    def ask_role(
        self,
        role: str,
        prompts: Sequence[Prompt],
        ids: Sequence[str],
        step: str,
        decoding: DecodingConfig | None = None,
    ) -> list[Generation]:
        """Ask the ranker or the fuser: a collaborator through ``ask``, another model directly."""
        value = getattr(self, role)
        if self.agents is not None and role in self.agents.agents:
            return self.ask(self.agents.agents[role], prompts, ids, step=step, decoding=decoding)
        if isinstance(value, int):
            return self.ask(value, prompts, ids, step=step, decoding=decoding)
        # CollaborationModule.ask only takes collaborator indices: same seeding and cost accounting here
        seeds = [self.seed_of(example_id, role, step) for example_id in ids]
        outputs = self.engine.generate(self.helpers[role], prompts, decoding or self.decoding, seeds)
        self._charge(ids, outputs)
        return outputs

    def collaborate(self, batch: Batch) -> list[Answer]:
        ids = batch.ids
        candidates = [[o.text for o in outputs] for outputs in self.ask_all(batch.prompts, ids)]
        per_example = [[candidates[m][i] for m in range(len(self.collaborators))] for i in range(len(batch))]
        wins = self.rank(batch, per_example)
        top = [sorted(range(len(w)), key=lambda m: -w[m])[: self.top_k] for w in wins]
        fusion_prompts = [
            self.fusion_prompt(example, [per_example[i][m] for m in top[i]])
            for i, example in enumerate(batch)
        ]
        fused = self.ask_role("fuser", fusion_prompts, ids, step="fuse")
        names = self.collaborator_names
        return [
            Answer(
                fused[i].text,
                by=self.role_name("fuser"),
                details={
                    "wins": {names[m]: w for m, w in enumerate(wins[i])},
                    "top": [names[m] for m in top[i]],
                    "candidates": {names[m]: text for m, text in enumerate(per_example[i])},
                },
            )
            for i in range(len(batch))
        ]

    def rank(self, batch: list[Example], per_example: list[list[str]]) -> list[list[float]]:
        """Win counts per candidate from one batched ranker call over every pair of every example."""
        pairs = [(i, a, b) for i in range(len(batch)) for a, b in combinations(range(len(per_example[i])), 2)]
        prompts = [
            PAIRWISE_PROMPT.format(
                question=question_of(batch[i]), answer_a=per_example[i][a], answer_b=per_example[i][b]
            )
            for i, a, b in pairs
        ]
        verdicts = self.ask_role(
            "ranker", prompts, [batch[i]["id"] for i, _, _ in pairs], "rank", self.ranker_decoding
        )
        wins = [[0.0] * len(candidates) for candidates in per_example]
        for (i, a, b), verdict in zip(pairs, verdicts):
            choice = parse_preference(verdict.text, self.verdict_parsing)
            if choice == "A":
                wins[i][a] += 1.0
            elif choice == "B":
                wins[i][b] += 1.0
            else:  # no verdict: half a win each, so the pair does not move the ranking
                wins[i][a] += 0.5
                wins[i][b] += 0.5
        return wins

    def fusion_prompt(self, example: Example, ranked: list[str]) -> str:
        candidates = "\n\n".join(f"Candidate {rank}:\n{text.strip()}" for rank, text in enumerate(ranked, 1))
        answer_format = ANSWER_FORMATS.get(example["task_type"], "")
        return FUSION_PROMPT.format(
            question=question_of(example), candidates=candidates, answer_format=answer_format
        )


def reference_text(example: Example) -> str | None:
    """The dev reference as the task stores it: a multiple-choice option's text, the first of an
    f1_match list of answers, else the gold output (None or "" if there is none)."""
    record = example["record"]
    if example["task_type"] == "multiple_choice":
        return record.get("choices", {}).get(record.get("answer"))
    reference = record.get("output", record.get("reference"))
    if example["task_type"] == "f1_match" and isinstance(reference, str):
        try:
            answers = json.loads(reference)
        except ValueError:
            return reference
        return str(answers[0]) if isinstance(answers, list) and answers else reference
    if isinstance(reference, list):
        return str(reference[0]) if reference else None
    return None if reference is None else str(reference)


def gold_answer(example: Example) -> str | None:
    """The dev reference written the way the fusion prompt asks for it (None if there is none)."""
    record = example["record"]
    if example["task_type"] == "multiple_choice" and "answer" in record:
        return f"Answer: {record['answer']}"
    if example["task_type"] in ("exact_match", "f1_match") and "output" in record:
        gold = record["output"][0] if isinstance(record["output"], list) else record["output"]
        return f"Final Answer: \\boxed{{{gold}}}"
    reference = record.get("output", record.get("reference"))
    return None if reference is None else str(reference)


def parse_preference(text: str, rule: str = "standalone") -> str | None:
    """The verdict "A" or "B": the first standalone letter A or B in the reply, else None.

    ``rule="first_letter"`` reads MoCo's way: the first A or B character anywhere, case-blind.
    """
    if rule == "first_letter":
        return next((ch for ch in text.upper() if ch in "AB"), None)
    for token in text.replace("*", " ").replace(".", " ").replace(":", " ").split():
        word = token.strip("\"'()[]").upper()
        if word in ("A", "B"):
            return word
    return None
