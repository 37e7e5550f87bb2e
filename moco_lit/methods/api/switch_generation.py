"""Switch generation: collaborators take turns writing patches, and a selector picks whose turn it is.

The answer is written in patches of ``patch_size`` (25) tokens; before each patch a selector reads
the question and the patches so far (each tagged with its writer) and names the model that writes
the next one. The selector is a given LM checkpoint (``selector_model``, asked for a number) or is
trained in ``fit`` from dev rollouts: random switching up to a random point, then
``rollout_per_instance`` random continuations scored by the task metric; the label is the model
whose continuations scored best. Feng et al. 2025, "When One LLM Drools, Multi-LLM Collaboration
Rules"; MoCo: ``switch_generation``.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from moco_lit.collaborators import Collaborator, load_collaborator
from moco_lit.decoding import DecodingSession, JointDecoder, PatchRule, module_fingerprint
from moco_lit.dev_table import DevTrainedModule, question_text
from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig, example_seed
from moco_lit.methods.base import Answer

log = logging.getLogger(__name__)

SELECTOR_PROMPT = (
    "{question}\n\nThe answer so far, segment by segment:\n{segments}\n"
    "Which model, from 0 to {last}, should write the next segment? Reply with its number.\nModel "
)
SEGMENT_LINE = "[model {model}] {text}\n"
WAIT_TEXT = " Wait,"  # s1-style: a model that stops early is made to go on (wait_flag)
OBJECTIVE_TEXT = " The final answer is"  # before the last patch (objective_flag)

Selector = Callable[[DecodingSession, list[int], list[list[tuple[int, str]]]], list[int]]


def selector_prompt(question: str, patches: list[tuple[int, str]], count: int) -> str:
    segments = "".join(SEGMENT_LINE.format(model=m, text=text) for m, text in patches) or "(nothing yet)\n"
    return SELECTOR_PROMPT.format(question=question, segments=segments, last=count - 1)


class TurnTaking(PatchRule):
    """Patch by patch: ``select(session, rows, patches)`` names the writer of each row's next patch
    (``patches[row]`` = the (model, text) patches so far). ``rounds[row]`` caps a row's patches
    (rollout prefixes); ``wait`` and ``objective`` are MoCo's ``wait_flag`` / ``objective_flag``."""

    def __init__(
        self,
        patch_size: int,
        select: Selector,
        key: str,
        wait: bool = False,
        objective: bool = False,
        rounds: list[int] | None = None,
    ) -> None:
        self.patch_size, self.select, self.key = patch_size, select, key
        self.wait, self.objective, self.rounds = wait, objective, rounds
        self.patches: list[list[tuple[int, str]]] = []

    def reset(self, batch_size: int) -> None:
        self.patches = [[] for _ in range(batch_size)]

    def run(self, session: DecodingSession) -> None:
        if len(self.patches) != len(session.texts):
            self.reset(len(session.texts))
        while rows := [
            r for r in session.writing_rows() if self.rounds is None or len(self.patches[r]) < self.rounds[r]
        ]:
            if self.objective:
                last = [r for r in rows if session.remaining(r) <= self.patch_size and self.patches[r]]
                last = [r for r in last if not session.texts[r].endswith(OBJECTIVE_TEXT)]
                session.commit(
                    last,
                    [OBJECTIVE_TEXT] * len(last),
                    [self.patches[r][-1][0] for r in last],
                    tokens=[0] * len(last),
                    author_holds_text=False,
                )
            choices = self.select(session, rows, self.patches)
            for model in sorted(set(choices)):
                group = [row for row, choice in zip(rows, choices) if choice == model]
                patches = session.write_patch(
                    model, group, [min(self.patch_size, session.remaining(r)) for r in group]
                )
                ended = [p.ended and not self.wait for p in patches]
                session.commit(
                    group, [p.text for p in patches], model, ended=ended, tokens=[p.tokens for p in patches]
                )
                for row, patch in zip(group, patches):
                    self.patches[row].append((model, patch.text))
                waiting = [
                    row for row, p in zip(group, patches) if p.ended and self.wait and session.remaining(row)
                ]
                # counted as one token, so a model that only ever stops still runs out of budget
                session.commit(
                    waiting,
                    [WAIT_TEXT] * len(waiting),
                    model,
                    tokens=[1] * len(waiting),
                    author_holds_text=False,
                )

    def row_details(self, row: int) -> dict[str, Any]:
        return {"writers": [model for model, _ in self.patches[row]] if row < len(self.patches) else []}


class SwitchGeneration(DevTrainedModule):
    """Args:
    patch_size: tokens per patch (MoCo: 25).
    selector_model: an LM checkpoint that names the next writer when asked; None trains a selector
        in ``fit`` (a linear head over ``selector_base_model``'s mean-pooled hidden state).
    selector_base_model: the frozen encoder / small LM under the trained selector's head.
    training_instance_num: dev questions used for rollouts (MoCo: 500; all dev if fewer).
    rollout_per_instance: random continuations per question (MoCo: 16); the first patch of
        rollout r is written by model ``r % collaborators`` so every model is tried.
    objective_flag: append " The final answer is" before the last patch.
    wait_flag: a model that stops early gets " Wait," and the turns go on.
    learning_rate: AdamW learning rate of the selector head.

    MoCo LoRA-tunes a 7B causal LM as selector on the rollout labels and scores rollouts with a
    reward model; here the labels come from the benchmark's metric and the selector is a head on a
    frozen embedding, which trains in seconds (pass a tuned causal LM as ``selector_model`` for
    MoCo's setting).
    """

    method_name = "switch_generation"
    level = "api"
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        patch_size: int = 25,
        selector_model: str | None = None,
        selector_base_model: str = "sentence-transformers/all-MiniLM-L6-v2",
        training_instance_num: int = 500,
        rollout_per_instance: int = 16,
        objective_flag: bool = False,
        wait_flag: bool = False,
        learning_rate: float = 1e-3,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, learning_rate=learning_rate, **kwargs)
        if patch_size < 1:
            raise UserError(f"switch_generation.patch_size must be at least 1, got {patch_size}")
        if training_instance_num < 1 or rollout_per_instance < 1:
            raise UserError(
                "switch_generation.training_instance_num and rollout_per_instance must be at least 1"
            )
        self.needs_calibration = selector_model is None
        self.head: nn.Module | None = None
        self.embedder = None  # frozen; never in the checkpoint or the optimiser
        self.selector: Collaborator | None = None
        self._features = torch.empty(0)
        self._labels = torch.empty(0, dtype=torch.long)

    # -- the selector ----------------------------------------------------------------------------

    def configure_model(self) -> None:
        device = self.trainer.strategy.root_device if self._trainer is not None else self.device
        if self.hparams.selector_model is not None:
            if self.selector is None:
                self.selector = load_collaborator(self.hparams.selector_model, device)
        elif self.head is None:
            from moco_lit.evaluation.judges import EmbeddingJudge

            self.embedder = EmbeddingJudge.load(self.hparams.selector_base_model, device, batch_size=32)
            width = self.embedder.model.config.hidden_size
            self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, len(self.collaborator_specs))).to(
                device
            )

    def selector_for(self, ids_by_prompt: dict[str, str]) -> Selector:
        count = len(self.collaborator_specs)

        def select(
            session: DecodingSession, rows: list[int], patches: list[list[tuple[int, str]]]
        ) -> list[int]:
            prompts = [selector_prompt(question_text(session.prompts[r]), patches[r], count) for r in rows]
            if self.head is not None:
                with torch.no_grad():
                    return self.head_logits(self.embed(prompts)).argmax(dim=-1).tolist()
            ids = [ids_by_prompt[repr(session.prompts[r])] for r in rows]
            replies = self.ask(
                self.selector, prompts, ids, step="selector", decoding=DecodingConfig(max_new_tokens=4)
            )
            return [
                _model_number(
                    reply.text, count, random.Random(example_seed(session.seeds[r], len(patches[r])))
                )
                for r, reply in zip(rows, replies)
            ]

        return select

    def embed(self, texts: list[str]) -> torch.Tensor:
        return self.embedder.embed(texts).clone().to(self.device)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.to(self.head[-1].weight.dtype))

    def turn_taking(self, select: Selector, rounds: list[int] | None = None) -> TurnTaking:
        selector = module_fingerprint(self.head) if self.head is not None else self.selector.fingerprint
        key = (
            f"switch_generation(patch={self.hparams.patch_size},selector={selector},"
            f"wait={self.hparams.wait_flag},objective={self.hparams.objective_flag})"
        )
        return TurnTaking(
            self.hparams.patch_size, select, key, self.hparams.wait_flag, self.hparams.objective_flag, rounds
        )

    def collaborate(self, batch: list[dict]) -> list[Answer]:
        ids = [example["id"] for example in batch]
        prompts = [example["prompt"] for example in batch]
        rule = self.turn_taking(self.selector_for({repr(p): i for p, i in zip(prompts, ids)}))
        models = list(range(len(self.collaborators)))
        outputs = self.ask_joint(models, prompts, ids, rule, step="switch_generation")
        names = self.collaborator_names
        return [
            Answer(
                output.text,
                by=names,
                details={
                    "writers": [names[m] for m in output.details.get("writers", [])],
                    "segments": [[names[m], text] for m, text in output.details.get("segments", [])],
                },
            )
            for output in outputs
        ]

    # -- fit: rollouts on dev, then the head's epochs ---------------------------------------------

    def ensure_calibrated(self) -> None:
        if self.head is not None:
            super().ensure_calibrated()

    def on_fit_start(self) -> None:
        self.calibrated.fill_(True)
        if self.head is None:
            log.info("switch_generation: a selector_model is given; nothing to train")
            return
        examples = self.trainer.datamodule.examples("dev")
        draw = random.Random(self.hparams.seed)
        chosen = draw.sample(examples, min(self.hparams.training_instance_num, len(examples)))
        prompts, labels = [], []
        size = self.hparams.generation_batch_size
        for start in range(0, len(chosen), size):
            batch_prompts, batch_labels = self.label_instances(chosen[start : start + size], draw)
            prompts += batch_prompts
            labels += batch_labels
        self._example_cost.clear()
        self._features = self.embed(prompts)
        self._labels = torch.tensor(labels, dtype=torch.long)
        shares = {name: labels.count(m) for m, name in enumerate(self.collaborator_names)}
        log.info("switch_generation: selector labels on %d dev rollout states: %s", len(labels), shares)

    def label_instances(self, batch: list[dict], draw: random.Random) -> tuple[list[str], list[int]]:
        """Selector prompts at random prefixes of ``batch`` and the model whose rollouts scored best."""
        count, rollouts = len(self.collaborators), self.hparams.rollout_per_instance
        decoder = JointDecoder(self.collaborators, self.decoding)
        prompts = [example["prompt"] for example in batch]
        seeds = [example_seed(self.hparams.seed, example["id"], "rollout") for example in batch]
        total_rounds = math.ceil(self.decoding.max_new_tokens / self.hparams.patch_size)
        rounds = [draw.randint(0, max(total_rounds - 1, 0)) for _ in batch]
        at_random = self.turn_taking(_random_selector(count, seeds), rounds)
        prefix = decoder.open(prompts, seeds)
        at_random.run(prefix)
        rows = [i for i in range(len(batch)) for _ in range(rollouts)]
        rollout = decoder.open(
            [prompts[i] for i in rows],
            [example_seed(seeds[i], r) for i in range(len(batch)) for r in range(rollouts)],
        )
        rollout.commit(
            list(range(len(rows))),
            [prefix.texts[i] for i in rows],
            0,
            ended=[prefix.done[i] for i in rows],
            tokens=[prefix.new_tokens[i] for i in rows],
            author_holds_text=False,
        )
        firsts = [r % count for _ in batch for r in range(rollouts)]
        self.turn_taking(_random_selector(count, rollout.seeds, firsts)).run(rollout)
        scores = self.score(rollout.texts, [batch[i] for i in rows])
        labels = []
        for i in range(len(batch)):
            utility = [[] for _ in range(count)]
            for r in range(rollouts):
                value = scores[i * rollouts + r]
                utility[firsts[i * rollouts + r]].append(-math.inf if value is None else float(value))
            means = [sum(u) / len(u) if u else -math.inf for u in utility]
            labels.append(max(range(count), key=lambda m: (means[m], -m)))
        questions = [question_text(p) for p in prompts]
        return [selector_prompt(q, at_random.patches[i], count) for i, q in enumerate(questions)], labels

    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor | None:
        if self.head is None:
            return None
        per = math.ceil(len(self._labels) / max(self.trainer.num_training_batches, 1))
        chunk = slice(batch_idx * per, (batch_idx + 1) * per)
        if len(self._labels[chunk]) == 0:
            return None
        logits = self.head_logits(self._features[chunk])
        loss = nn.functional.cross_entropy(logits.float(), self._labels[chunk].to(logits.device))
        self.log("train/loss", loss, batch_size=len(self._labels[chunk]), prog_bar=True)
        return loss

    def configure_optimizers(self):
        return super().configure_optimizers() if self.head is not None else None


def _random_selector(count: int, seeds: list[int], firsts: list[int] | None = None) -> Selector:
    """Uniform random writers, reproducible per row; ``firsts[row]`` fixes a row's first writer."""
    draws = [random.Random(seed) for seed in seeds]

    def select(session: DecodingSession, rows: list[int], patches: list[list[tuple[int, str]]]) -> list[int]:
        return [
            firsts[r] if firsts is not None and not patches[r] else draws[r].randrange(count) for r in rows
        ]

    return select


def _model_number(reply: str, count: int, fallback: random.Random) -> int:
    """The first model number in ``reply``; a seeded random model when there is none (as MoCo)."""
    for digits in re.findall(r"\d+", reply):
        if int(digits) < count:
            return int(digits)
    return fallback.randrange(count)
