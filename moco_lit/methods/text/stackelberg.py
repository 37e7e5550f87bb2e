"""Stackelberg SPARTA: a bandit leader draws the instructions the followers duel on.

Each iteration the leader, an EXP3 bandit over the first ``num_instructions`` dev instructions,
draws one instruction per duel (with replacement) from its weights mixed with ``leader_uniform_mix``
of uniform. The collaborators open the duels in turn; each draws its opponent at random
(``random_match_prob``) or by ``opponent_selection`` over the rating gaps. Judging, ratings and
DPO pairs are SPARTA's; the duels' judged scores reward the leader (``difficulty``: the players
did badly but not hopelessly; ``preference gap``: the score gap is near a target that shrinks over
the iterations). Finally every trained model of every iteration is scored on dev; the best is tested.
With ``training_algorithm: grpo`` the duels are not answered offline: each player gets its duel's
instruction as a GRPO prompt, samples ``grpo_num_generations`` answers while it trains, and the
duel's judges score each; the reward is their rating-weighted mean score. After the iteration's
training each player's mean score in a duel rates it and rewards the leader.
MoCo: ``text_sparta_stackelberg`` (DPO and GRPO training).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Literal

import numpy as np
import torch

from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig
from moco_lit.methods.core.module import Example
from moco_lit.methods.text.discussion import question_of
from moco_lit.methods.text.ratings import RatingTable, k_step, parse_judge_score
from moco_lit.methods.text.sparta import SCORE_JUDGE_PROMPT, Sparta
from moco_lit.training import grpo_batch_loss

log = logging.getLogger(__name__)

LeaderType = Literal["probabilistic", "uniform", "difficulty", "contested"]
OpponentSelection = Literal["schedule_decreasing", "schedule_increasing", "lowest_diff", "highest_diff"]
RewardMethod = Literal["weighted", "difficulty_only", "preference_quality_only"]
TOP_FRACTION_LEADERS = ("difficulty", "contested")
RewardScale = Literal["zero_one", "raw", "minus_one_one"]
UNREADABLE_GRPO_SCORE = 1.0  # MoCo's GRPO reward: a judge reply without a score counts 1


def scaled_reward(score: float, reward_scale: str) -> float:
    """A 1-10 score as a GRPO reward: ``zero_one`` (score - 1) / 9, ``minus_one_one`` twice that
    minus 1, ``raw`` the score; clipped to 1-10 first."""
    score = min(max(float(score), 1.0), 10.0)
    if reward_scale == "raw":
        return score
    if reward_scale == "minus_one_one":
        return 2.0 * (score - 1.0) / 9.0 - 1.0
    return (score - 1.0) / 9.0


def leader_probabilities(weights: np.ndarray, uniform_mix: float) -> np.ndarray:
    """The leader's draw: its normalised weights, ``uniform_mix`` of them replaced by uniform."""
    weights = np.maximum(np.asarray(weights, dtype=float), 1e-12)
    mix = float(np.clip(uniform_mix, 0.0, 1.0))
    probs = (1.0 - mix) * (weights / weights.sum()) + mix / len(weights)
    probs = np.maximum(probs, 0.0)
    return probs / probs.sum()


def schedule(iteration: int, num_iterations: int) -> float:
    """How far training has come: 0 in the first iteration, 1 in the last."""
    return iteration / max(num_iterations - 1, 1)


class Stackelberg(Sparta):
    """Args:
    leader_type: ``probabilistic`` (MoCo's EXP3 leader), ``uniform`` (every instruction equally
        likely, never updated), or a fixed top fraction of the dev instructions each iteration
        (not in MoCo): ``difficulty`` (most collaborators fail it in the dev table) or
        ``contested`` (the last iteration's judges were least decided on it), with SPARTA's
        matching; ``leader_fraction`` is the share kept.
    leader_scope: ``global`` (one leader) or ``per_model`` (one per collaborator, drawing the
        duels it opens and rewarded by its own score).
    leader_uniform_mix: share of the draw that is uniform (EXP3's gamma).
    num_duels_per_iteration: duels per iteration (default: one per instruction).
    reward_method: ``weighted`` (``difficulty_reward_weight`` and
        ``preference_quality_reward_weight``, normalised), ``difficulty_only`` or
        ``preference_quality_only``.
    score_threshold: a player scored below it earns no difficulty reward (the instruction is
        hopeless); above, the reward is ``(10 - score) / (10 - score_threshold)``.
    ideal_start_gap, ideal_end_gap, preference_gap_sigma: the preference reward is a Gaussian
        (width ``preference_gap_sigma``) of the gap between the two scores (divided by 9) around a
        target going from ``ideal_start_gap`` in the first iteration to ``ideal_end_gap`` in the last.
    opponent_selection: ``schedule_decreasing`` / ``schedule_increasing`` draw the opponent by a
        Gaussian (width ``reputation_gap_sigma``) of its rating gap, as a share of the largest,
        around a target going from 1 to 0 (or 0 to 1) over the iterations; ``lowest_diff`` /
        ``highest_diff`` draw among the ``num_opponents`` nearest (farthest) in rating.
    training_algorithm: ``dpo`` (MoCo's default) or ``grpo``: each player of a duel is trained
        on the duel's instruction by GRPO, rewarded online by the duel's judges (the models outside
        it, as MoCo's ``judge_names``): each judge scores each sampled answer 1-10 with SPARTA's
        judge prompt (an unreadable reply counts 1), the reward is the judges' mean score weighted
        by their ratings at the start of the iteration, scaled by ``reward_scale``. After the
        iteration's training a player's duel score is its mean judged score over its samples; the
        duels are rated in order with that score difference (no player weights, so ``score_type``
        must be ``normal``) and reward the leader. Every model that played trains every iteration.
    num_instructions: dev instructions the leader draws from (default: MoCo's 500 for ``dpo``,
        128 for ``grpo``).
    grpo_num_generations: answers sampled per GRPO prompt (the group).
    grpo_learning_rate: the optimizer's learning rate with ``grpo`` (``learning_rate`` is DPO's).
    grpo_max_completion_length: new tokens per sampled answer.
    grpo_temperature, grpo_top_p: sampling of the answers. MoCo's trainer carries 0.7 and 0.8 but
        its rollouts are greedy (``force_greedy_rollout``), so its groups' answers are identical
        and their advantages zero; ``grpo_temperature: 0`` reproduces that.
    grpo_beta: weight of the KL term (MoCo's 0; the reference here is the model without adapter).
    grpo_epsilon: the ratio clip (on-policy steps: ratio 1, so inactive).
    grpo_scale_rewards: advantages divided by the group's reward std (``group``), the batch's
        (``batch``) or nothing (``none``).
    reward_scale: ``zero_one`` ((score - 1) / 9), ``minus_one_one`` or ``raw`` (1-10).
    judge_max_new_tokens, judge_temperature: the judges' decoding (MoCo's: 64 tokens at
        temperature 1e-5, all but greedy).
    (Every other SPARTA argument applies, except ``opponents_by_rating``: ratings always count.
    The rating step K decays over all duels rated so far, across iterations, as in MoCo.)
    """

    method_name = "stackelberg"
    level = "text"
    k_decays_across_iterations = True
    iteration_attributes = (
        *Sparta.iteration_attributes,
        "leader_choice",
        "leader_weights",
        "duel_scores",
        "trained_iterations",
        "adapter_dev_scores",
        "best_adapter",
        "grpo_duels",
        "grpo_rows",
        "judge_weights",
        "reward_log",
        "trained_models",
    )

    def __init__(
        self,
        collaborators: list[str | dict],
        num_iterations: int = 1,
        leader_type: LeaderType = "probabilistic",
        leader_scope: Literal["global", "per_model"] = "global",
        leader_uniform_mix: float = 0.2,
        num_duels_per_iteration: int | None = None,
        reward_method: RewardMethod = "weighted",
        difficulty_reward_weight: float = 0.3,
        preference_quality_reward_weight: float = 0.7,
        score_threshold: float = 3.0,
        ideal_start_gap: float = 0.6,
        ideal_end_gap: float = 0.15,
        preference_gap_sigma: float = 0.15,
        opponent_selection: OpponentSelection = "schedule_decreasing",
        reputation_gap_sigma: float = 0.15,
        leader_fraction: float = 0.5,
        training_algorithm: Literal["dpo", "grpo"] = "dpo",
        num_instructions: int | None = None,
        grpo_num_generations: int = 4,
        grpo_learning_rate: float = 1e-6,
        grpo_max_completion_length: int = 256,
        grpo_temperature: float = 0.7,
        grpo_top_p: float = 0.8,
        grpo_beta: float = 0.0,
        grpo_epsilon: float = 0.2,
        grpo_scale_rewards: Literal["group", "batch", "none"] = "group",
        reward_scale: RewardScale = "zero_one",
        judge_max_new_tokens: int = 64,
        judge_temperature: float = 1e-5,
        **kwargs,
    ) -> None:
        if num_instructions is None:
            num_instructions = 128 if training_algorithm == "grpo" else 500
        super().__init__(
            collaborators, num_iterations=num_iterations, num_instructions=num_instructions, **kwargs
        )
        name = self.method_name
        for label, value, allowed in [
            ("leader_type", leader_type, ("probabilistic", "uniform", *TOP_FRACTION_LEADERS)),
            ("leader_scope", leader_scope, ("global", "per_model")),
            ("reward_method", reward_method, ("weighted", "difficulty_only", "preference_quality_only")),
            ("opponent_selection", opponent_selection,
             ("schedule_decreasing", "schedule_increasing", "lowest_diff", "highest_diff")),
            ("training_algorithm", training_algorithm, ("dpo", "grpo")),
            ("grpo_scale_rewards", grpo_scale_rewards, ("group", "batch", "none")),
            ("reward_scale", reward_scale, ("zero_one", "raw", "minus_one_one")),
        ]:  # fmt: skip
            if value not in allowed:
                raise UserError(f"{name}.{label} must be one of {', '.join(allowed)}; got {value!r}")
        if not 0.0 < leader_fraction <= 1.0:
            raise UserError(f"{name}.leader_fraction must be in (0, 1], got {leader_fraction}")
        if not 0.0 <= leader_uniform_mix <= 1.0:
            raise UserError(f"{name}.leader_uniform_mix must be in [0, 1], got {leader_uniform_mix}")
        if num_duels_per_iteration is not None and num_duels_per_iteration < 1:
            raise UserError(f"{name}.num_duels_per_iteration must be >= 1, got {num_duels_per_iteration}")
        if reward_method == "weighted" and difficulty_reward_weight + preference_quality_reward_weight <= 0:
            raise UserError(
                f"{name}: difficulty_reward_weight + preference_quality_reward_weight must be > 0"
            )
        if training_algorithm == "grpo":
            if self.hparams.score_type != "normal":
                raise UserError(
                    f"{name}: training_algorithm grpo rates with score_type normal only "
                    f"(got {self.hparams.score_type!r}), as MoCo"
                )
            if grpo_num_generations < 2:
                raise UserError(f"{name}.grpo_num_generations must be >= 2, got {grpo_num_generations}")
            for label, value in [
                ("grpo_max_completion_length", grpo_max_completion_length),
                ("judge_max_new_tokens", judge_max_new_tokens),
            ]:
                if value < 1:
                    raise UserError(f"{name}.{label} must be >= 1, got {value}")
            self.learning_rate = grpo_learning_rate
        self.training_algorithm = training_algorithm
        self.leader_type = leader_type
        self.leader_scope = "global" if leader_type == "uniform" else leader_scope
        self.leader_uniform_mix = leader_uniform_mix
        self.num_duels_per_iteration = num_duels_per_iteration
        self.reward_method = reward_method
        self.reward_weights = (difficulty_reward_weight, preference_quality_reward_weight)
        self.score_threshold = score_threshold
        self.gap_schedule = (ideal_start_gap, ideal_end_gap, preference_gap_sigma)
        self.opponent_selection = opponent_selection
        self.reputation_gap_sigma = reputation_gap_sigma
        self.leader_fraction = leader_fraction
        # the top-fraction leaders read the dev table (contested: before any duel was decided)
        self.uses_dev_table = leader_type in ("difficulty", "contested")
        self.leader_choice: list[str] = []  # the dev id of each duel of the latest iteration
        self.duel_instructions: list[int] = []  # ... and its index among the leader's instructions
        self.leader_weights: list[list[float]] = []  # one row (global) or one per collaborator
        self.duel_scores: list[
            list[float]
        ] = []  # each duel's scores, judges weighted by the ratings before it
        self.trained_iterations: list[int] = []  # iterations that had DPO pairs (so trained)
        self.adapter_dev_scores: list[dict] = []  # (model, iteration, dev score) of each trained model
        self.best_adapter: list[int] = []  # [iteration, collaborator] of the tested model
        # GRPO: the latest iteration's duels and each model's prompt rows, the judges' weights,
        # one row per sampled answer, and which models trained in each iteration
        self.grpo_duels: list[dict] = []
        self.grpo_rows: list[list[dict]] = []
        self.judge_weights: list[float] = []
        self.reward_log: list[dict] = []
        self.trained_models: dict[int, list[int]] = {}
        self._judge_cache: dict[tuple, float] = {}
        self._start_weights: dict[str, dict[str, torch.Tensor]] = {}  # the judges' weights (GRPO)
        self._trained_weights: dict[int, dict[str, dict[str, torch.Tensor]]] = {}

    # -- the leader's draw ----------------------------------------------------------------------

    def draw_duels(
        self, iteration: int, examples: list[Example]
    ) -> tuple[list[Example], list[tuple[int, int]]]:
        if self.leader_type in TOP_FRACTION_LEADERS:
            return super().draw_duels(iteration, examples)
        pool = examples[: self.num_instructions]
        count = len(self.collaborators)
        if not self.leader_weights:
            self.leader_weights = [
                [1.0] * len(pool) for _ in range(1 if self.leader_scope == "global" else count)
            ]
        # MoCo's streams: Python's random and NumPy's, both seeded with seed + iteration
        seed = int(self.hparams.seed) + iteration
        draws, numpy_draws = random.Random(seed), np.random.RandomState(seed)
        chosen, pairs, self.duel_instructions = [], [], []
        for duel in range(self.num_duels_per_iteration or len(pool)):
            player = duel % count  # the collaborators open duels in turn
            if self.leader_type == "uniform":
                probs = np.ones(len(pool)) / len(pool)
            else:
                probs = leader_probabilities(self.leader_row(player), self.leader_uniform_mix)
            index = int(numpy_draws.choice(len(pool), p=probs))
            pairs.append((player, self.draw_opponent(player, iteration, draws, numpy_draws)))
            chosen.append(pool[index])
            self.duel_instructions.append(index)
        self.leader_choice = [e["id"] for e in chosen]
        return chosen, pairs

    def leader_row(self, player: int) -> np.ndarray:
        return np.asarray(self.leader_weights[0 if self.leader_scope == "global" else player], dtype=float)

    def draw_opponent(self, player: int, iteration: int, draws: random.Random, numpy_draws) -> int:
        others = [m for m in range(len(self.collaborators)) if m != player]
        if draws.random() < self.hparams.random_match_prob:
            return draws.choice(others)
        ratings = self.ratings.tolist()
        gaps = [abs(ratings[player] - ratings[m]) for m in others]
        if self.opponent_selection in ("lowest_diff", "highest_diff"):
            ranked = sorted(
                range(len(others)), key=lambda i: gaps[i], reverse=self.opponent_selection == "highest_diff"
            )
            top = max(1, min(self.hparams.num_opponents, len(others)))
            return draws.choice([others[i] for i in ranked[:top]])
        progress = schedule(iteration, self.num_iterations)
        target = 1.0 - progress if self.opponent_selection == "schedule_decreasing" else progress
        largest = max(gaps)
        sigma = max(self.reputation_gap_sigma, 1e-12)
        shares = [0.0 if largest <= 1e-12 else min(max(g / largest, 0.0), 1.0) for g in gaps]
        weights = np.asarray([math.exp(-((s - target) ** 2) / (2.0 * sigma**2)) for s in shares])
        if not np.isfinite(weights).all() or weights.sum() <= 0:
            return draws.choice(others)
        return others[int(numpy_draws.choice(len(others), p=weights / weights.sum()))]

    # -- the leader's reward --------------------------------------------------------------------

    def rate(self, iteration: int, pairs, judged) -> RatingTable:
        before = RatingTable(self.ratings.tolist(), self.deviations.tolist())
        self.duel_scores = []
        for scores in judged:
            weighted = before.weighted_scores(scores)
            self.duel_scores.append([5.0, 5.0] if weighted is None else list(weighted[:2]))
        table = super().rate(iteration, pairs, judged)
        if self.leader_type == "probabilistic" and pairs:
            self.update_leader(iteration, pairs)
        return table

    def reward(self, iteration: int, score: float, scores: list[float]) -> float:
        """The leader's reward in [0, 1] for a player's ``score`` in a duel scored ``scores``."""
        threshold = self.score_threshold
        difficulty = 0.0 if score < threshold else (10.0 - score) / (10.0 - threshold)
        start, end, sigma = self.gap_schedule
        target = end + (start - end) * (1.0 - schedule(iteration, self.num_iterations))
        gap = abs(scores[0] - scores[1]) / 9.0
        preference = math.exp(-((gap - target) ** 2) / (2.0 * max(sigma, 1e-12) ** 2))
        if self.reward_method == "difficulty_only":
            return difficulty
        if self.reward_method == "preference_quality_only":
            return preference
        total = sum(self.reward_weights)
        return self.reward_weights[0] / total * difficulty + self.reward_weights[1] / total * preference

    def update_leader(
        self,
        iteration: int,
        pairs: list[tuple[int, int]],
        instructions: list[int] | None = None,
        scores: list[list[float]] | None = None,
    ) -> None:
        """EXP3: each duel's reward over its draw probability, added to its instruction's log-weight / K.

        ``instructions`` and ``scores`` of the duels in ``pairs`` (default: the iteration's)."""
        instructions = self.duel_instructions if instructions is None else instructions
        scores_of = self.duel_scores if scores is None else scores
        size = len(self.leader_weights[0])
        rows = [np.asarray(row, dtype=float) for row in self.leader_weights]
        probs = [leader_probabilities(row, self.leader_uniform_mix) for row in rows]
        gains = [np.zeros(size) for _ in rows]
        if self.leader_scope == "global":
            opener, opponent = np.zeros(size), np.zeros(size)
            for index, scores in zip(instructions, scores_of):
                opener[index] += self.reward(iteration, scores[0], scores) / probs[0][index]
                opponent[index] += self.reward(iteration, scores[1], scores) / probs[0][index]
            gains = [(opener + opponent) / 2]
        else:  # each collaborator's leader learns from the duels it opened
            for (player, _), index, scores in zip(pairs, instructions, scores_of):
                gains[player][index] += self.reward(iteration, scores[0], scores) / probs[player][index]
        updated = []
        for row, gain in zip(rows, gains):
            log_weights = np.log(np.maximum(row, 1e-12)) + (1 / size) * gain
            updated.append(np.exp(log_weights - np.max(log_weights)).tolist())
        self.leader_weights = updated

    # -- the top-fraction leaders (not in MoCo) -------------------------------------------------

    def leader_scores(self, examples: list[Example]) -> dict[str, float]:
        """How much a top-fraction leader wants each instruction duelled on (higher first)."""
        if self.leader_type == "contested" and self.last_duels:
            return {d["id"]: -abs(d["outcome_a"] - 0.5) for d in self.last_duels}
        index = self.dev_table.index_of()
        scores = self.dev_table.score_matrix()
        difficulty = {}
        for example in examples:
            row = [v for v in scores[index[example["id"]]].tolist() if not math.isnan(v)]
            difficulty[example["id"]] = 1.0 - (sum(row) / len(row) if row else 0.0)
        return difficulty

    def choose_instructions(self, iteration: int, examples: list[Example]) -> list[Example]:
        pool = examples[: self.num_instructions]
        wanted = self.leader_scores(pool)
        keep = max(1, round(len(pool) * self.leader_fraction))
        # stable: among equally wanted instructions the dev order decides
        ranked = sorted(range(len(pool)), key=lambda i: -wanted.get(pool[i]["id"], -math.inf))
        chosen = sorted(ranked[:keep])
        self.leader_choice = [pool[i]["id"] for i in chosen]
        return [pool[i] for i in chosen]

    # -- every iteration's trained models; the dev-best is tested -------------------------------

    def build_iteration(self, iteration: int) -> dict[str, list[dict]]:
        self.keep_trained_weights(iteration - 1)
        if self.training_algorithm == "grpo":
            return self.build_grpo_iteration(iteration)
        items = super().build_iteration(iteration)
        if self.preference_pairs:
            self.trained_iterations.append(iteration)
        return items

    # -- GRPO: online judged samples, then ratings and the leader -------------------------------

    def build_grpo_iteration(self, iteration: int) -> dict[str, list[dict]]:
        """Draw the duels; each player gets its duel's instruction as a GRPO prompt (rows in
        duel order, player before opponent, as MoCo's per-model prompt files)."""
        examples, pairs = self.draw_duels(iteration, self.dev_examples())
        count = len(self.collaborators)
        self.grpo_duels, self.grpo_rows = [], [[] for _ in range(count)]
        self.judge_weights = self.ratings.tolist()  # the judges' weights all iteration long
        agents = self.agents.agents if self.agents is not None else {}
        self._start_weights = {key: self.agents.agent_weights(key) for key in agents}
        self.reward_log, self._judge_cache = [], {}
        items: dict[str, list[dict]] = {}
        for duel, (example, (a, b)) in enumerate(zip(examples, pairs)):
            judges = [m for m in range(count) if m not in (a, b)]
            self.grpo_duels.append({"id": example["id"], "players": [a, b], "judges": judges})
            for side, (model, opponent) in enumerate(((a, b), (b, a))):
                row = {"id": example["id"], "duel": duel, "side": side, "model": model,
                       "opponent": opponent, "judges": judges}  # fmt: skip
                self.grpo_rows[model].append(row)
                items.setdefault(example["id"], []).append({**row, "prompt": example["prompt"]})
        self.trained_models[iteration] = [m for m in range(count) if self.grpo_rows[m]]
        self.trained_iterations.append(iteration)
        self._example_cost.clear()
        return items

    def training_step(self, batch: list[Example], batch_idx: int) -> torch.Tensor | None:
        if self.training_algorithm != "grpo":
            return super().training_step(batch, batch_idx)
        rows = [item for example in batch for item in self.items.get(example["id"], [])]
        players = sorted({row["model"] for row in rows})
        # every player samples and is judged before any loss: a judge scoring with its weights of
        # the iteration's start must not change weights a loss of this step already used
        groups = {m: self.grpo_samples(m, [row for row in rows if row["model"] == m]) for m in players}
        losses = [loss for m in players if (loss := self.grpo_loss(m, *groups[m])) is not None]
        if not losses:  # scripted players: their samples are judged, nothing learns
            return None if self.trainer.world_size == 1 else self.ddp_anchor.sum() * 0.0
        loss = torch.stack(losses).mean()
        self.log("train/loss", loss, batch_size=len(rows), prog_bar=True)
        return loss

    def grpo_samples(self, model: int, rows: list[dict]) -> tuple[list[dict], list[list[str]], list[float]]:
        """Sample the group of each of ``model``'s rows, have the duels' judges score every answer,
        log them: ``(rows, answers per row, rewards flat)``."""
        hp = self.hparams
        player = self.collaborators[model]
        decoding = replace(
            self.decoding,
            temperature=hp.grpo_temperature,
            top_p=hp.grpo_top_p,
            max_new_tokens=hp.grpo_max_completion_length,
        )
        seeds = [self.seed_of(r["id"], model, "grpo", self.current_epoch, r["duel"], r["side"]) for r in rows]
        prompts = [r["prompt"] for r in rows]
        if self.agents is not None and self.agents.owns(player):
            self.agents.activate(player)
            with self.agents.generating():
                groups = self.engine.sample(player, prompts, decoding, hp.grpo_num_generations, seeds)
        else:
            groups = self.engine.sample(player, prompts, decoding, hp.grpo_num_generations, seeds)
        answers = [[g.text for g in group] for group in groups]
        rewards = []
        for row, group, judged in zip(rows, answers, self.judge_samples(rows, answers)):
            for sample, (text, by_judge) in enumerate(zip(group, judged)):
                raw = self.weighted_score(by_judge)
                reward = scaled_reward(raw, hp.reward_scale)
                rewards.append(reward)
                self.reward_log.append({
                    "duel": row["duel"], "side": row["side"], "model": model, "epoch": self.current_epoch,
                    "sample": sample, "completion": text, "judge_scores": by_judge,
                    "raw_score": raw, "reward": reward,
                })  # fmt: skip
        self.log("train/reward", sum(rewards) / len(rewards), batch_size=len(rows))
        return rows, answers, rewards

    def grpo_loss(
        self, model: int, rows: list[dict], answers: list[list[str]], rewards: list[float]
    ) -> torch.Tensor | None:
        """GRPO on ``model``'s judged groups (None for a model without weights)."""
        hp = self.hparams
        player = self.collaborators[model]
        if self.agents is None or not self.agents.owns(player):
            return None
        size = hp.grpo_num_generations
        prompts = [r["prompt"] for r in rows for _ in range(size)]
        tokens = self._tokens(player, prompts, [text for group in answers for text in group])
        return grpo_batch_loss(
            self.agents.activate(player),
            tokens,
            torch.tensor(rewards, device=self.device),
            size,
            None,
            hp.grpo_epsilon,
            hp.grpo_beta,
            hp.grpo_scale_rewards,
        )

    @contextmanager
    def as_at_iteration_start(self, model: int) -> Iterator[None]:
        """Collaborator ``model`` with its weights of the iteration's start, for judging (MoCo's
        judges are the models the iteration began with)."""
        key = f"agent{model}"
        # a fit resumed inside an iteration: the weights the previous iteration ended with
        start = self._start_weights.get(key) or self._trained_weights.get(int(self.iteration) - 1, {}).get(
            key
        )
        if self.agents is None or not self.agents.owns(self.collaborators[model]) or start is None:
            yield
            return
        current = self.agents.agent_weights(key)
        self.agents.load_agent_weights(key, start)
        try:
            yield
        finally:
            self.agents.load_agent_weights(key, current)

    def judge_samples(self, rows: list[dict], answers: list[list[str]]) -> list[list[dict[int, float]]]:
        """Each row's judges score each of its answers: ``[row][sample] = {judge: score}``.

        As MoCo's reward, a judge is asked about an (instruction, answer) once per player and
        iteration: an answer sampled again keeps its first score."""
        by_id = {e["id"]: e for e in self.dev_examples()}
        scores: list[list[dict[int, float]]] = [[{} for _ in group] for group in answers]
        for judge in sorted({j for row in rows for j in row["judges"]}):
            wanted = [
                (n, k) for n, row in enumerate(rows) if judge in row["judges"] for k in range(len(answers[n]))
            ]
            keys = {(n, k): (rows[n]["model"], judge, rows[n]["id"], answers[n][k]) for n, k in wanted}
            asked = [(n, k) for n, k in wanted if keys[(n, k)] not in self._judge_cache]
            if asked:
                prompts = [
                    SCORE_JUDGE_PROMPT.format(
                        instruction=question_of(by_id[rows[n]["id"]]), response=answers[n][k]
                    )
                    for n, k in asked
                ]
                ids = [rows[n]["id"] for n, _ in asked]
                with self.as_at_iteration_start(judge):
                    replies = self.ask(
                        judge,
                        prompts,
                        ids,
                        step=f"grpo-judge{self.current_epoch}",
                        decoding=self.judge_decoding,
                    )
                for (n, k), reply in zip(asked, replies):
                    score = parse_judge_score(reply.text)
                    self._judge_cache[keys[(n, k)]] = float(UNREADABLE_GRPO_SCORE if score is None else score)
            for n, k in wanted:
                scores[n][k][judge] = self._judge_cache[keys[(n, k)]]
        return scores

    @property
    def judge_decoding(self) -> DecodingConfig:
        """MoCo's judges (both training algorithms): short, all but greedy, no nucleus cut."""
        hp = self.hparams
        return replace(
            self.decoding, temperature=hp.judge_temperature, top_p=1.0, max_new_tokens=hp.judge_max_new_tokens
        )

    def weighted_score(self, by_judge: dict[int, float]) -> float:
        """The judges' scores averaged with their ratings at the start of the iteration as weights."""
        total = sum(max(0.0, self.judge_weights[j]) for j in by_judge)
        if total <= 0.0:
            return UNREADABLE_GRPO_SCORE
        return sum(max(0.0, self.judge_weights[j]) * s for j, s in by_judge.items()) / total

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # the iteration's ratings and leader move after its training, before its checkpoint
        if (
            self.training_algorithm == "grpo"
            and self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
            and (self.current_epoch + 1) % self.epochs_per_iteration == 0
        ):
            self.settle_grpo_iteration(int(self.iteration))
        super().on_train_batch_end(outputs, batch, batch_idx)

    def gathered_reward_log(self) -> list[dict]:
        """Every rank's reward rows, in (duel, player, epoch, sample) order."""
        rows = self.reward_log
        if self.trainer.world_size > 1:
            parts: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(parts, rows)
            rows = [row for part in parts for row in part]
        found = {(r["duel"], r["side"], r["epoch"], r["sample"]): r for r in reversed(rows)}
        return [found[key] for key in sorted(found)]  # a row two ranks sampled counts once

    def settle_grpo_iteration(self, iteration: int) -> None:
        """Each player's mean judged score per duel; rate the duels in order; reward the leader."""
        hp = self.hparams
        log_rows = self.gathered_reward_log()
        self.reward_log = log_rows
        names = self.collaborator_names
        table = RatingTable(
            self.ratings.tolist(), self.deviations.tolist(), [list(c) for c in self.recent_changes]
        )
        self.duel_scores, self.last_duels = [], []
        for duel, info in enumerate(self.grpo_duels):
            means = []
            for side in (0, 1):
                raw = [r["raw_score"] for r in log_rows if r["duel"] == duel and r["side"] == side]
                means.append(float(np.mean(raw)) if raw else None)
            self.duel_scores.append(means)
            if None in means:  # a player that never sampled (its question fell out): no rating, no reward
                continue
            a, b = info["players"]
            self.last_duels.append({**info, "scores": means, "outcome_a": means[0] / (means[0] + means[1])})
            if not hp.freeze_ratings:
                self.rating_updates += 1
                k = k_step(hp.initial_k, hp.min_k, hp.decay_rate, hp.decay_steps, int(self.rating_updates))
                table.move(a, b, means[0] - means[1], k, hp.scaling_factor, hp.epsilon, hp.window_size,
                           hp.min_deviation)  # fmt: skip
        self.ratings.copy_(torch.tensor(table.ratings, dtype=torch.float64))
        self.deviations.copy_(torch.tensor(table.deviations, dtype=torch.float64))
        self.recent_changes = table.recent_changes
        self.rating_history.append(list(table.ratings))
        self.trained_before = True
        scored = [d for d, means in enumerate(self.duel_scores) if None not in means]
        if self.leader_type == "probabilistic" and scored:  # none scored: MoCo keeps the weights
            self.update_leader(
                iteration,
                [tuple(self.grpo_duels[d]["players"]) for d in scored],
                [self.duel_instructions[d] for d in scored],
                [self.duel_scores[d] for d in scored],
            )
        log.info("%s ratings after iteration %d: %s", self.method_name, iteration,
                 {n: round(r, 3) for n, r in zip(names, table.ratings)})  # fmt: skip

    def keep_trained_weights(self, iteration: int) -> None:
        """Keep each agent's weights as trained in ``iteration`` (if it trained)."""
        if iteration in self.trained_iterations and iteration not in self._trained_weights:
            agents = self.agents.agents if self.agents is not None else {}
            self._trained_weights[iteration] = {key: self.agents.agent_weights(key) for key in agents}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        # the final choice compares every trained iteration: a resumed fit needs the earlier ones
        checkpoint["trained_weights"] = self._trained_weights

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._trained_weights = checkpoint.get("trained_weights", {})

    def load_trained_weights(self, iteration: int) -> None:
        for key, weights in self._trained_weights.get(iteration, {}).items():
            self.agents.load_agent_weights(key, weights)
        if self.agents is not None:
            self.agents.refresh_fingerprints()

    def finish_training(self) -> None:
        last = self.num_iterations - 1
        self.keep_trained_weights(last)
        trained = [k for k in self.trained_iterations if k in self._trained_weights]
        if not trained:  # nothing trained: the collaborators as they are
            super().finish_training()
            self.best_adapter = [last, super().tested_model]
            return
        names = self.collaborator_names
        self.adapter_dev_scores, candidates = [], []
        for iteration in trained:
            self.load_trained_weights(iteration)
            # DPO trains every model; GRPO the models that played in the iteration (MoCo's adapters)
            for model in self.trained_models.get(iteration, range(len(names))):
                (score,) = self.score_on_dev([model], step=f"final-dev{iteration}")
                self.adapter_dev_scores.append(
                    {"model": names[model], "iteration": iteration, "dev_score": score}
                )
                candidates.append((iteration, model))
        found = [-math.inf if math.isnan(r["dev_score"]) else r["dev_score"] for r in self.adapter_dev_scores]
        best = found.index(max(found))  # the first of the best, in (iteration, collaborator) order
        best_iteration, best_model = candidates[best]
        self.best_adapter = [best_iteration, best_model]
        # every agent as last trained, the tested one as trained in its best iteration
        self.load_trained_weights(trained[-1])
        key = f"agent{best_model}"
        if key in self._trained_weights[best_iteration]:
            self.agents.load_agent_weights(key, self._trained_weights[best_iteration][key])
            self.agents.refresh_fingerprints()
        for model in range(len(names)):
            own = [score for score, (_, m) in zip(found, candidates) if m == model]
            self.final_dev_scores[model] = max(own) if own else math.nan
        self.dev_scores.copy_(self.final_dev_scores)
        log.info(
            "%s: testing %s as trained in iteration %d", self.method_name, names[best_model], best_iteration
        )

    @property
    def tested_model(self) -> int:
        return int(self.best_adapter[1]) if self.best_adapter else super().tested_model
