"""Co-LLM: a generator learns when to defer a token to a mentor.

A deferral head on the generator's last hidden state gives, at each step, the probability ``p``
that the mentor should write the next token. ``defer``: the mentor's token where ``p`` exceeds the
threshold (optionally warmed up from 1.0), the generator's elsewhere; ``compose``: decode from
``(1 - p) P_generator + p P_mentor``. ``fit`` scores a training set (the dev split, or
``training_data``) with both models, labels the tokens the mentor gets right and the generator
does not, initialises the head on those labels, then trains it with the marginal-likelihood
objective. Shen et al. 2024, "Learning to Decode Collaboratively with Multiple Language Models";
MoCo: ``collm``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from moco_lit.decoding import DeferralHead, check_same_vocabulary, module_fingerprint, warmup_threshold
from moco_lit.dev_table import DevTrainedModule
from moco_lit.errors import UserError
from moco_lit.methods.base import Answer
from moco_lit.training import (
    IGNORE_INDEX,
    completion_batch,
    deferral_labels,
    deferral_marginal_loss,
    token_logps,
)

log = logging.getLogger(__name__)

GENERATOR, MENTOR = 0, 1
PROMPT_KEYS = ("prompt", "problem", "question", "input")
COMPLETION_KEYS = ("completion", "solution", "output", "answer", "reference")


class CoLLM(DevTrainedModule):
    """Args:
    deferral_threshold: the mentor writes where the deferral probability exceeds this.
    deferral_strategy: ``defer`` (the mentor's token) or ``compose`` (mixed distributions).
    threshold_warmup_schedule: ``none``, ``linear`` or ``cosine``: the threshold starts at 1.0
        and reaches ``deferral_threshold`` after ``threshold_warmup_steps`` tokens.
    threshold_warmup_steps: length of the warm-up (MoCo: 15).
    training_data: None trains on the dev split (prompt, reference answer); else a JSON/JSONL
        file or a hub dataset with prompt/completion (or problem/solution) fields (MoCo:
        nlile/hendrycks-MATH-benchmark).
    training_split: split of a hub ``training_data``.
    training_num: at most this many training examples (MoCo: 10000).
    max_seq_length: prompt + completion tokens per training example (MoCo: 512).
    init_steps: full-batch steps of the head's initialisation on the deferral labels.
    init_positive_weight: weight of the "defer" class in that initialisation (MoCo: 8).
    learning_rate: AdamW learning rate of the head in the marginal-likelihood epochs.

    Only the deferral head is trained (the generator stays frozen, its checkpoint holds the head
    alone); MoCo also fine-tunes the whole generator (lr 2e-5) with the same objective. Both models
    must share one vocabulary, as in MoCo.
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
        training_data: str | None = None,
        training_split: str = "train",
        training_num: int = 10000,
        max_seq_length: int = 512,
        init_steps: int = 100,
        init_positive_weight: float = 8.0,
        learning_rate: float = 1e-3,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, learning_rate=learning_rate, **kwargs)
        if deferral_strategy not in ("defer", "compose"):
            raise UserError(f"collm.deferral_strategy must be defer or compose, got {deferral_strategy!r}")
        warmup_threshold(deferral_threshold, threshold_warmup_schedule, threshold_warmup_steps, 1, 0)
        self.head: nn.Linear | None = None
        self.pairs: list[tuple[str, str]] = []
        self._mentor_logps: list[torch.Tensor] = []

    # -- the deferral head -----------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        super().setup(stage)
        check_same_vocabulary(self.collaborators, self.method_name)

    def configure_model(self) -> None:
        if self.head is None:
            embeddings = self.collaborators[GENERATOR].model.get_output_embeddings().weight
            self.head = nn.Linear(embeddings.shape[1], 1).to(self.device)
            with torch.no_grad():  # MoCo starts the deferral token from the mean output embedding
                self.head.weight.copy_(embeddings.float().mean(dim=0, keepdim=True))
                self.head.bias.zero_()

    def deferral_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden.to(self.head.weight.device, self.head.weight.dtype)).squeeze(-1)

    def rule(self) -> DeferralHead:
        return DeferralHead(
            self.deferral_logits,
            self.hparams.deferral_threshold,
            self.hparams.deferral_strategy,
            self.hparams.threshold_warmup_schedule,
            self.hparams.threshold_warmup_steps,
            self.decoding.max_new_tokens,
            fingerprint=module_fingerprint(self.head),
        )

    def collaborate(self, batch: list[dict]) -> list[Answer]:
        ids = [example["id"] for example in batch]
        prompts = [example["prompt"] for example in batch]
        outputs = self.ask_joint([GENERATOR, MENTOR], prompts, ids, self.rule(), step="collm")
        keys = ("deferred_tokens", "mean_deferral_prob")
        return [
            Answer(output.text, by=self.collaborator_names, details={k: output.details.get(k) for k in keys})
            for output in outputs
        ]

    # -- fit: score, label, initialise, then marginal likelihood -------------------------------

    def on_fit_start(self) -> None:
        self.calibrated.fill_(True)
        self.pairs = self.training_pairs()
        if not self.pairs:
            raise UserError("collm found no training examples (prompt and completion)")
        features, targets = self.score_pairs()
        self.initialise_head(features, targets)

    def training_pairs(self) -> list[tuple[str, str]]:
        """(rendered prompt, completion) pairs: the dev split's references, or ``training_data``."""
        generator = self.collaborators[GENERATOR]
        source = self.hparams.training_data
        if source is None:
            rows = [
                {"prompt": e["prompt"], "completion": _first(e["record"], COMPLETION_KEYS)}
                for e in self.trainer.datamodule.examples("dev")
            ]
        else:
            rows = load_training_rows(source, self.hparams.training_split)
        pairs = []
        for row in rows[: self.hparams.training_num]:
            prompt, completion = _first(row, PROMPT_KEYS), _first(row, COMPLETION_KEYS)
            if prompt is not None and completion is not None:
                pairs.append((generator.render(prompt), str(completion)))
        return pairs

    def _tokens(self, pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
        tokenizer = self.collaborators[GENERATOR].tokenizer
        batch = completion_batch(
            tokenizer, [p for p, _ in pairs], [c for _, c in pairs], self.hparams.max_seq_length
        )
        return {key: value.to(self.collaborators[GENERATOR].device) for key, value in batch.items()}

    @torch.no_grad()
    def _forward(self, model: int, tokens: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and last hidden states of collaborator ``model`` (frozen) on a token batch."""
        collaborator = self.collaborators[model]
        out = collaborator.model(
            input_ids=tokens["input_ids"].to(collaborator.device),
            attention_mask=tokens["attention_mask"].to(collaborator.device),
            output_hidden_states=True,
        )
        return out.logits.float(), out.hidden_states[-1].float()

    def score_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Score every pair with both models: keep the mentor's gold-token log-probabilities (for
        the objective) and return the generator's hidden states with their deferral labels."""
        features, targets = [], []
        self._mentor_logps = []
        size = self.hparams.generation_batch_size
        for start in range(0, len(self.pairs), size):
            tokens = self._tokens(self.pairs[start : start + size])
            own_logits, hidden = self._forward(GENERATOR, tokens)
            mentor_logits, _ = self._forward(MENTOR, tokens)
            mentor_logits = mentor_logits.to(own_logits.device)
            labels = deferral_labels(own_logits, mentor_logits, tokens["labels"])
            mentor_logps, _ = token_logps(mentor_logits, tokens["labels"])
            lengths = tokens["attention_mask"].sum(dim=1).tolist()  # right-padded rows
            self._mentor_logps += [row[: n - 1].cpu() for row, n in zip(mentor_logps, lengths)]
            kept = labels != IGNORE_INDEX
            features.append(hidden[:, :-1][kept].cpu())
            targets.append(labels[kept].float().cpu())
        return torch.cat(features), torch.cat(targets)

    def initialise_head(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """Fit the head to the deferral labels (weighted BCE), as MoCo's deferral-token search."""
        share = float(targets.mean()) if len(targets) else 0.0
        log.info("collm: %d labelled tokens, %.1f%% where the mentor is better", len(targets), 100 * share)
        weight = torch.tensor(self.hparams.init_positive_weight)
        with torch.enable_grad():
            optimiser = torch.optim.Adam(self.head.parameters(), lr=1e-2)
            for _ in range(self.hparams.init_steps):
                optimiser.zero_grad()
                loss = nn.functional.binary_cross_entropy_with_logits(
                    self.deferral_logits(features).float().cpu(), targets, pos_weight=weight
                )
                loss.backward()
                optimiser.step()

    def training_step(self, batch: list[dict], batch_idx: int) -> torch.Tensor | None:
        per = math.ceil(len(self.pairs) / max(self.trainer.num_training_batches, 1))
        indices = range(batch_idx * per, min((batch_idx + 1) * per, len(self.pairs)))
        if not indices:
            return None
        tokens = self._tokens([self.pairs[i] for i in indices])
        own_logits, hidden = self._forward(GENERATOR, tokens)
        own_logps, mask = token_logps(own_logits, tokens["labels"])
        width = mask.shape[1]
        mentor_logps = torch.stack(
            [
                nn.functional.pad(self._mentor_logps[i], (0, width - len(self._mentor_logps[i])))
                for i in indices
            ]
        )
        loss = deferral_marginal_loss(
            self.deferral_logits(hidden[:, :-1]), own_logps, mentor_logps.to(own_logps.device), mask
        )
        self.log("train/marginal_nll", loss, batch_size=len(indices), prog_bar=True)
        return loss


def load_training_rows(source: str, split: str) -> list[dict]:
    """Rows of a JSON list / ``{split: [...]}`` file, a JSONL file, or a hub dataset split."""
    path = Path(source)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
        return list(data[split] if isinstance(data, dict) else data)
    try:
        import datasets

        return list(datasets.load_dataset(source, split=split))
    except Exception as err:  # noqa: BLE001  (any loading failure is a bad training_data value)
        raise UserError(f"cannot load collm.training_data {source!r} (split {split!r}): {err}") from err


def _first(row: dict, keys: tuple[str, ...]):
    return next((row[key] for key in keys if row.get(key) is not None), None)
