"""Logits processors shared by ``model.generate`` and :func:`~moco_lit.generation.loop.token_loop`:
reproducible per-row sampling (Gumbel-max over the tempered, top-p filtered distribution, each row
from its own seeded generator) and the recorders of log-probabilities and MoCo's top-5 confidence."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from moco_lit.generation.config import DecodingConfig


class LogprobRecorder:
    """Records the model's own log-probability of each token it emits (before any sampling change).

    At step t the processor sees the raw scores of step t and, in ``input_ids``, the token chosen at
    step t-1; holding one step of log-probabilities keeps memory at one batch × vocabulary.
    """

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, new_ids: torch.Tensor) -> torch.Tensor:
        steps = list(self.steps)
        if self.previous is not None and len(steps) < new_ids.shape[1]:
            steps.append(self.previous.gather(1, new_ids[:, len(steps) : len(steps) + 1]).squeeze(1))
        if not steps:
            return torch.zeros(new_ids.shape[0], 0)
        return torch.stack(steps, dim=1).cpu()


class Top5Recorder:
    """Records, per step, MoCo's step confidence: the largest probability after the top 5 logits
    of the sampling distribution (tempered and top-p filtered; raw when greedy) are renormalised.

    Top-p drops tokens from the bottom, so only which of the top 5 survive matters: a token stays
    while the probability above it is below ``top_p`` (the rule of ``top_p_filter``). As in
    transformers' sampling, which MoCo uses, top-p acts on the distribution renormalised over the
    model's ``top_k`` (its generation config; transformers' default 50) likeliest tokens.
    """

    def __init__(self, decoding: DecodingConfig, top_k: int = 50) -> None:
        self.decoding = decoding
        self.top_k = top_k
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps.append(top5_step_confidence(scores, self.decoding, self.top_k).cpu())
        return scores

    def finish(self) -> torch.Tensor:
        """Step confidences, batch × steps."""
        return torch.stack(self.steps, dim=1) if self.steps else torch.zeros(0, 0)


def top5_step_confidence(scores: torch.Tensor, decoding: DecodingConfig, top_k: int = 50) -> torch.Tensor:
    """Per row: max of softmax over the top 5 of the tempered, top-k, top-p filtered ``scores``."""
    logits = scores.float()
    if not decoding.greedy:
        logits = logits / decoding.temperature
    top, _ = torch.topk(logits, k=min(5, logits.shape[-1]), dim=-1)
    weights = torch.exp(top - top[:, :1])  # relative to the top token, which is always kept
    if not decoding.greedy and decoding.top_p < 1.0:
        pool = torch.topk(logits, k=min(top_k, logits.shape[-1]), dim=-1).values if top_k > 0 else logits
        probs = torch.exp(top - torch.logsumexp(pool, dim=-1, keepdim=True))
        above = probs.cumsum(dim=-1) - probs
        weights = weights * (above < decoding.top_p)
    return 1.0 / weights.sum(dim=-1)


class SeededSampler:
    """Temperature + top-p sampling as Gumbel-max with one seeded generator per row.

    Greedy decoding over ``logits / T + Gumbel noise`` samples exactly from ``softmax(logits / T)``;
    drawing the noise from a per-row generator makes every row's sample independent of its batch.
    """

    def __init__(self, seeds: Sequence[int], decoding: DecodingConfig) -> None:
        self.seeds = list(seeds)
        self.decoding = decoding
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.generators is None:
            self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in self.seeds]
        logits = scores.float() / self.decoding.temperature
        if self.decoding.top_p < 1.0:
            logits = top_p_filter(logits, self.decoding.top_p)
        uniform = torch.stack([torch.rand(logits.shape[1], generator=g) for g in self.generators])
        gumbel = -torch.log((-torch.log(uniform.clamp_min(1e-20))).clamp_min(1e-20))
        return logits + gumbel.to(logits.device)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches ``top_p`` (always the top one)."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))
