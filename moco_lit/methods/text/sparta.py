"""SPARTA: alignment by combat — collaborators duel, judge each other, and learn from the verdicts.

Each iteration the dev instructions are duels: per round of instructions the models play in a
random order, each against an opponent drawn at random from the ``num_opponents`` closest in
rating (or from everyone, with probability ``random_match_prob``). Every model outside a duel
scores both answers 1-10; the judges' rating-weighted scores move the ratings (``ratings.py``) and
give a (chosen, rejected) pair, and every model is DPO-tuned on all of the iteration's pairs (LoRA;
the reference is the model before the iteration). Finally the dev-best model is tested.
Jiang et al., "SPARTA ALIGNMENT: Collectively Aligning Multiple Language Models through Combat"
(NeurIPS 2025). MoCo: ``text_sparta``.
"""

from __future__ import annotations

import logging
import random
from typing import ClassVar, Literal

import torch

from moco_lit.dev_table import DevTable
from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig
from moco_lit.methods.core.agent_trained import AgentTrainedModule
from moco_lit.methods.core.dev_trained import even_out_training_batches
from moco_lit.methods.core.module import Answer, Batch, Example
from moco_lit.methods.text.discussion import question_of
from moco_lit.methods.text.ratings import (
    RatingTable,
    ScoreType,
    average_rounds,
    judge_round_scores,
    k_step,
    player_weights,
)
from moco_lit.training import completion_logps, dpo_loss, reference_logps

log = logging.getLogger(__name__)

SCORE_JUDGE_PROMPT = """Rate how well the response below answers the instruction, from 1 (useless) \
to 10 (excellent).

Instruction:
{instruction}

Response:
{response}

Reply with a JSON object and nothing else, for example {{"score": 6}}."""


def repeat_keys(ids: list[str]) -> list[str]:
    """Seed keys for one call: an id seen before in it becomes ``id#n`` (its n-th repeat), so an
    instruction drawn for two duels is sampled twice, not answered once for both."""
    seen: dict[str, int] = {}
    keys = []
    for example_id in ids:
        count = seen.get(example_id, 0)
        keys.append(f"{example_id}#{count}" if count else example_id)
        seen[example_id] = count + 1
    return keys


class Sparta(AgentTrainedModule):
    """Args:
    num_iterations: combat-then-DPO iterations (one epoch each unless ``epochs_per_iteration``).
    num_instructions: dev instructions duelled on per iteration (the first ones of dev).
    random_match_prob: chance that an opponent is drawn from everyone instead of the nearest.
    num_opponents: how many of the nearest in rating an opponent is drawn from.
    opponents_by_rating: ``until_trained`` (MoCo: once a DPO step has run, MoCo looks the trained
        models' ratings up under their new names, finds none, and draws every opponent at random)
        or ``always`` (match by rating in every iteration, as the paper describes).
    judge_rounds: times each judge scores each answer (the scores are averaged).
    score_type: ``normal``; ``dynamic`` / ``static`` damp the lowest-rated players' scores in the
        rating update from iteration 2 on (see ``ratings.player_weights``).
    initial_rating, initial_deviation: every model's starting rating and deviation.
    initial_k, min_k, decay_rate, decay_steps: the step ``max(min_k, initial_k * decay_rate **
        (n / decay_steps))`` for the iteration's n-th duel.
    scaling_factor, epsilon: the rating change is divided by ``scaling_factor``; ``epsilon`` is
        the least weight of the rating-gap term.
    window_size, min_deviation: a deviation is the spread of the last ``window_size`` changes.
    freeze_ratings: keep every rating and deviation at its start.
    dpo_reference: ``previous`` (MoCo: the model before this iteration's DPO) or ``base`` (the
        untrained model, the adapter disabled).
    beta: DPO's beta. (MoCo's DPO: learning rate 1e-6, 2048 tokens per pair; max_new_tokens 256
        for every call.)
    """

    method_name = "sparta"
    level = "text"
    min_collaborators = 3  # two players and at least one judge
    uses_dev_table: ClassVar[bool] = False  # MoCo asks nothing on dev before the duels
    k_decays_across_iterations: ClassVar[bool] = False
    iteration_attributes = (
        *AgentTrainedModule.iteration_attributes,
        "last_duels",
        "preference_pairs",
        "recent_changes",
        "rating_history",
        "trained_before",
    )

    def __init__(
        self,
        collaborators: list[str | dict],
        num_iterations: int = 3,
        num_instructions: int = 500,
        random_match_prob: float = 0.2,
        num_opponents: int = 3,
        opponents_by_rating: Literal["until_trained", "always"] = "until_trained",
        judge_rounds: int = 1,
        score_type: ScoreType = "normal",
        initial_rating: float = 100.0,
        initial_deviation: float = 0.5,
        initial_k: float = 10.0,
        min_k: float = 5.0,
        decay_rate: float = 0.9,
        decay_steps: int = 10,
        scaling_factor: float = 20.0,
        epsilon: float = 0.01,
        window_size: int = 10,
        min_deviation: float = 0.1,
        freeze_ratings: bool = False,
        dpo_reference: Literal["previous", "base"] = "previous",
        beta: float = 0.1,
        learning_rate: float = 1e-6,
        max_length: int = 2048,
        max_new_tokens: int = 256,
        **kwargs,
    ) -> None:
        super().__init__(
            collaborators,
            num_iterations=num_iterations,
            learning_rate=learning_rate,
            max_length=max_length,
            max_new_tokens=max_new_tokens,
            **kwargs,
        )
        name = self.method_name
        if not 0.0 <= random_match_prob <= 1.0:
            raise UserError(f"{name}.random_match_prob must be in [0, 1], got {random_match_prob}")
        for label, value in [
            ("num_opponents", num_opponents),
            ("judge_rounds", judge_rounds),
            ("decay_steps", decay_steps),
            ("window_size", window_size),
        ]:
            if value < 1:
                raise UserError(f"{name}.{label} must be >= 1, got {value}")
        for label, value, allowed in [
            ("opponents_by_rating", opponents_by_rating, ("until_trained", "always")),
            ("score_type", score_type, ("normal", "dynamic", "static")),
            ("dpo_reference", dpo_reference, ("previous", "base")),
        ]:
            if value not in allowed:
                raise UserError(f"{name}.{label} must be one of {', '.join(allowed)}; got {value!r}")
        self.num_instructions = num_instructions
        self.beta = beta
        count = len(collaborators)
        self.register_buffer("ratings", torch.full((count,), float(initial_rating), dtype=torch.float64))
        self.register_buffer(
            "deviations", torch.full((count,), float(initial_deviation), dtype=torch.float64)
        )
        self.register_buffer("rating_updates", torch.tensor(0))  # duels rated so far
        self.register_buffer("final_dev_scores", torch.full((count,), float("nan"), dtype=torch.float64))
        self.last_duels: list[dict] = []  # the latest iteration's duels, answers, judges and scores
        self.preference_pairs: list[dict] = []  # the latest iteration's DPO pairs (every model's)
        self.recent_changes: list[list[float]] = [[] for _ in range(count)]
        self.rating_history: list[list[float]] = []  # the ratings after each iteration
        self.trained_before = False  # an earlier iteration had pairs to train on

    def on_fit_start(self) -> None:
        if self.uses_dev_table:
            return super().on_fit_start()
        # no dev table: the only dev calls are the duels and the final dev scores, as in MoCo
        self.calibrated.fill_(True)
        self.dev_table = DevTable(self.collaborator_names, [])
        self.dev_labels = self.prepare_training(self.dev_table)
        even_out_training_batches(self)

    def models_to_train(self):
        # scripted collaborators (no weights) still duel and judge; only real models learn
        return {f"agent{i}": c for i, c in enumerate(self.collaborators) if c.model is not None}

    # -- one iteration of combat ----------------------------------------------------------------

    def draw_duels(
        self, iteration: int, examples: list[Example]
    ) -> tuple[list[Example], list[tuple[int, int]]]:
        """The iteration's duels: the instruction of each and its (player, opponent)."""
        chosen = self.choose_instructions(iteration, examples)
        return chosen, self.match(iteration, len(chosen))

    def choose_instructions(self, iteration: int, examples: list[Example]) -> list[Example]:
        """The instructions duelled on this iteration (SPARTA: the first ``num_instructions``)."""
        return examples[: self.num_instructions]

    def match(self, iteration: int, count: int) -> list[tuple[int, int]]:
        """(player, opponent) for each of ``count`` instructions, in instruction order."""
        hp = self.hparams
        rng = random.Random(self.seed_of("sparta-match", iteration))
        models = list(range(len(self.collaborators)))
        by_rating = hp.opponents_by_rating == "always" or not self.trained_before

        def opponent(player: int) -> int:
            others = [m for m in models if m != player]
            if not by_rating or rng.random() < hp.random_match_prob:
                return rng.choice(others)
            # stable: equally close models keep collaborator order
            nearest = sorted(others, key=lambda m: abs(float(self.ratings[m] - self.ratings[player])))
            return rng.choice(nearest[: min(hp.num_opponents, len(nearest))])

        # whole rounds give every model one instruction to open, in a shuffled order; the
        # instructions left over get a player drawn at random (draws in MoCo's order)
        pairs = []
        for _ in range(count // len(models)):
            pairs += [(player, opponent(player)) for player in rng.sample(models, len(models))]
        for _ in range(count % len(models)):
            player = rng.choice(models)
            pairs.append((player, opponent(player)))
        return pairs

    def answer(self, iteration: int, examples: list[Example], pairs: list[tuple[int, int]]) -> dict:
        """Each model answers all its duels in one call: ``{(duel, side): text}``."""
        answers: dict[tuple[int, int], str] = {}
        for model in range(len(self.collaborators)):
            mine = [(i, side) for i, pair in enumerate(pairs) for side in (0, 1) if pair[side] == model]
            if mine:
                outputs = self.ask(
                    model, [examples[i]["prompt"] for i, _ in mine],
                    repeat_keys([examples[i]["id"] for i, _ in mine]), step=f"duel{iteration}",
                )  # fmt: skip
                answers.update({key: output.text for key, output in zip(mine, outputs)})
        return answers

    @property
    def judge_decoding(self) -> DecodingConfig | None:
        """How the judges decode (None: as every other call)."""
        return None

    def judge(self, iteration: int, examples: list[Example], pairs, answers) -> list[dict[int, tuple]]:
        """Every model outside a duel scores both answers ``judge_rounds`` times: per duel,
        ``{judge: (score A, score B)}`` in the order the judges were first needed."""
        count = len(self.collaborators)
        panels = [[m for m in range(count) if m not in pair] for pair in pairs]
        judges = list(dict.fromkeys(j for panel in panels for j in panel))
        judged: list[dict[int, tuple]] = [{} for _ in pairs]
        for judge in judges:
            duels = [i for i, panel in enumerate(panels) if judge in panel]
            prompts = [
                SCORE_JUDGE_PROMPT.format(instruction=question_of(examples[i]), response=answers[(i, side)])
                for i in duels
                for side in (0, 1)
            ]
            ids = [examples[i]["id"] for i in duels for _ in (0, 1)]
            rounds: list[list] = [[] for _ in duels]
            for r in range(self.hparams.judge_rounds):
                asked = self.ask(
                    judge, prompts, ids, step=f"judge{iteration}.{r}", decoding=self.judge_decoding
                )
                replies = [o.text for o in asked]
                for n in range(len(duels)):
                    rounds[n].append(judge_round_scores(replies[2 * n], replies[2 * n + 1]))
            for n, i in enumerate(duels):
                judged[i][judge] = average_rounds(rounds[n])
        return judged

    def rate(self, iteration: int, pairs, judged) -> RatingTable:
        """Rate the duels in order (MoCo's update, ``ratings.RatingTable``); return the new table."""
        hp = self.hparams
        table = RatingTable(
            self.ratings.tolist(), self.deviations.tolist(), [list(c) for c in self.recent_changes]
        )
        if not hp.freeze_ratings:
            weights = player_weights(hp.score_type, self.rating_history, iteration)
            # K decays with the iteration's duels (SPARTA) or with every duel so far (Stackelberg)
            done = int(self.rating_updates) if self.k_decays_across_iterations else 0
            for n, ((a, b), scores) in enumerate(zip(pairs, judged), start=done + 1):
                k = k_step(hp.initial_k, hp.min_k, hp.decay_rate, hp.decay_steps, n)
                table.update(a, b, scores, k, hp.scaling_factor, hp.epsilon, hp.window_size,
                             hp.min_deviation, weights)  # fmt: skip
                self.rating_updates += 1
        self.ratings.copy_(torch.tensor(table.ratings, dtype=torch.float64))
        self.deviations.copy_(torch.tensor(table.deviations, dtype=torch.float64))
        self.recent_changes = table.recent_changes
        self.rating_history.append(list(table.ratings))
        return table

    def build_iteration(self, iteration: int) -> dict[str, list[dict]]:
        examples, pairs = self.draw_duels(iteration, self.dev_examples())
        answers = self.answer(iteration, examples, pairs)
        judged = self.judge(iteration, examples, pairs, answers)
        self._example_cost.clear()  # fit-time calls are not part of any test record's cost
        table = self.rate(iteration, pairs, judged)
        names = self.collaborator_names
        self.last_duels, self.preference_pairs = [], []
        for i, ((a, b), example) in enumerate(zip(pairs, examples)):
            # the pair's verdict uses the ratings after the whole iteration, as MoCo's does
            score_a, score_b, _ = table.weighted_scores(judged[i])
            duel = {"id": example["id"], "players": [a, b], "answers": [answers[(i, 0)], answers[(i, 1)]]}
            duel["judges"] = {names[j]: list(s) for j, s in judged[i].items()}
            duel["scores"] = [score_a, score_b]
            duel["outcome_a"] = score_a / (score_a + score_b)  # 1/2: a tie
            self.last_duels.append(duel)
            if score_a != score_b:  # a tie teaches nothing
                win = 0 if score_a > score_b else 1
                self.preference_pairs.append({
                    "id": example["id"], "prompt": example["prompt"],
                    "chosen": duel["answers"][win], "rejected": duel["answers"][1 - win],
                    "chosen_by": names[duel["players"][win]], "rejected_by": names[duel["players"][1 - win]],
                    "score_diff": abs(score_a - score_b),
                })  # fmt: skip
        log.info("%s ratings after iteration %d: %s (%d pairs)", self.method_name, iteration,
                 {n: round(r, 3) for n, r in zip(names, table.ratings)}, len(self.preference_pairs))  # fmt: skip
        items = self.training_items(self.preference_pairs)
        self.trained_before = self.trained_before or bool(self.preference_pairs)
        return items

    def training_items(self, pairs: list[dict]) -> dict[str, list[dict]]:
        """Every trained model learns from every pair; with ``dpo_reference: previous`` each item
        keeps the model's own log-probabilities of both answers now, before this iteration trains."""
        items: dict[str, list[dict]] = {}
        for key in self.agents.agents:
            reference = [None] * len(pairs)
            if self.hparams.dpo_reference == "previous" and pairs:
                reference = self._reference_logps(key, pairs)
            for pair, logps in zip(pairs, reference):
                item = {
                    "agent": key,
                    "prompt": pair["prompt"],
                    "chosen": pair["chosen"],
                    "rejected": pair["rejected"],
                }
                if logps is not None:
                    item["reference_logps"] = logps
                items.setdefault(pair["id"], []).append(item)
        return items

    def _reference_logps(self, key: str, pairs: list[dict]) -> list[list[float]]:
        size = self.generation_batch
        found: list[list[float]] = []
        for start in range(0, len(pairs), size):
            batch = pairs[start : start + size]
            prompts = [p["prompt"] for p in batch] * 2
            logps = self.agent_completion_logps(
                key, prompts, [p["chosen"] for p in batch] + [p["rejected"] for p in batch]
            )
            found += [[float(logps[n]), float(logps[n + len(batch)])] for n in range(len(batch))]
        return found

    def items_loss(self, items: list[dict]) -> torch.Tensor:
        losses = []
        for key in sorted({item["agent"] for item in items}):
            own = [item for item in items if item["agent"] == key]
            model = self.agents.activate(self.agents.agents[key])
            tokens = self._tokens(self.agents.agents[key], [x["prompt"] for x in own] * 2,
                                  [x["chosen"] for x in own] + [x["rejected"] for x in own])  # fmt: skip
            policy = completion_logps(model, tokens)
            if all("reference_logps" in x for x in own):
                reference = torch.tensor([x["reference_logps"] for x in own], device=policy.device).T.reshape(
                    -1
                )
            else:
                reference = reference_logps(model, tokens)  # the adapter disabled: the base model
            n = len(own)
            losses.append(
                dpo_loss(
                    policy[:n], policy[n:], reference[:n].to(policy), reference[n:].to(policy), self.beta
                )
            )
        return torch.stack(losses).mean()

    # -- after training: the dev-best collaborator is tested ------------------------------------

    def finish_training(self) -> None:
        scores = self.score_on_dev(range(len(self.collaborators)), step="final-dev")
        self.final_dev_scores.copy_(torch.tensor(scores, dtype=torch.float64))
        self.dev_scores.copy_(self.final_dev_scores)  # the models as trained are the ones tested

    @property
    def tested_model(self) -> int:
        return int(torch.nan_to_num(self.final_dev_scores, nan=-1.0).argmax())

    def collaborate(self, batch: Batch) -> list[Answer]:
        model = self.tested_model
        outputs = self.ask(model, batch.prompts, batch.ids)
        names = self.collaborator_names
        ratings = {n: round(float(r), 3) for n, r in zip(names, self.ratings)}
        return [Answer(o.text, by=names[model], details={"ratings": ratings}) for o in outputs]

    def extra_epoch_metrics(self) -> dict[str, float]:
        return {f"rating/{n}": float(r) for n, r in zip(self.collaborator_names, self.ratings)}
