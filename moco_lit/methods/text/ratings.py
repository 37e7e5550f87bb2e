"""SPARTA's reputation system: judges score answers 1-10, ratings move with an uncertainty term.

Pieces shared by ``sparta`` and ``stackelberg``, with MoCo's (``text_sparta``) rules and numbers:

- :func:`parse_judge_score` reads a judge's 1-10 score (a JSON object, then looser forms).
- :func:`judge_round_scores` / :func:`average_rounds`: one judging round gives both answers a
  score, or 5 and 5 when either is unreadable; a judge's rounds are averaged (2 decimals).
- :class:`RatingTable`: each model's rating (start 100) and deviation (start 0.5). A duel moves
  player ``i`` by ``K * d * tanh(sigma_i) * max(|erf(dR / (sqrt 2 * sigma))|, epsilon) / scale``,
  where ``d`` is the judges' rating-weighted score difference, ``dR`` the rating gap and ``sigma``
  the two deviations combined; ratings never fall below 10; a deviation is the spread of the
  model's last ``window_size`` rating changes, at least ``min_deviation``.
- :func:`k_step`: K decays continuously with the duels rated so far in the iteration.
- :func:`player_weights`: the ``dynamic`` / ``static`` score types damp the lowest-rated players.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

ScoreType = Literal["normal", "dynamic", "static"]

DEFAULT_SCORE = 5.0  # both answers of a round get it when the judge's reply is unreadable
RATING_FLOOR = 10.0

# looser forms, tried in this order when the reply is not a JSON object with a usable score
_SCORE_FORMS = [
    re.compile(r'\{\s*"score"\s*:\s*(\d+)\s*\}', re.IGNORECASE),
    re.compile(r'"score"\s*:\s*(\d+)', re.IGNORECASE),
    re.compile(r"score\s*[:=]\s*(\d+)", re.IGNORECASE),
    re.compile(r"(\d+)\s*/\s*10", re.IGNORECASE),
]


def parse_judge_score(reply: str | None) -> int | None:
    """A judge's score in 1..10, or None when the reply holds none.

    A reply that is a JSON object with a numeric ``score`` in range gives that score (truncated to
    an integer); otherwise the first in-range number of the first form in ``_SCORE_FORMS`` that
    has one: ``{"score": N}``, ``"score": N``, ``score: N`` / ``score=N``, ``N/10``.
    """
    if reply is None:
        return None
    text = reply.strip()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and "score" in parsed:
        value = parsed["score"]
        if isinstance(value, (int, float)) and 1 <= value <= 10:
            return int(value)
    for form in _SCORE_FORMS:
        for number in form.findall(text):
            if 1 <= int(number) <= 10:
                return int(number)
    return None


def judge_round_scores(reply_a: str | None, reply_b: str | None) -> tuple[list[float], bool]:
    """One judging round of a duel: ``([score A, score B], defaulted)``; both 5 if either is unreadable."""
    score_a, score_b = parse_judge_score(reply_a), parse_judge_score(reply_b)
    if score_a is None or score_b is None:
        return [DEFAULT_SCORE, DEFAULT_SCORE], True
    return [float(score_a), float(score_b)], False


def average_rounds(rounds: Sequence[tuple[list[float], bool]]) -> tuple[float, float]:
    """A judge's scores for a duel: each answer's mean over the rounds, to 2 decimals (5 and 5 when
    every round defaulted)."""
    if not rounds or all(defaulted for _, defaulted in rounds):
        return DEFAULT_SCORE, DEFAULT_SCORE
    mean_a = sum(scores[0] for scores, _ in rounds) / len(rounds)
    mean_b = sum(scores[1] for scores, _ in rounds) / len(rounds)
    return round(mean_a, 2), round(mean_b, 2)


def k_step(initial_k: float, min_k: float, decay_rate: float, decay_steps: int, count: int) -> float:
    """K for the ``count``-th duel rated in an iteration (from 1): ``initial_k * decay_rate **
    (count / decay_steps)``, at least ``min_k``."""
    return max(min_k, initial_k * decay_rate ** (count / decay_steps))


def player_weights(
    score_type: ScoreType, history: Sequence[Sequence[float]], iteration: int
) -> list[float] | None:
    """Factors on each player's judged scores in the rating update (None: all 1).

    ``history[k]`` holds the ratings after iteration ``k``. From iteration 2, ``dynamic`` weights
    the ``iteration - 1`` lowest-rated models of the previous iteration 0, 0.1, 0.2, ... (lowest
    first); ``static`` adds one model per iteration, the lowest-rated not yet weighted, with the
    next of those factors. From iteration 8 on, iteration 7's weights stay.
    """
    iteration = min(iteration, 7)
    if score_type == "normal" or iteration < 2 or not history:
        return None
    weights = [1.0] * len(history[0])
    if score_type == "dynamic":
        previous = history[iteration - 1]
        lowest = sorted(range(len(previous)), key=lambda m: previous[m])
        for position, model in enumerate(lowest[: iteration - 1]):
            weights[model] = 0.1 * position
        return weights
    chosen: list[int] = []
    for later in range(2, iteration + 1):
        previous = history[later - 1]
        remaining = [m for m in range(len(previous)) if m not in chosen]
        if remaining:
            chosen.append(min(remaining, key=lambda m: previous[m]))  # first of equals, as a stable sort
            weights[chosen[-1]] = 0.1 * (len(chosen) - 1)
    return weights


@dataclass
class RatingTable:
    """Ratings, deviations and each model's recent rating changes (all indexed by collaborator)."""

    ratings: list[float]
    deviations: list[float]
    recent_changes: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.recent_changes:
            self.recent_changes = [[] for _ in self.ratings]

    def weighted_scores(
        self,
        judged: Mapping[int, tuple[float, float]],
        weights: Sequence[float] | None = None,
        players=(0, 0),
    ) -> tuple[float, float, float] | None:
        """``(score A, score B, total weight)``: the judges' scores averaged with their current ratings
        as weights (``weights`` scale each player's score); None without judges."""
        a, b = players
        total = sum_a = sum_b = 0.0
        for judge, (score_a, score_b) in judged.items():
            if weights is not None:
                score_a, score_b = score_a * weights[a], score_b * weights[b]
            total += self.ratings[judge]
            sum_a += self.ratings[judge] * score_a
            sum_b += self.ratings[judge] * score_b
        if total <= 0.0:
            return None
        return sum_a / total, sum_b / total, total

    def update(
        self,
        a: int,
        b: int,
        judged: Mapping[int, tuple[float, float]],
        k: float,
        scaling_factor: float,
        epsilon: float,
        window_size: int,
        min_deviation: float,
        weights: Sequence[float] | None = None,
    ) -> float | None:
        """Rate one duel (A then B, B already seeing A's new rating); returns the score difference."""
        scores = self.weighted_scores(judged, weights, (a, b))
        if scores is None:
            return None
        difference = scores[0] - scores[1]
        self.move(a, b, difference, k, scaling_factor, epsilon, window_size, min_deviation)
        return difference

    def move(
        self,
        a: int,
        b: int,
        difference: float,
        k: float,
        scaling_factor: float,
        epsilon: float,
        window_size: int,
        min_deviation: float,
    ) -> None:
        """Move A then B (B already seeing A's new rating) by a duel's score ``difference`` (A - B)."""
        deviations = (self.deviations[a], self.deviations[b])
        for player, other, sign, sigma in ((a, b, 1.0, deviations[0]), (b, a, -1.0, deviations[1])):
            combined = math.sqrt(deviations[0] ** 2 + deviations[1] ** 2) or 1e-6
            gap = self.ratings[player] - self.ratings[other]
            certainty = abs(math.erf(gap / (math.sqrt(2.0) * combined)))
            step = k * sign * difference * math.tanh(sigma) * max(certainty, epsilon) / scaling_factor
            new = max(RATING_FLOOR, self.ratings[player] + step)
            self._record(player, new - self.ratings[player], window_size, min_deviation)
            self.ratings[player] = new

    def _record(self, model: int, change: float, window_size: int, min_deviation: float) -> None:
        changes = (self.recent_changes[model] + [change])[-window_size:]
        self.recent_changes[model] = changes
        if len(changes) >= 2:
            mean = sum(changes) / len(changes)
            spread = math.sqrt(sum((c - mean) ** 2 for c in changes) / len(changes))
            self.deviations[model] = max(spread, min_deviation)
