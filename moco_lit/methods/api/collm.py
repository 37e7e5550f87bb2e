"""Co-LLM: a generator learns when to defer a token to a mentor.

A deferral logit ``w . h`` on the generator's last hidden state ``h`` gives, at each step, the
probability ``p`` that the mentor writes the next token. ``defer``: the mentor's token where ``p``
exceeds the threshold (optionally warmed up from 1.0), the generator's elsewhere; ``compose``:
decode from ``(1 - p) P_generator + p P_mentor``. ``fit`` scores a training set (MoCo's MATH train
split by default) with both models, labels the tokens the mentor gets right and the generator does
not, fits ``w`` to those labels in one pass, then fine-tunes the whole generator together with
``w`` on the marginal-likelihood objective. Shen et al. 2024, "Learning to Decode Collaboratively
with Multiple Language Models"; MoCo: ``collm``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from moco_lit.decoding import check_same_vocabulary, module_fingerprint
from moco_lit.errors import UserError
from moco_lit.methods.api.collm_rules import DeferralHead, warmup_threshold
from moco_lit.methods.core.dev_trained import DevTrainedModule
from moco_lit.methods.core.module import Answer, Batch
from moco_lit.training import IGNORE_INDEX, deferral_labels, deferral_marginal_loss, token_logps

log = logging.getLogger(__name__)

GENERATOR, MENTOR = 0, 1
PROMPT_KEYS = ("problem", "prompt", "question", "input")
COMPLETION_KEYS = ("solution", "completion", "output", "answer", "reference")

SYSTEM_PROMPT = "Work through the problem one step at a time, then give the final answer."
QUESTION_TEMPLATE = "{question}"
MATH_TRAIN = "nlile/hendrycks-MATH-benchmark"


class CoLLM(DevTrainedModule):
    """Args:
    deferral_threshold: the mentor writes where the deferral probability exceeds this.
    deferral_strategy: ``defer`` (the mentor's token) or ``compose`` (mixed distributions).
    threshold_warmup_schedule: ``none``, ``linear`` or ``cosine``: the threshold starts at 1.0
        and reaches ``deferral_threshold`` after ``threshold_warmup_steps`` tokens.
    threshold_warmup_steps: length of the warm-up (MoCo: 15).
    training_data: a JSON/JSONL file or a hub dataset with problem/solution (or prompt/completion)
        fields; MoCo's MATH train split by default. None trains on the dev split's references.
    training_split: split of a hub ``training_data``.
    training_num: the first this many training examples (MoCo: 10000).
    max_seq_length: tokens per training row, cut at the end (MoCo: 2048).
    system_prompt, question_template: the system turn and the user turn (``{question}``) of every
        training row and test prompt.
    train_generator: True (MoCo) fine-tunes the whole generator with the deferral weights; False
        trains the deferral weights alone on the frozen generator: far cheaper (one vector of
        hidden-size weights; the checkpoint holds only it), raise ``learning_rate`` to ~1e-3 then.
    init_learning_rate, init_batch_size, init_steps: the deferral weights start from the mean
        output embedding and take one AdamW pass over the training rows in batches of
        ``init_batch_size`` (MoCo: 2e-5, 8), at most ``init_steps`` steps when set.
    init_positive_weight: weight of the "defer" class in that initialisation (MoCo: 8).
    learning_rate, lr_schedule: the marginal-likelihood epochs (MoCo: 2e-5, linear decay, 2 epochs
        via ``trainer.max_epochs``). Each training step averages the per-row losses of its rows,
        as MoCo's one-row batches with gradient accumulation do.

    Both models must share one vocabulary, as in MoCo.
    """

    method_name = "collm"
    level = "api"
    min_collaborators = 2
    max_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        deferral_threshold: float = 0.5,
        deferral_strategy: Literal["defer", "compose"] = "defer",
        threshold_warmup_schedule: Literal["none", "linear", "cosine"] = "none",
        threshold_warmup_steps: int = 15,
        training_data: str | None = MATH_TRAIN,
        training_split: str = "train",
        training_num: int = 10000,
        max_seq_length: int = 2048,
        system_prompt: str = SYSTEM_PROMPT,
        question_template: str = QUESTION_TEMPLATE,
        train_generator: bool = True,
        init_learning_rate: float = 2e-5,
        init_batch_size: int = 8,
        init_steps: int | None = None,
        init_positive_weight: float = 8.0,
        learning_rate: float = 2e-5,
        lr_schedule: Literal["linear", "cosine", "constant"] = "linear",
        temperature: float = 0.0,  # MoCo's Co-LLM decodes greedily (argmax)
        **kwargs,
    ) -> None:
        super().__init__(
            collaborators,
            learning_rate=learning_rate,
            lr_schedule=lr_schedule,
            temperature=temperature,
            **kwargs,
        )
        if deferral_strategy not in ("defer", "compose"):
            raise UserError(f"collm.deferral_strategy must be defer or compose, got {deferral_strategy!r}")
        if "{question}" not in question_template:
            raise UserError(f"collm.question_template must contain {{question}}, got {question_template!r}")
        if init_batch_size < 1:
            raise UserError(f"collm.init_batch_size must be >= 1, got {init_batch_size}")
        warmup_threshold(deferral_threshold, threshold_warmup_schedule, threshold_warmup_steps, 1, 0)
        self.head: nn.Linear | None = None
        self.generator_model: nn.Module | None = None
        self.rows: list[dict[str, torch.Tensor]] = []
        self.strict_loading = train_generator

    # -- the deferral weights and the trainable generator ----------------------------------------

    def setup(self, stage: str) -> None:
        super().setup(stage)
        check_same_vocabulary(self.collaborators, self.method_name)

    def configure_model(self) -> None:
        if self.hparams.train_generator and self.generator_model is None:
            original = self.collaborators[GENERATOR]
            self.generator_model = copy.deepcopy(original.model).requires_grad_(True)
            trainable = dataclasses.replace(original, model=self.generator_model)
            trainable.refresh_fingerprint("collm:trainable")
            self.collaborators[GENERATOR] = trainable
        if self.head is None:
            embeddings = self.collaborators[GENERATOR].model.get_output_embeddings().weight
            # the deferral token's output row: no bias, as MoCo's extra vocabulary entry
            self.head = nn.Linear(embeddings.shape[1], 1, bias=False).to(self.device)
            with torch.no_grad():  # MoCo starts it from the mean output embedding
                self.head.weight.copy_(embeddings.float().mean(dim=0, keepdim=True))

    def deferral_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden.to(self.head.weight.device, self.head.weight.dtype)).squeeze(-1)

    def rule(self) -> DeferralHead:
        fingerprint = module_fingerprint(self.head)
        if self.generator_model is not None:
            fingerprint += ":" + self.collaborators[GENERATOR].fingerprint
        return DeferralHead(
            self.deferral_logits,
            self.hparams.deferral_threshold,
            self.hparams.deferral_strategy,
            self.hparams.threshold_warmup_schedule,
            self.hparams.threshold_warmup_steps,
            self.decoding.max_new_tokens,
            fingerprint=fingerprint,
        )

    def messages(self, question: str) -> list[dict]:
        user = self.hparams.question_template.format(question=str(question).strip())
        return [{"role": "system", "content": self.hparams.system_prompt}, {"role": "user", "content": user}]

    def collaborate(self, batch: Batch) -> list[Answer]:
        prompts = [self.messages(p) if isinstance(p, str) else p for p in batch.prompts]
        outputs = self.ask_joint([GENERATOR, MENTOR], prompts, batch.ids, self.rule(), step="collm")
        keys = ("deferred_tokens", "mean_deferral_prob")
        return [
            Answer(output.text, by=self.collaborator_names, details={k: output.details.get(k) for k in keys})
            for output in outputs
        ]

    # -- fit: rows, scores and labels, the initial deferral weights, then the epochs -------------

    def on_fit_start(self) -> None:
        self.calibrated.fill_(True)
        self.rows = self.training_rows()
        if not self.rows:
            raise UserError("collm found no training examples (problem and solution)")
        self.score_rows()
        self.initialise_head()

    def training_examples(self) -> list[tuple[str, str]]:
        """(question, solution) pairs: the first ``training_num`` of ``training_data`` (or dev)."""
        source = self.hparams.training_data
        if source is None:
            rows = [
                {"problem": e["prompt"], "solution": _first(e["record"], COMPLETION_KEYS)}
                for e in self.trainer.datamodule.examples("dev")
            ]
        else:
            rows = load_training_rows(source, self.hparams.training_split, self.hparams.training_num)
        pairs = []
        for row in rows[: self.hparams.training_num]:
            question, solution = _first(row, PROMPT_KEYS), _first(row, COMPLETION_KEYS)
            if question is not None and solution is not None:
                pairs.append((str(question), str(solution)))
        return pairs

    def training_rows(self) -> list[dict[str, torch.Tensor]]:
        """Token rows of the training conversations (ChatML, as MoCo writes them for every model):
        the system and user turns are unlabelled, the solution and its end tag labelled; rows
        longer than ``max_seq_length`` are cut at the end, and a row left with no label dropped."""
        tokenizer = self.collaborators[GENERATOR].tokenizer
        limit = self.hparams.max_seq_length
        rows = []
        for question, solution in self.training_examples():
            system, user = (m["content"].strip() for m in self.messages(question))
            prefix = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            prefix += "<|im_start|>assistant\n"
            text = f"{prefix}{solution.strip()}<|im_end|>"
            ids = tokenizer(text, max_length=limit, truncation=True)["input_ids"]
            unlabelled = len(tokenizer(prefix, max_length=limit, truncation=True)["input_ids"])
            labels = [IGNORE_INDEX] * min(unlabelled, len(ids)) + ids[unlabelled:]
            if any(label != IGNORE_INDEX for label in labels):
                rows.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)})
        return rows

    @torch.no_grad()
    def _score(self, model: int, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and last hidden states of collaborator ``model`` on one unpadded row."""
        collaborator = self.collaborators[model]
        out = collaborator.model(input_ids=input_ids[None].to(collaborator.device), output_hidden_states=True)
        return out.logits[0].float(), out.hidden_states[-1][0].float()

    def score_rows(self) -> None:
        """Each row scored by both models, one at a time: the mentor's log-probability of every next
        token (the objective's mentor term) and the deferral labels (MoCo's init "a")."""
        for row in self.rows:
            own_logits, _ = self._score(GENERATOR, row["input_ids"])
            mentor_logits, _ = self._score(MENTOR, row["input_ids"])
            every_token = row["input_ids"][None]
            row["mentor_logps"], _ = token_logps(mentor_logits.cpu()[None], every_token)
            row["mentor_logps"] = row["mentor_logps"][0]
            labels = deferral_labels(own_logits.cpu()[None], mentor_logits.cpu()[None], every_token)[0]
            row["deferral_labels"] = labels.masked_fill(row["labels"][1:] == IGNORE_INDEX, IGNORE_INDEX)
        share = torch.cat([r["deferral_labels"] for r in self.rows])
        share = share[share != IGNORE_INDEX].float()
        log.info(
            "collm: %d labelled tokens, %.1f%% where the mentor is better", len(share), 100 * share.mean()
        )

    def initialise_head(self) -> None:
        """One AdamW pass of weighted BCE over the rows in batches: the deferral weights learn the
        labels on the generator's frozen hidden states (MoCo's deferral-token search)."""
        size = self.hparams.init_batch_size
        batches = [self.rows[start : start + size] for start in range(0, len(self.rows), size)]
        if self.hparams.init_steps is not None:
            batches = batches[: self.hparams.init_steps]
        weight = self.hparams.init_positive_weight
        with torch.enable_grad():
            optimiser = torch.optim.AdamW(
                self.head.parameters(), lr=self.hparams.init_learning_rate, weight_decay=0
            )
            for batch in batches:
                features = torch.cat([self._score(GENERATOR, r["input_ids"])[1][:-1] for r in batch])
                targets = torch.cat([r["deferral_labels"] for r in batch])
                kept = targets != IGNORE_INDEX
                loss = nn.functional.binary_cross_entropy_with_logits(
                    self.deferral_logits(features[kept.to(features.device)]).float().cpu(),
                    targets[kept].float(),
                    pos_weight=torch.tensor(weight),
                )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()

    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor | None:
        per = math.ceil(len(self.rows) / max(self.trainer.num_training_batches, 1))
        indices = range(batch_idx * per, min((batch_idx + 1) * per, len(self.rows)))
        if not indices:
            return None
        generator = self.collaborators[GENERATOR]
        losses = []
        for i in indices:  # one row at a time, averaged: MoCo's batch of 1 with accumulation
            row = self.rows[i]
            out = generator.model(
                input_ids=row["input_ids"][None].to(generator.device), output_hidden_states=True
            )
            own_logps, mask = token_logps(out.logits, row["labels"][None].to(out.logits.device))
            deferral = self.deferral_logits(out.hidden_states[-1][:, :-1])
            mentor = row["mentor_logps"][None].to(own_logps.device)
            losses.append(deferral_marginal_loss(deferral, own_logps, mentor, mask))
        loss = torch.stack(losses).mean()
        if self.generator_model is not None:
            generator.refresh_fingerprint(f"collm step {self.global_step}")
        self.log("train/marginal_nll", loss, batch_size=len(indices), prog_bar=True)
        return loss


def load_training_rows(source: str, split: str, limit: int | None = None) -> list[dict]:
    """Rows of a JSON list / ``{split: [...]}`` file, a JSONL file, or a hub dataset split (its
    first ``limit`` rows)."""
    path = Path(source)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()][:limit]
        data = json.loads(text)
        return list(data[split] if isinstance(data, dict) else data)[:limit]
    try:
        import datasets
    except ImportError as err:
        raise UserError(
            f"collm.training_data {source!r} is a Hub dataset, which needs the datasets package: "
            "pip install 'moco-lit[hub]'"
        ) from err
    try:
        rows = datasets.load_dataset(source, split=split)
        return list(rows.select(range(min(limit, len(rows)))) if limit is not None else rows)
    except Exception as err:  # noqa: BLE001  (any loading failure is a bad training_data value)
        raise UserError(f"cannot load collm.training_data {source!r} (split {split!r}): {err}") from err


def _first(row: dict, keys: tuple[str, ...]):
    return next((row[key] for key in keys if row.get(key) is not None), None)
