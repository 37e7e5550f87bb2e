"""The dev table: every collaborator's answer, score and cost on every dev question, computed once.

Trained methods (routers, distillation, rankers) learn from how each collaborator did on the dev
split. ``collect_dev_table`` (in :mod:`moco_lit.methods.core.dev_trained`, beside the
``DevTrainedModule`` base) fills a :class:`DevTable` through the method's ``ask``; this module
holds the table itself: its matrices, ties and their reward-model tie-breaks, and the
``dev_answers.jsonl`` file (one line per question, keyed by collaborator name). The table travels
in checkpoints through :meth:`DevTable.state` / :meth:`DevTable.from_state`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

DEV_ANSWERS = "dev_answers.jsonl"


def question_text(prompt: str | Sequence[dict]) -> str:
    """The text a router reads for a prompt: the string itself, or a chat's user turns joined."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(m["content"] for m in prompt if m.get("role") == "user")


@dataclass
class DevTable:
    """Rows ``{"id", "question", "outputs", "scores", "tokens"}`` (dicts keyed by collaborator name)."""

    names: list[str]
    rows: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> list[str]:
        return [row["id"] for row in self.rows]

    def index_of(self) -> dict[str, int]:
        return {row["id"]: i for i, row in enumerate(self.rows)}

    def score_matrix(self) -> torch.Tensor:
        """``(questions, collaborators)`` scores; NaN where a score is missing."""
        return torch.tensor(
            [[_number(row["scores"].get(name)) for name in self.names] for row in self.rows],
            dtype=torch.float32,
        ).reshape(len(self.rows), len(self.names))

    def cost_matrix(self) -> torch.Tensor:
        """``(questions, collaborators)`` tokens (prompt + generated) of each answer."""
        return torch.tensor(
            [[float(row["tokens"].get(name, 0)) for name in self.names] for row in self.rows],
            dtype=torch.float32,
        ).reshape(len(self.rows), len(self.names))

    def mean_scores(self) -> torch.Tensor:
        """Each collaborator's mean dev score (missing scores left out): its dev score alone."""
        return torch.nanmean(self.score_matrix().double(), dim=0)

    def tied_best(self, values: torch.Tensor | None = None) -> list[list[int]]:
        """Per question, every collaborator sharing its highest value (default: score); a missing
        value counts as the lowest, so a question nobody has a score on ties all of them."""
        values = self.score_matrix() if values is None else values
        tied = []
        for row in values.tolist():
            filled = [_filled(v) for v in row]
            tied.append([m for m, v in enumerate(filled) if v == max(filled)])
        return tied

    def best_models(
        self,
        preference: Sequence[int],
        values: torch.Tensor | None = None,
        rewards: Sequence[dict[int, float]] | None = None,
    ) -> list[int]:
        """Per question, the collaborator with the highest value (default: score).

        Ties (and rows with no score at all) go to the collaborator with the highest reward in
        ``rewards`` (per question, collaborator index -> reward; see :func:`reward_ties`), and
        remaining ties to the first in ``preference`` (typically the dev ranking), so a question
        every model fails is labelled with the best one.
        """
        values = self.score_matrix() if values is None else values
        rank = {model: position for position, model in enumerate(preference)}
        labels = []
        for i, row in enumerate(values.tolist()):
            reward = rewards[i] if rewards is not None else {}
            keys = [(_filled(v), _filled(reward.get(m)), -rank.get(m, len(rank))) for m, v in enumerate(row)]
            labels.append(max(range(len(keys)), key=keys.__getitem__))
        return labels

    def write_jsonl(self, path: Path, labels: Sequence[int] | None = None) -> Path:
        """One JSON line per question; with ``labels`` each line also names the label model."""
        lines = []
        for i, row in enumerate(self.rows):
            record = dict(row)
            if labels is not None:
                record["label"] = self.names[labels[i]]
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def read_jsonl(cls, path: Path, names: list[str]) -> DevTable:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return cls(names, [{k: v for k, v in row.items() if k != "label"} for row in rows])

    def state(self) -> dict[str, Any]:
        return {"names": list(self.names), "rows": self.rows}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DevTable:
        return cls(list(state["names"]), list(state["rows"]))


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside DDP)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _filled(value: float | None) -> float:
    """A value to compare: missing or NaN is the lowest."""
    return -math.inf if value is None or math.isnan(value) else value


def reward_ties(
    table: DevTable,
    reward: Callable[[list[str], list[str]], list[float]],
    values: torch.Tensor | None = None,
) -> list[dict[int, float]]:
    """Score, with a reward model, the outputs tied for the best value on each dev question.

    ``reward(prompts, responses)`` is e.g. :meth:`RewardModelJudge.score`. Only questions where
    several collaborators tie are scored, all in one batched call (under DDP each rank scores its
    share of the pairs and the shares are gathered, so every rank gets the same rewards). Returns,
    per question, ``{collaborator index: reward}`` (empty where nothing ties) for
    :meth:`DevTable.best_models`, and records ``tie_rewards`` (by name) on the tied rows so
    ``dev_answers.jsonl`` shows why each tie went where it did.
    """
    pairs = [(row, m) for row, tied in enumerate(table.tied_best(values)) if len(tied) > 1 for m in tied]
    rank, world = rank_and_world()
    mine = pairs[rank::world]
    prompts = [table.rows[row]["question"] for row, _ in mine]
    responses = [table.rows[row]["outputs"][table.names[m]] or "" for row, m in mine]
    scored = [float(r) for r in reward(prompts, responses)] if mine else []
    if world > 1:
        gathered: list[list[float] | None] = [None] * world
        dist.all_gather_object(gathered, scored)
        # pairs[rank + i * world] is rank's i-th reward: interleave the shares back
        scored = [0.0] * len(pairs)
        for part_rank, part in enumerate(gathered):
            scored[part_rank::world] = part or []
    rewards: list[dict[int, float]] = [{} for _ in table.rows]
    for (row, m), value in zip(pairs, scored):
        rewards[row][m] = value
        table.rows[row].setdefault("tie_rewards", {})[table.names[m]] = value
    return rewards
