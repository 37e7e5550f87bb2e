"""Nudging's switch rule (:class:`ThresholdSwitch`): the base model writes while it is confident,
the helper otherwise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from moco_lit.decoding import StepView, SwitchRule


@dataclass
class ThresholdSwitch(SwitchRule):
    """Nudging's rule: ``base`` writes while its top-1 probability is at least ``gamma``; below, the
    ``helper`` takes over and finishes its word (keeps writing until its next token opens a new
    word and the base is confident again). The helper writes the first token of an answer.

    ``word_break`` says which helper tokens open a new word: ``space`` (MoCo's rule), a token
    holding a space character; ``whitespace``, any whitespace (a newline or a tab too)."""

    gamma: float
    base: int = 0
    helper: int = 1
    word_break: str = "space"
    reads_text: bool = True
    nudging: list[bool] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    trace: list[list[tuple[int, float]]] = field(default_factory=list)

    @property
    def key(self) -> str:  # type: ignore[override]
        return (
            f"threshold_switch(gamma={self.gamma},base={self.base},helper={self.helper},"
            f"word_break={self.word_break},reads_text={self.reads_text})"
        )

    def reset(self, batch_size: int) -> None:
        self.nudging = [True] * batch_size
        self.accepted = [0] * batch_size
        self.trace = [[] for _ in range(batch_size)]

    def __call__(self, view: StepView) -> list[int]:
        top1 = torch.softmax(view.logits[self.base].float(), dim=-1).max(dim=-1).values.tolist()
        authors = []
        for row, active in enumerate(view.active):
            author = self._choose(row, top1[row], view.pieces[self.helper][row]) if active else self.base
            if active:
                self.trace[row].append((author, top1[row]))
            authors.append(author)
        return authors

    def _choose(self, row: int, top1: float, helper_piece: str) -> int:
        if self.word_break == "space":
            opens_word = " " in helper_piece
        else:
            opens_word = any(ch.isspace() for ch in helper_piece)
        if self.nudging[row] and (self.accepted[row] == 0 or not opens_word or top1 < self.gamma):
            self.accepted[row] += 1
            return self.helper
        if top1 >= self.gamma:
            self.nudging[row], self.accepted[row] = False, 0
            return self.base
        self.nudging[row], self.accepted[row] = True, 1
        return self.helper

    def row_details(self, row: int) -> dict[str, Any]:
        authors = [author for author, _ in self.trace[row]]
        handovers = sum(1 for a, b in zip(authors, authors[1:]) if a != b and b == self.helper)
        return {"helper_tokens": authors.count(self.helper), "handovers": handovers}
