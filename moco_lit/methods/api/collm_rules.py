"""Co-LLM's fuse rules: the deferral token (:class:`Deferral`) and the learnt deferral head
(:class:`DeferralHead`) with its threshold warm-up (:func:`warmup_threshold`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from moco_lit.decoding import FuseRule
from moco_lit.errors import UserError


@dataclass
class Deferral(FuseRule):
    """Co-LLM: when the generator's probability of ``defer_token`` exceeds ``threshold`` the mentor
    decides (``defer``), or both distributions are mixed (``compose``: mentor weighted by that
    probability). The deferral token itself is never emitted."""

    defer_token: int
    threshold: float = 0.5
    strategy: str = "defer"
    generator: int = 0
    mentor: int = 1

    @property
    def key(self) -> str:  # type: ignore[override]
        return f"deferral({self.defer_token},{self.threshold},{self.strategy},{self.generator},{self.mentor})"

    def __call__(self, logits: list[torch.Tensor]) -> torch.Tensor:
        own = torch.log_softmax(logits[self.generator], dim=-1)
        defer = own[:, self.defer_token].exp()
        own = own.clone()
        own[:, self.defer_token] = -math.inf
        mentor = torch.log_softmax(logits[self.mentor], dim=-1)
        mentor[:, self.defer_token] = -math.inf
        if self.strategy == "compose":
            mix = (1 - defer)[:, None] * own.exp() + defer[:, None] * mentor.exp()
            return mix.clamp_min(1e-30).log()
        use_mentor = (defer > self.threshold)[:, None]
        return torch.where(use_mentor, mentor, own)


THRESHOLD_SCHEDULES = ("none", "linear", "cosine")


def warmup_threshold(
    threshold: float, schedule: str, warmup_steps: int, total_steps: int, step: int
) -> float:
    """Co-LLM's deferral threshold at ``step``: from 1.0 (never defer) down to ``threshold`` over
    ``min(warmup_steps, total_steps)`` steps, ``linear`` (end points included) or ``cosine`` (half a
    cosine wave); ``none`` is ``threshold`` throughout. After the warm-up it stays at ``threshold``."""
    if schedule not in THRESHOLD_SCHEDULES:
        raise UserError(f"threshold warm-up schedule must be one of {THRESHOLD_SCHEDULES}, got {schedule!r}")
    warmup = min(warmup_steps, total_steps)
    if schedule == "none" or step >= warmup:
        return threshold
    if schedule == "linear":
        return 1.0 if warmup == 1 else 1.0 + (threshold - 1.0) * step / (warmup - 1)
    return threshold + (1.0 - threshold) * 0.5 * (1 + math.cos(math.pi * step / warmup))


class DeferralHead(FuseRule):
    """Co-LLM with a learnt deferral head: ``p = sigmoid(head(h))`` on the generator's last hidden
    state ``h``. ``defer``: the mentor decides the token where ``p`` exceeds the (warmed-up)
    threshold, the generator elsewhere; ``compose``: ``(1 - p) * P_generator + p * P_mentor``.
    ``fingerprint`` names the head's weights in the cache key."""

    def __init__(
        self,
        head: Callable[[torch.Tensor], torch.Tensor],
        threshold: float = 0.5,
        strategy: str = "defer",
        schedule: str = "none",
        warmup_steps: int = 15,
        total_steps: int = 512,
        generator: int = 0,
        mentor: int = 1,
        fingerprint: str = "",
    ) -> None:
        if strategy not in ("defer", "compose"):
            raise UserError(f"deferral strategy must be defer or compose, got {strategy!r}")
        warmup_threshold(threshold, schedule, warmup_steps, total_steps, 0)  # validates the schedule
        self.head, self.threshold, self.strategy = head, threshold, strategy
        self.schedule, self.warmup_steps, self.total_steps = schedule, warmup_steps, total_steps
        self.generator, self.mentor, self.fingerprint = generator, mentor, fingerprint
        self.trace: list[list[tuple[float, float, bool]]] = []  # per row: (p, threshold, deferred)

    @property
    def key(self) -> str:  # type: ignore[override]
        return (
            f"deferral_head({self.fingerprint},{self.threshold},{self.strategy},{self.schedule},"
            f"{self.warmup_steps},{self.total_steps},{self.generator},{self.mentor})"
        )

    def threshold_at(self, step: int) -> float:
        return warmup_threshold(self.threshold, self.schedule, self.warmup_steps, self.total_steps, step)

    def reset(self, batch_size: int) -> None:
        self.trace = [[] for _ in range(batch_size)]

    def fuse(
        self, logits: list[torch.Tensor], hidden: list[torch.Tensor], step: int, active: list[bool]
    ) -> torch.Tensor:
        if len(self.trace) != len(active):
            self.reset(len(active))
        with torch.inference_mode():
            prob = torch.sigmoid(self.head(hidden[self.generator]).float().reshape(-1))
        own = torch.log_softmax(logits[self.generator].float(), dim=-1)
        mentor = torch.log_softmax(logits[self.mentor].float(), dim=-1).to(own.device)
        prob = prob.to(own.device)
        threshold = self.threshold_at(step)
        deferred = prob > threshold
        for row, is_active in enumerate(active):
            if is_active:
                self.trace[row].append((float(prob[row]), threshold, bool(deferred[row])))
        if self.strategy == "compose":
            mix = (1 - prob)[:, None] * own.exp() + prob[:, None] * mentor.exp()
            return mix.clamp_min(1e-30).log()
        return torch.where(deferred[:, None], mentor, own)

    def row_details(self, row: int) -> dict[str, Any]:
        steps = self.trace[row] if row < len(self.trace) else []
        return {
            "deferred_tokens": sum(1 for _, _, deferred in steps if deferred),
            "mean_deferral_prob": round(sum(p for p, _, _ in steps) / max(len(steps), 1), 4),
        }
