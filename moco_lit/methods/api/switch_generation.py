"""Switch generation: collaborators take turns writing patches, and a selector picks whose turn it is.

The answer is written in ``max_new_tokens // patch_size`` rounds; each round a selector LM reads
the question and the patches so far (each tagged with its writer) and names the next writer,
which is asked for ``patch_size`` more tokens of the answer. ``fit`` trains the selector from dev
rollouts: random writers up to a random round, then ``rollout_per_instance`` random
continuations scored by a reward model; the label is the first writer whose continuations scored
best on average, and a causal LM (``selector_base_model``) is LoRA-tuned to reply with it.
Feng et al. 2025, "When One LLM Drools, Multi-LLM Collaboration Rules"; MoCo: ``switch_generation``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

from moco_lit.collaborators import Collaborator, load_causal_lm, load_collaborator, lora_of, parse_spec
from moco_lit.decoding import DecodingSession, PatchRule, module_fingerprint
from moco_lit.dev_table import question_text
from moco_lit.errors import UserError
from moco_lit.evaluation.judges import EmbeddingJudge, RewardModelJudge
from moco_lit.generation import example_seed
from moco_lit.methods.core.dev_trained import DevTrainedModule
from moco_lit.methods.core.module import Answer, Batch
from moco_lit.training import completion_batch, sft_loss

log = logging.getLogger(__name__)

SELECTOR_PROMPT = (
    "{question}\n\nThe answer so far, segment by segment:\n{segments}\n"
    "Which model, from 0 to {last}, should write the next segment? Reply with its number.\nModel "
)
SEGMENT_LINE = "[model {model}] {text}\n"
WRITER_PROMPT = (
    "{question}\n\nContinue the answer below from where it stops; do not repeat it.\n\nAnswer: {answer}"
)
WAIT_TEXT = " Wait,"  # s1-style: a model that stops early is made to go on (wait_flag)
OBJECTIVE_TEXT = " The final answer is"  # before the last patch (objective_flag)
END_MARK = "[done]"  # after a patch that stopped early (no wait_flag); the answer ends there
SKYWORK = "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2"


def selector_prompt(question: str, patches: list[tuple[int, str]], count: int) -> str:
    segments = "".join(SEGMENT_LINE.format(model=m, text=text) for m, text in patches) or "(nothing yet)\n"
    return SELECTOR_PROMPT.format(question=question, segments=segments, last=count - 1)


@dataclass
class Turns:
    """One answer written patch by patch: ``segments`` are (writer, text), end marks included."""

    question: str
    segments: list[tuple[int, str]] = field(default_factory=list)
    sequence: str = ""

    def mark(self, text: str) -> None:
        model, last = self.segments[-1]
        self.segments[-1] = (model, last + text)
        self.sequence += text

    def add(self, model: int, patch: str) -> None:
        self.segments.append((model, patch))
        self.sequence += patch + " "

    def output(self) -> str:
        return self.sequence.strip().split(END_MARK)[0].strip()


def writer_number(reply: str, count: int) -> int | None:
    """The highest model number that appears anywhere in ``reply`` (MoCo's reading), else None."""
    return next((m for m in range(count - 1, -1, -1) if str(m) in reply), None)


def fallback_writer(seed: int, example_id: str, round_index: int, count: int) -> int:
    """A reproducible random writer for a selector reply that names none (MoCo draws at random)."""
    return random.Random(example_seed(seed, example_id, "selector", round_index)).randrange(count)


class SwitchGeneration(DevTrainedModule):
    """Args:
    patch_size: tokens per patch (MoCo: 25); the answer has ``max_new_tokens // patch_size`` patches.
    selector_model: an LM checkpoint that names the next writer when asked; None trains one in ``fit``.
    selector: the trained selector: ``causal_lm`` (MoCo's: ``selector_base_model`` LoRA-tuned to
        reply with the writer's number) or ``encoder`` (a linear head on ``selector_encoder``'s
        frozen mean-pooled embedding, trained in seconds; not MoCo's).
    selector_base_model: the causal LM the selector is tuned from (MoCo: Qwen/Qwen2.5-7B-Instruct).
    selector_encoder: the frozen encoder under ``selector: encoder``.
    selector_max_new_tokens: tokens of a selector reply; None gives max_new_tokens (MoCo's).
    training_instance_num: rollout states; MoCo's ``training_instance_num // generation_batch_size``
        rounds each draw ``generation_batch_size`` dev questions (MoCo: 500).
    rollout_per_instance: random continuations per state (MoCo: 16).
    rollout_reward_model: the reward model that scores each continuation (MoCo:
        Skywork/Skywork-Reward-Llama-3.1-8B-v0.2); None scores them with the task metric.
    objective_flag: append " The final answer is" before the last patch.
    wait_flag: after a patch shorter than ``patch_size`` characters (the writer stopped), " Wait,"
        and the turns go on; without it the answer ends there.
    learning_rate, lr_schedule: default 1e-5 and cosine for ``causal_lm`` (MoCo's), 1e-3 and
        constant for the encoder head.
    lora_r, lora_alpha, lora_dropout, lora_target_modules: the selector's LoRA (MoCo: 64, 16, 0.1,
        q/k/v/o projections).
    sft_batch_size: selector training rows per optimizer step (MoCo: 1 × 32 accumulated).
    sft_max_length: tokens per selector training row (MoCo: 4096).
    patching: ``prompt`` (MoCo's: each patch is a fresh request showing the answer so far) or
        ``joint`` (at test, one answer continued token by token across the writers' own caches;
        cheaper, and no writer re-reads the answer as a user turn).
    """

    method_name = "switch_generation"
    level = "api"
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        patch_size: int = 25,
        selector_model: str | None = None,
        selector: Literal["causal_lm", "encoder"] = "causal_lm",
        selector_base_model: str = "Qwen/Qwen2.5-7B-Instruct",
        selector_encoder: str = "sentence-transformers/all-MiniLM-L6-v2",
        selector_max_new_tokens: int | None = None,
        training_instance_num: int = 500,
        rollout_per_instance: int = 16,
        rollout_reward_model: str | None = SKYWORK,
        objective_flag: bool = False,
        wait_flag: bool = False,
        learning_rate: float | None = None,
        lr_schedule: Literal["cosine", "constant"] | None = None,
        lora_r: int = 64,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        lora_target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"],  # noqa: B006
        sft_batch_size: int = 32,
        sft_max_length: int = 4096,
        patching: Literal["prompt", "joint"] = "prompt",
        **kwargs,
    ) -> None:
        lm = selector == "causal_lm"
        super().__init__(
            collaborators,
            learning_rate=learning_rate or (1e-5 if lm else 1e-3),
            lr_schedule=lr_schedule or ("cosine" if lm else "constant"),
            **kwargs,
        )
        if selector not in ("causal_lm", "encoder"):
            raise UserError(f"switch_generation.selector must be causal_lm or encoder, got {selector!r}")
        if patching not in ("prompt", "joint"):
            raise UserError(f"switch_generation.patching must be prompt or joint, got {patching!r}")
        if patch_size < 1:
            raise UserError(f"switch_generation.patch_size must be at least 1, got {patch_size}")
        if training_instance_num < 1 or rollout_per_instance < 1 or sft_batch_size < 1:
            raise UserError(
                "switch_generation.training_instance_num, rollout_per_instance and sft_batch_size "
                "must be at least 1"
            )
        if self.decoding.max_new_tokens < patch_size:
            raise UserError(
                f"switch_generation: max_new_tokens ({self.decoding.max_new_tokens}) must be at least "
                f"patch_size ({patch_size}): the answer has max_new_tokens // patch_size patches"
            )
        if selector_model is None and self.decoding.max_new_tokens // patch_size < 4:
            raise UserError(
                f"switch_generation's selector training needs max_new_tokens // patch_size >= 4 (the "
                f"rollout states start after 1 to rounds - 3 patches), got {self.decoding.max_new_tokens} "
                f"// {patch_size}; raise max_new_tokens, lower patch_size or give a selector_model"
            )
        self.needs_calibration = selector_model is None
        self.head: nn.Module | None = None  # selector: encoder
        self.embedder = None  # frozen; never in the checkpoint or the optimiser
        self.selector_lm: nn.Module | None = None  # selector: causal_lm (LoRA on the base)
        self.selector_tokenizer = None
        self.selector: Collaborator | None = None
        self.sft_rows: list[dict] = []
        self._features = torch.empty(0)
        # a LoRA selector's checkpoint holds the adapter only (the base reloads from the hub/folder)
        self.strict_loading = not (selector_model is None and lm)

    # -- the selector ----------------------------------------------------------------------------

    def configure_model(self) -> None:
        device = self.trainer.strategy.root_device if self._trainer is not None else self.device
        if self.hparams.selector_model is not None:
            if self.selector is None:
                self.selector = load_collaborator(self.hparams.selector_model, device)
        elif self.hparams.selector == "encoder" and self.head is None:
            self.embedder = EmbeddingJudge.load(self.hparams.selector_encoder, device, batch_size=32)
            width = self.embedder.model.config.hidden_size
            count = len(self.collaborator_specs)
            self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, count)).to(device)
        elif self.hparams.selector == "causal_lm" and self.selector_lm is None:
            self.selector_lm, self.selector_tokenizer = self.load_selector_lm()
            self.selector_lm.to(device)

    def load_selector_lm(self) -> tuple[nn.Module, Any]:
        """``selector_base_model`` with a fresh LoRA adapter, and its tokenizer."""
        return load_causal_lm(
            self.hparams.selector_base_model,
            "switch_generation.selector_base_model",
            lora=lora_of(self.hparams),
        )

    def trained_selector(self, fingerprint: bool = True) -> Collaborator:
        """The tuned selector LM as a collaborator the generation engine can ask (its fingerprint,
        a hash of the adapter for the generation cache, is skipped when only rendering)."""
        digest = hashlib.sha256(self.hparams.selector_base_model.encode())
        for name, tensor in sorted(self.selector_lm.named_parameters()) if fingerprint else ():
            if tensor.requires_grad:
                digest.update(name.encode() + tensor.detach().float().cpu().numpy().tobytes())
        spec = parse_spec({"path": self.hparams.selector_base_model, "name": "selector"})
        return Collaborator(
            name="selector",
            spec=spec,
            tokenizer=self.selector_tokenizer,
            model=self.selector_lm,
            fingerprint=digest.hexdigest()[:24],
        )

    def choose_writers(self, turns: list[Turns], ids: list[str], round_index: int) -> list[int]:
        count = len(self.collaborator_specs)
        prompts = [selector_prompt(t.question, t.segments, count) for t in turns]
        if self.head is not None:
            with torch.no_grad():
                return self.head_logits(self.embed(prompts)).argmax(dim=-1).tolist()
        if self.selector is None:
            self.selector = self.trained_selector()
        tokens = self.hparams.selector_max_new_tokens or self.decoding.max_new_tokens
        decoding = replace(self.decoding, max_new_tokens=tokens)
        replies = self.ask(self.selector, prompts, ids, step=f"selector{round_index}", decoding=decoding)
        chosen = [writer_number(reply.text, count) for reply in replies]
        return [
            fallback_writer(self.hparams.seed, example_id, round_index, count) if m is None else m
            for m, example_id in zip(chosen, ids)
        ]

    def embed(self, texts: list[str]) -> torch.Tensor:
        return self.embedder.embed(texts).clone().to(self.device)

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.to(self.head[-1].weight.dtype))

    # -- writing an answer patch by patch ----------------------------------------------------------

    def write(
        self, turns: list[Turns], ids: list[str], rounds: int, choose, step: str, objective: bool = False
    ) -> None:
        """``rounds`` rounds of: ``choose(turns, round)`` names each row's writer, then every
        writer adds one patch to its rows (one batched request per writer). ``objective`` is
        ``objective_flag``, which MoCo applies to the test answers only."""
        patch = replace(self.decoding, max_new_tokens=self.hparams.patch_size)
        for round_index in range(rounds):
            writers = choose(turns, round_index)
            last = round_index == rounds - 1
            for t in turns:
                if last and objective and t.segments:
                    t.mark(OBJECTIVE_TEXT)
                # a patch shorter in characters than patch_size is in tokens has surely stopped
                if not last and round_index > 0 and len(t.segments[-1][1]) < self.hparams.patch_size:
                    t.mark(WAIT_TEXT if self.hparams.wait_flag else END_MARK)
            for model in sorted(set(writers)):
                group = [i for i, w in enumerate(writers) if w == model]
                prompts = [
                    WRITER_PROMPT.format(question=turns[i].question, answer=turns[i].sequence) for i in group
                ]
                outputs = self.ask(
                    model, prompts, [ids[i] for i in group], step=f"{step}{round_index}", decoding=patch
                )
                for i, output in zip(group, outputs):
                    turns[i].add(model, output.text)

    def collaborate(self, batch: Batch) -> list[Answer]:
        if self.hparams.patching == "joint":
            return self.collaborate_jointly(batch)
        ids = batch.ids
        turns = [Turns(question_text(prompt)) for prompt in batch.prompts]
        rounds = self.decoding.max_new_tokens // self.hparams.patch_size
        choose = lambda ts, r: self.choose_writers(ts, ids, r)  # noqa: E731
        self.write(turns, ids, rounds, choose, step="patch", objective=self.hparams.objective_flag)
        names = self.collaborator_names
        return [
            Answer(
                t.output(),
                by=names,
                details={
                    "writers": [names[m] for m, _ in t.segments],
                    "segments": [[names[m], text] for m, text in t.segments],
                },
            )
            for t in turns
        ]

    def collaborate_jointly(self, batch: Batch) -> list[Answer]:
        ids, prompts = batch.ids, batch.prompts
        questions = {repr(p): question_text(p) for p in prompts}
        by_prompt = dict(zip(map(repr, prompts), ids))

        def select(session: DecodingSession, rows: list[int], patches: list[list[tuple[int, str]]]):
            turns = [Turns(questions[repr(session.prompts[r])], list(patches[r])) for r in rows]
            row_ids = [by_prompt[repr(session.prompts[r])] for r in rows]
            return self.choose_writers(turns, row_ids, len(patches[rows[0]]) if rows else 0)

        selector = module_fingerprint(self.head) if self.head is not None else self.selector_key()
        key = (
            f"switch_generation(patch={self.hparams.patch_size},selector={selector},"
            f"wait={self.hparams.wait_flag},objective={self.hparams.objective_flag})"
        )
        rule = TurnTaking(
            self.hparams.patch_size, select, key, self.hparams.wait_flag, self.hparams.objective_flag
        )
        outputs = self.ask_joint(
            list(range(len(self.collaborators))), prompts, ids, rule, step="switch_generation"
        )
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

    def selector_key(self) -> str:
        if self.selector is None:
            self.selector = self.trained_selector()
        return self.selector.fingerprint

    # -- fit: rollouts on dev, then the selector's epochs -----------------------------------------

    def ensure_calibrated(self) -> None:
        if self.hparams.selector_model is None:
            super().ensure_calibrated()

    def on_fit_start(self) -> None:
        self.calibrated.fill_(True)
        if self.hparams.selector_model is not None:
            log.info("switch_generation: a selector_model is given; nothing to train")
            return
        self.sft_rows = self.rollout_labels(self.trainer.datamodule.examples("dev"))
        self._example_cost.clear()
        if self.head is not None:
            self._features = self.embed([row["prompt"] for row in self.sft_rows])
        steps = math.ceil(len(self.sft_rows) / self.hparams.sft_batch_size)
        if isinstance(self.trainer.limit_train_batches, float) and self.trainer.limit_train_batches == 1.0:
            self.trainer.limit_train_batches = steps
        labels = [row["label"] for row in self.sft_rows]
        shares = {name: labels.count(m) for m, name in enumerate(self.collaborator_names)}
        log.info("switch_generation: selector labels on %d dev rollout states: %s", len(labels), shares)

    def rollout_labels(self, examples: list[dict]) -> list[dict]:
        """MoCo's selector data: per round of ``generation_batch_size`` dev questions, random
        writers up to a random round, random continuations from there, and the first writer whose
        continuations scored best as the label. Every draw comes from one seeded stream, in
        MoCo's order (questions, round, then each writer round by round)."""
        size, count = self.generation_batch, len(self.collaborators)
        rounds = self.decoding.max_new_tokens // self.hparams.patch_size
        if size > len(examples) or self.hparams.training_instance_num < size:
            raise UserError(
                f"switch_generation draws generation_batch_size ({size}) dev questions per round, "
                f"training_instance_num // generation_batch_size rounds: it needs at least that many dev "
                f"questions (have {len(examples)}) and training_instance_num "
                f"({self.hparams.training_instance_num}) of at least that many"
            )
        draw = rollout_draws(self.hparams.seed)
        per = self.hparams.rollout_per_instance

        def at_random(turns: list[Turns], round_index: int) -> list[int]:
            return [draw.randint(0, count - 1) for _ in turns]

        rows: list[dict] = []
        for iteration in range(self.hparams.training_instance_num // size):
            batch = draw.sample(examples, size)
            start = draw.randint(1, rounds - 3)
            ids = [f"{example['id']}@{iteration}" for example in batch]
            prefixes = [Turns(question_text(example["prompt"])) for example in batch]
            self.write(prefixes, ids, start, at_random, step="prefix")
            states = [_joined(p.question, p.output()) for p in prefixes]
            rollouts = [Turns(states[i]) for i in range(size) for _ in range(per)]
            rollout_ids = [f"{ids[i]}/{k}" for i in range(size) for k in range(per)]
            self.write(rollouts, rollout_ids, rounds - start, at_random, step="rollout")
            states_per_rollout = [states[i] for i in range(size) for _ in range(per)]
            scores = self.rollout_scores(
                states_per_rollout,
                [r.output() for r in rollouts],
                [batch[i] for i in range(size) for _ in range(per)],
            )
            for i in range(size):
                utility = [[] for _ in range(count)]
                for k in range(per):
                    rollout = rollouts[i * per + k]
                    utility[rollout.segments[0][0]].append(scores[i * per + k])
                means = [sum(u) / len(u) if u else -math.inf for u in utility]
                label = means.index(max(means))
                prompt = selector_prompt(prefixes[i].question, prefixes[i].segments, count)
                rows.append(
                    {"id": batch[i]["id"], "prompt": prompt, "completion": str(label), "label": label}
                )
        return rows

    def rollout_scores(
        self, states: list[str], continuations: list[str], examples: list[dict]
    ) -> list[float]:
        """Each rollout's reward: the reward model on (state, state + continuation), as MoCo asks
        it, or the task metric of the whole answer (``rollout_reward_model: null``)."""
        name = self.hparams.rollout_reward_model
        if name is None:
            # the task metric reads the answer: the state's question part is the prompt itself
            answers = [_joined(s, c) for s, c in zip(states, continuations)]
            return [-math.inf if v is None else float(v) for v in self.score(answers, examples)]
        with RewardModelJudge.for_phase(name, device=self.trainer.strategy.root_device) as judge:
            return judge.score(states, [_joined(s, c) for s, c in zip(states, continuations)])

    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor | None:
        per = math.ceil(len(self.sft_rows) / max(self.trainer.num_training_batches, 1))
        start = batch_idx * per
        chunk = list(range(start, min(start + per, len(self.sft_rows))))
        if not chunk:
            return None
        loss = self.selector_loss(chunk)
        if loss is not None:
            self.log("train/loss", loss, batch_size=len(chunk), prog_bar=True)
        return loss

    def selector_loss(self, rows: list[int]) -> torch.Tensor | None:
        """The selector's loss on training rows ``rows`` (indices into ``sft_rows``)."""
        if self.head is not None:
            logits = self.head_logits(self._features[rows])
            labels = torch.tensor([self.sft_rows[r]["label"] for r in rows], device=logits.device)
            return nn.functional.cross_entropy(logits.float(), labels)
        selector = self.trained_selector(fingerprint=False)
        losses = []
        for r in rows:  # one row per forward pass, averaged, as MoCo's accumulated batches of 1
            row = self.sft_rows[r]
            rendered = selector.render(row["prompt"], self.decoding.enable_thinking)
            tokens = completion_batch(
                self.selector_tokenizer,
                [rendered],
                [row["completion"]],
                max_length=self.hparams.sft_max_length,
            )
            tokens = {key: value.to(self.device) for key, value in tokens.items()}
            logits = self.selector_lm(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).logits
            losses.append(sft_loss(logits, tokens["labels"]))
        return torch.stack(losses).mean()

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.selector_lm is not None:
            self.selector = None  # the tuned weights changed: a fresh fingerprint at the next use

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.selector_lm is not None:
            # the frozen base reloads from selector_base_model; keep only the adapter
            trainable = {
                f"selector_lm.{n}" for n, p in self.selector_lm.named_parameters() if p.requires_grad
            }
            checkpoint["state_dict"] = {
                k: v
                for k, v in checkpoint["state_dict"].items()
                if not k.startswith("selector_lm.") or k in trainable
            }

    def configure_optimizers(self):
        return super().configure_optimizers() if self.hparams.selector_model is None else None


def rollout_draws(seed: int) -> random.Random:
    """The one random stream of the selector's training data."""
    return random.Random(example_seed(seed, "switch_generation", "rollouts"))


def _joined(question: str, answer: str) -> str:
    return f"{question}\n\n{answer}" if answer else question


class TurnTaking(PatchRule):
    """``patching: joint``: patch by patch in one decoding session; ``select(session, rows, patches)``
    names the writer of each row's next patch (``patches[row]`` = the (model, text) patches so far)."""

    def __init__(
        self, patch_size: int, select, key: str, wait: bool = False, objective: bool = False
    ) -> None:
        self.patch_size, self.select, self.key = patch_size, select, key
        self.wait, self.objective = wait, objective
        self.patches: list[list[tuple[int, str]]] = []

    def reset(self, batch_size: int) -> None:
        self.patches = [[] for _ in range(batch_size)]

    def run(self, session: DecodingSession) -> None:
        if len(self.patches) != len(session.texts):
            self.reset(len(session.texts))
        while rows := session.writing_rows():
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
