"""Trained router: learn from dev results which collaborator should answer each question.

Every collaborator answers every dev question (the shared dev table); each question's label is
its best-scoring collaborator (ties go to the output a reward model prefers, as in MoCo, then to
the better dev model). A router learns question → label:
``router: causal_lm`` LoRA-tunes a causal LM to reply "Model k" (MoCo's ``api_trained_router``),
``router: encoder`` trains a small head on frozen mean-pooled sentence embeddings. At test the
router picks one collaborator per question and only that one answers: the causal LM writes a
reply and the highest model number in it is the choice (a seeded random one when it names none),
as in MoCo, or (``routing: logprob``) the likeliest "Model k" wins.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from typing import Literal

import torch
from torch import nn

from moco_lit.collaborators import Collaborator, load_causal_lm, lora_of, parse_spec, render_plain
from moco_lit.dev_table import DevTable, question_text, reward_ties
from moco_lit.errors import UserError
from moco_lit.evaluation.judges import EmbeddingJudge, RewardModelJudge
from moco_lit.methods.core.dev_trained import DevTrainedModule
from moco_lit.methods.core.module import Answer, Batch
from moco_lit.training import completion_batch, completion_logps, sft_loss

log = logging.getLogger(__name__)

ROUTER_PROMPT = (
    "Several models can answer the question below. Decide which one will answer it best.\n"
    "{descriptions}\nQuestion: {question}\n\n"
    "Reply with the chosen model only, as 'Model k' with k from 1 to {count}."
)
DESCRIPTION_LINE = "Model {number}: {description}\n"
ROUTER_CHOICE = " Model {number}"

DEFAULT_BASE_MODELS = {
    "causal_lm": "Qwen/Qwen2.5-7B-Instruct",  # MoCo's router
    "encoder": "sentence-transformers/all-MiniLM-L6-v2",
}
DEFAULT_LEARNING_RATES = {"causal_lm": 1e-5, "encoder": 1e-3}
DEFAULT_LR_SCHEDULES = {"causal_lm": "cosine", "encoder": "constant"}
# MoCo breaks every dev tie with this reward model; the encoder router, this project's cheap
# alternative, keeps to the dev score alone unless one is named
DEFAULT_TIE_BREAK_REWARD_MODELS = {"causal_lm": "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2", "encoder": None}


def model_named_in(reply: str, count: int) -> int | None:
    """The collaborator a router's reply names: the highest k in 1..count whose digits occur in it
    (MoCo's reading, so "Model 2 or 3" is 3), as an index; None when it names none."""
    return next((k - 1 for k in range(count, 0, -1) if str(k) in reply), None)


class TrainedRouter(DevTrainedModule):
    """Args:
    router: ``causal_lm`` (LoRA-tuned LM that names the model, MoCo's) or ``encoder``
        (frozen sentence embedding + trainable head; cheaper).
    router_base_model: the router's model; default Qwen/Qwen2.5-7B-Instruct for ``causal_lm``,
        sentence-transformers/all-MiniLM-L6-v2 for ``encoder``.
    model_descriptions: one line per collaborator shown to the ``causal_lm`` router.
    learning_rate: default 1e-5 for ``causal_lm`` (MoCo's), 1e-3 for the encoder head.
    weight_decay: AdamW weight decay.
    lr_schedule: default ``cosine`` for ``causal_lm`` (MoCo's), ``constant`` for the encoder head.
    head_hidden: hidden width of the encoder head's MLP; 0 makes it linear.
    lora: LoRA adapter on the causal LM router (MoCo: r 64, alpha 16, dropout 0.1 on q/k/v/o);
        false fine-tunes all its weights.
    router_batch_size: questions per router forward pass at test (``routing: logprob``).
    routing: how the ``causal_lm`` router chooses at test. ``text`` (MoCo's): it writes a reply
        with the method's decoding, and the highest model number in the reply is the choice; a
        reply with none gets a random model (seeded per example). ``logprob``: the "Model k" it
        gives the highest log-probability, with no sampling and no fallback.
    tie_break_reward_model: a reward model (``from_pretrained`` name or folder) that breaks ties
        between collaborators with the same dev score on a question: the output it scores highest
        is the label (equal rewards fall back to dev order); rewards land in ``dev_answers.jsonl``
        as ``tie_rewards``. ``default``: MoCo's Skywork/Skywork-Reward-Llama-3.1-8B-v0.2 for the
        ``causal_lm`` router, none for the encoder router; ``none`` (or null) turns it off, so
        ties go to the better dev model.
    """

    method_name = "trained_router"
    report_label_args = ("router",)
    level = "api"
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        router: Literal["causal_lm", "encoder"] = "causal_lm",
        router_base_model: str | None = None,
        model_descriptions: list[str] | None = None,
        learning_rate: float | None = None,
        weight_decay: float = 0.0,
        lr_schedule: Literal["cosine", "constant"] | None = None,
        head_hidden: int = 0,
        lora: bool = True,
        lora_r: int = 64,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        lora_target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"],  # noqa: B006
        router_batch_size: int = 16,
        routing: Literal["text", "logprob"] = "text",
        tie_break_reward_model: str | None = "default",
        **kwargs,
    ) -> None:
        super().__init__(
            collaborators,
            learning_rate=learning_rate or DEFAULT_LEARNING_RATES.get(router, 1e-3),
            weight_decay=weight_decay,
            lr_schedule=lr_schedule or DEFAULT_LR_SCHEDULES.get(router, "constant"),
            **kwargs,
        )
        if router not in DEFAULT_BASE_MODELS:
            raise UserError(f"trained_router.router must be causal_lm or encoder, got {router!r}")
        if model_descriptions is not None and len(model_descriptions) != len(collaborators):
            raise UserError(
                f"trained_router.model_descriptions has {len(model_descriptions)} entries "
                f"for {len(collaborators)} collaborators; give one per collaborator"
            )
        if routing not in ("text", "logprob"):
            raise UserError(f"trained_router.routing must be text or logprob, got {routing!r}")
        if tie_break_reward_model == "default":
            tie_break_reward_model = DEFAULT_TIE_BREAK_REWARD_MODELS[router]
        self.tie_break_reward_model = None if tie_break_reward_model == "none" else tie_break_reward_model
        self.router_kind = router
        self.router_base_model = router_base_model or DEFAULT_BASE_MODELS[router]
        self.model_descriptions = model_descriptions
        self.head: nn.Module | None = None  # encoder router (built once the embedding size is known)
        self.router_lm: nn.Module | None = None  # causal LM router
        self.router_tokenizer = None
        self.embedder = None  # frozen, not a submodule: never in the checkpoint or the optimiser
        self._dev_features: dict[str, torch.Tensor] = {}
        # a LoRA router's checkpoint holds the adapter only (the base reloads from router_base_model)
        self.strict_loading = not (router == "causal_lm" and lora)

    # -- the router ---------------------------------------------------------------------------

    def configure_model(self) -> None:
        if self.router_kind == "encoder" and self.head is None:
            device = self.trainer.strategy.root_device if self._trainer is not None else self.device
            self.embedder = EmbeddingJudge.load(self.router_base_model, device, batch_size=32)
            width = self.embedder.model.config.hidden_size
            count, hidden = len(self.collaborator_specs), self.hparams.head_hidden
            layers = [nn.LayerNorm(width)]  # embeddings of small models have tiny, uneven scales
            if hidden > 0:
                layers += [nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, count)]
            else:
                layers += [nn.Linear(width, count)]
            self.head = nn.Sequential(*layers).to(self.device)
        elif self.router_kind == "causal_lm" and self.router_lm is None:
            self.router_lm, self.router_tokenizer = self._load_router_lm()

    def _load_router_lm(self):
        # a fetched short name works here too
        lora = lora_of(self.hparams) if self.hparams.lora else None
        model, tokenizer = load_causal_lm(self.router_base_model, "router_base_model", lora=lora)
        return model.to(self.device), tokenizer

    def router_message(self, question: str) -> str:
        count = len(self.collaborator_specs)
        descriptions = ""
        if self.model_descriptions:
            lines = (
                DESCRIPTION_LINE.format(number=k + 1, description=d)
                for k, d in enumerate(self.model_descriptions)
            )
            descriptions = "\n" + "".join(lines)
        return ROUTER_PROMPT.format(descriptions=descriptions, question=question, count=count)

    def router_prompt(self, question: str) -> str:
        messages = [{"role": "user", "content": self.router_message(question)}]
        if getattr(self.router_tokenizer, "chat_template", None):
            return self.router_tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return render_plain(messages)

    def router_logits(self, questions: list[str], features: torch.Tensor | None = None) -> torch.Tensor:
        """``(questions, collaborators)`` scores of the router (softmax gives its probabilities)."""
        if self.router_kind == "encoder":
            features = self.embed(questions) if features is None else features
            return self.head(features.to(self.head[-1].weight.dtype))
        count = len(self.collaborator_specs)
        prompts = [self.router_prompt(q) for q in questions for _ in range(count)]
        choices = [ROUTER_CHOICE.format(number=k + 1) for _ in questions for k in range(count)]
        batch = completion_batch(self.router_tokenizer, prompts, choices)
        batch = {key: value.to(self.device) for key, value in batch.items()}
        return completion_logps(self.router_lm, batch).reshape(len(questions), count)

    def embed(self, questions: list[str]) -> torch.Tensor:
        # the embedder runs in inference mode; clone so the head can save its input for backward
        return self.embedder.embed(questions).clone().to(self.device)

    # -- fit: the dev table, then the router's epochs -----------------------------------------

    def prepare_training(self, table: DevTable) -> list[int]:
        labels = table.best_models(self.dev_ranking(), rewards=self.tie_rewards(table))
        if self.router_kind == "encoder":
            # the embedding is frozen: embed every dev question once, not once per epoch
            features = self.embed([row["question"] for row in table.rows])
            self._dev_features = dict(zip(table.ids, features))
        shares = Counter(self.collaborator_names[label] for label in labels)
        log.info("trained_router labels on %d dev questions: %s", len(table), dict(shares))
        return labels

    def tie_rewards(self, table: DevTable) -> list[dict[int, float]] | None:
        """Rewards of the tied-best outputs per dev question, or None without a reward model."""
        name = self.tie_break_reward_model
        if name is None:
            return None
        # needed for these labels only: released before the router's epochs
        with RewardModelJudge.for_phase(name, device=self.trainer.strategy.root_device) as judge:
            rewards = reward_ties(table, judge.score)
        log.info("trained_router: %d tied dev questions scored by %s", sum(map(bool, rewards)), name)
        return rewards

    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor:
        labels = [self.dev_labels[row] for row in self.dev_rows(batch)]
        if self.router_kind == "encoder":
            features = torch.stack([self._dev_features[example["id"]] for example in batch])
            target = torch.tensor(labels, device=self.device)
            # DeepSpeed casts the head to bf16/fp16; the cached features stay float32
            logits = self.head(features.to(self.head[-1].weight.dtype))
            loss = nn.functional.cross_entropy(logits.float(), target)
        else:
            prompts = [self.router_prompt(question_text(example["prompt"])) for example in batch]
            choices = [ROUTER_CHOICE.format(number=label + 1) for label in labels]
            tokens = completion_batch(self.router_tokenizer, prompts, choices)
            tokens = {key: value.to(self.device) for key, value in tokens.items()}
            logits = self.router_lm(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).logits
            loss = sft_loss(logits, tokens["labels"])
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.router_kind == "causal_lm" and self.hparams.lora:
            # the frozen base model is reloaded from router_base_model; keep only the adapter
            trainable = {f"router_lm.{n}" for n, p in self.router_lm.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {
                k: v
                for k, v in checkpoint["state_dict"].items()
                if not k.startswith("router_lm.") or k in trainable
            }

    # -- test: route each question to one collaborator ----------------------------------------

    @torch.no_grad()
    def route(self, batch: list[dict]) -> torch.Tensor:
        """``(examples, collaborators)`` router probabilities."""
        questions = [question_text(example["prompt"]) for example in batch]
        size = self.hparams.router_batch_size
        logits = [self.router_logits(questions[i : i + size]) for i in range(0, len(questions), size)]
        return torch.softmax(torch.cat(logits).float(), dim=-1).cpu()

    def router_replies(self, batch: list[dict]) -> list[str]:
        """The causal LM router's written reply to each example's routing prompt."""
        weights = hashlib.sha256()
        for name, value in self.router_lm.named_parameters():
            if value.requires_grad:
                weights.update(name.encode() + value.detach().float().cpu().numpy().tobytes())
        router = Collaborator(
            "router",
            parse_spec(self.router_base_model),
            tokenizer=self.router_tokenizer,
            model=self.router_lm,
            fingerprint=f"router:{self.router_base_model}:{weights.hexdigest()[:16]}",
        )
        messages = [self.router_message(question_text(example["prompt"])) for example in batch]
        seeds = [self.seed_of(example["id"], "router") for example in batch]
        self.router_lm.eval()
        return [output.text for output in self.engine.generate(router, messages, self.decoding, seeds)]

    def route_by_text(self, batch: list[dict]) -> tuple[list[int], list[dict]]:
        count = len(self.collaborator_specs)
        choices, details = [], []
        for example, reply in zip(batch, self.router_replies(batch)):
            choice = model_named_in(reply.strip(), count)
            if choice is None:  # MoCo's fallback, drawn per example so it does not depend on batching
                choice = self.rng(example, "router_fallback").randrange(count)
            choices.append(choice)
            details.append({"router_reply": reply, "router_named": model_named_in(reply, count) is not None})
        return choices, details

    def collaborate(self, batch: Batch) -> list[Answer]:
        if self.router_kind == "causal_lm" and self.hparams.routing == "text":
            return self.answer_routed(batch, *self.route_by_text(batch))
        probabilities = self.route(batch)
        names = self.collaborator_names
        details = [
            {"router_probs": {n: round(float(p), 4) for n, p in zip(names, row)}} for row in probabilities
        ]
        return self.answer_routed(batch, probabilities.argmax(dim=-1).tolist(), details)
