"""Cascade: collaborators ordered weak → strong answer in turn until one is confident enough.

Each model answers the questions still open; an answer whose confidence clears the model's
threshold is final, the rest go on to the next model, and the last model answers whatever is left.
``mode: logit`` measures confidence as MoCo does (``confidence: top5``: the mean over the answer's
steps of the largest probability in the renormalised top 5 of the sampling distribution) or as the
mean probability of the answer's tokens (``token_prob``), and sets each model's threshold to the
``percentage`` quantile of its confidences on dev (learned in ``fit``);
``mode: just_ask`` asks the model to say when it is unsure (the word "unconfident", as written).
As in MoCo, only the models that have a threshold answer dev, answers whose confidence is
measured get ``scored_max_new_tokens`` (MoCo's 256), and the threshold is computed in single
precision. MoCo: ``api_cascade`` (LLM cascades, e.g. Chen et al. 2023, "FrugalGPT").
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import torch
from torchmetrics import CatMetric

from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig, Generation
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule, Example
from moco_lit.methods.text.discussion import question_of

JUST_ASK_PROMPT = """{question}

Answer the question above as well as you can. If you are not sure that your answer is right, \
write the word "unconfident" after your answer."""

UNSURE_MARKER = "unconfident"


class Cascade(CollaborationModule):
    """Args:
    mode: ``logit`` (token-probability confidence vs a dev threshold) or ``just_ask``.
    percentage: quantile of a model's dev confidences that becomes its threshold (logit mode).
    confidence: ``top5`` (MoCo's) or ``token_prob`` (geometric mean of the token probabilities).
        MoCo's mean also counts, for an answer that ended before the longest one of its batch, the
        steps after its end (so its value depends on its batch-mates); here only the answer's own
        steps count (its end-of-sequence step included), which equals MoCo's for an answer
        generated alone or with batch-mates that end at the same step.
    scored_max_new_tokens: new-token budget of the answers whose confidence is measured (logit
        mode: dev, and every level but the last); None: ``max_new_tokens``. MoCo's 256.
    """

    method_name = "cascade"
    report_label_args = ("mode",)
    level = "api"
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        mode: Literal["logit", "just_ask"] = "logit",
        percentage: float = 0.5,
        confidence: Literal["top5", "token_prob"] = "top5",
        scored_max_new_tokens: int | None = 256,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if mode not in ("logit", "just_ask"):
            raise UserError(f"cascade.mode must be 'logit' or 'just_ask', got {mode!r}")
        if not 0.0 <= percentage <= 1.0:
            raise UserError(f"cascade.percentage must be in [0, 1], got {percentage}")
        if confidence not in ("top5", "token_prob"):
            raise UserError(f"cascade.confidence must be 'top5' or 'token_prob', got {confidence!r}")
        self.mode = mode
        self.confidence = confidence
        self.percentage = percentage
        self.scored_max_new_tokens = scored_max_new_tokens
        self.needs_calibration = mode == "logit"
        # one threshold per model but the last (which always answers); NaN until calibrated
        self.register_buffer(
            "thresholds", torch.full((len(collaborators) - 1,), math.nan, dtype=torch.float64)
        )
        # dev confidences, gathered across ranks so every rank computes the same quantile
        self.dev_confidences = torch.nn.ModuleList(CatMetric() for _ in range(len(collaborators) - 1))

    # -- calibration: dev scores and dev confidences from the same generations ----------------

    def calibration_step(self, batch: list[Example]) -> None:
        # the last model needs no threshold, so it does not answer dev (its dev score stays NaN)
        batch = Batch.of(batch)
        for model in range(len(self.dev_confidences)):
            outputs = self.ask(model, batch.prompts, batch.ids, step="dev", decoding=self.scored_decoding)
            self.dev_sums.update(model, self.score([o.text for o in outputs], batch))
            self.dev_confidences[model].update(torch.tensor([self.confidence_of(o) for o in outputs]))

    @property
    def scored_decoding(self) -> DecodingConfig:
        tokens = self.scored_max_new_tokens or self.decoding.max_new_tokens
        return replace(self.decoding, max_new_tokens=tokens, top5_confidence=self.confidence == "top5")

    def confidence_of(self, output: Generation) -> float:
        if self.confidence == "token_prob":
            return output.confidence
        if output.top5_confidence is None:  # the scored decoding always asks for it
            raise RuntimeError("a generation without its top-5 confidence reached the cascade")
        return output.top5_confidence

    def finish_calibration(self) -> None:
        for model, metric in enumerate(self.dev_confidences):
            # single precision, as MoCo computes it: a confidence equal to the quantile in double
            # precision can fall just below it in single precision
            confidences = metric.compute().float().reshape(-1)
            self.thresholds[model] = (
                float(torch.quantile(confidences, self.percentage)) if len(confidences) else math.nan
            )
            metric.reset()
        super().finish_calibration()
        thresholds = ", ".join(f"{t:.4f}" for t in self.thresholds.tolist())
        self.note(f"cascade thresholds ({self.percentage:.0%} quantile of dev confidence): {thresholds}")

    # -- the cascade --------------------------------------------------------------------------

    def collaborate(self, batch: Batch) -> list[Answer]:
        answers: dict[int, Answer] = {}
        trail: list[list[dict]] = [[] for _ in batch]  # what each level said, per example
        last = len(self.collaborators) - 1
        for model in range(len(self.collaborators)):
            open_rows = [i for i in range(len(batch)) if i not in answers]
            if not open_rows:
                break
            scored = self.mode == "logit" and model < last
            outputs = self.ask(
                model,
                [self.prompt_for(batch[i], model) for i in open_rows],
                batch.pick(open_rows).ids,
                decoding=self.scored_decoding if scored else None,
            )
            for i, output in zip(open_rows, outputs):
                confident, confidence = self.is_confident(model, output)
                trail[i].append(
                    {"model": self.collaborator_names[model], "confidence": confidence, "accepted": confident}
                )
                if confident or model == last:
                    answers[i] = Answer(output.text, by=self.collaborator_names[model])
        for i, answer in answers.items():
            answer.details = {"level": len(trail[i]) - 1, "trail": trail[i]}
        return [answers[i] for i in range(len(batch))]

    def prompt_for(self, example: Example, model: int):
        if self.mode == "just_ask" and model < len(self.collaborators) - 1:
            return JUST_ASK_PROMPT.format(question=question_of(example))
        return example["prompt"]

    def is_confident(self, model: int, output: Generation) -> tuple[bool, float | None]:
        """(accept this answer?, the confidence it was judged on); the last model always answers."""
        if model == len(self.collaborators) - 1:
            return True, None
        if self.mode == "just_ask":
            return UNSURE_MARKER not in output.text, None
        threshold = float(self.thresholds[model])
        # an uncalibrated threshold (no dev data) never accepts: the question goes on, as in MoCo;
        # compared in single precision, as MoCo compares with its single-precision quantile
        confidence = self.confidence_of(output)
        single = torch.tensor([confidence, threshold], dtype=torch.float32)
        return (not math.isnan(threshold) and bool(single[0] >= single[1])), round(confidence, 6)
