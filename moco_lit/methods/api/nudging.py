"""Nudging: a base model decodes and a nudging model writes the words the base is unsure of.

At each step the base model's top-1 next-token probability is checked: at or above ``gamma`` the
base writes the token; below, the nudging model takes over and writes until it has finished a
word and the base is confident again (it also writes the first token). Models hand over text, not
ids, so they may come from different families. ``search_gamma`` / ``search_nudging`` pick gamma and
the nudging model on dev. Fei et al. 2024, "Nudging: Inference-time Alignment via Model
Collaboration"; MoCo: ``nudging``.
"""

from __future__ import annotations

import logging

import torch

from moco_lit.errors import UserError
from moco_lit.methods.api.nudging_rules import ThresholdSwitch
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule, ScoreSums

log = logging.getLogger(__name__)

GAMMA_GRID = (0.2, 0.3, 0.4, 0.5)
WORD_BREAKS = ("space", "whitespace")
SEARCH_TIES = ("moco", "configured")


class Nudging(CollaborationModule):
    """Args:
    gamma: the base model hands over when its top-1 probability is below this.
    base_model_id: index of the base model.
    nudging_model_id: index of the nudging model.
    search_gamma: choose gamma from 0.2, 0.3, 0.4, 0.5 by dev score.
    search_nudging: choose the nudging model among all other collaborators by dev score.
    word_break: which nudging tokens open a new word (where the base may take over again):
        ``space``, a token holding a space character (MoCo's rule); ``whitespace``, any
        whitespace, so a newline or a tab ends the nudging model's word too.
    reads_text: after each token every model, the writer too, reads the joint text re-tokenised
        (MoCo's way); false: the writer keeps its own token ids and same-vocabulary models get
        them (a token sequence the tokenizer would not produce stays as generated).
    search_ties: how the dev search picks among its (gamma, nudging model) settings, tried gamma
        by gamma in grid order: ``moco`` (MoCo's rule) keeps the first setting whose dev score is
        strictly above every earlier one and above 0, and the last setting of the grid when none
        scores above 0; ``configured`` keeps the configured setting on a tie at the best score,
        else the first best in grid order.
    top_p: MoCo's nudging samples each model's token from softmax(logits / temperature) with no
        nucleus cut, so 1.0 here (the base's top-1 probability is read at temperature 1).
    """

    method_name = "nudging"
    level = "api"
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        gamma: float = 0.4,
        base_model_id: int = 0,
        nudging_model_id: int = 1,
        search_gamma: bool = False,
        search_nudging: bool = False,
        word_break: str = "space",
        reads_text: bool = True,
        search_ties: str = "moco",
        top_p: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, top_p=top_p, **kwargs)
        count = len(collaborators)
        for name, index in (("base_model_id", base_model_id), ("nudging_model_id", nudging_model_id)):
            if not 0 <= index < count:
                raise UserError(f"nudging.{name}={index} but there are {count} collaborators")
        if base_model_id == nudging_model_id:
            raise UserError(f"nudging.base_model_id and nudging_model_id are both {base_model_id}")
        if word_break not in WORD_BREAKS:
            raise UserError(f"nudging.word_break={word_break!r}; expected one of {', '.join(WORD_BREAKS)}")
        if search_ties not in SEARCH_TIES:
            raise UserError(f"nudging.search_ties={search_ties!r}; expected one of {', '.join(SEARCH_TIES)}")
        self.word_break = word_break
        self.search_ties = search_ties
        self.reads_text = reads_text
        self.base_model_id = base_model_id
        self.needs_calibration = search_gamma or search_nudging
        gammas = GAMMA_GRID if search_gamma else (gamma,)
        nudgers = [m for m in range(count) if m != base_model_id] if search_nudging else [nudging_model_id]
        self.candidates = [(g, m) for g in gammas for m in nudgers]
        if search_ties == "configured":  # the configured setting first, so it wins ties on dev
            self.candidates.sort(key=lambda c: c != (gamma, nudging_model_id))
        self.search_scores: list[float] = []
        self.candidate_sums = ScoreSums(len(self.candidates))
        self.register_buffer("gamma", torch.tensor(float(gamma), dtype=torch.float64))
        self.register_buffer("nudging_model", torch.tensor(nudging_model_id))

    def nudge(self, batch: list[dict], gamma: float, nudger: int, step: str) -> list[Answer]:
        examples = Batch.of(batch)
        ids, prompts = examples.ids, examples.prompts
        rule = ThresholdSwitch(
            gamma, base=0, helper=1, word_break=self.word_break, reads_text=self.reads_text
        )
        outputs = self.ask_joint([self.base_model_id, nudger], prompts, ids, rule, step=step)
        names = [self.collaborator_names[self.base_model_id], self.collaborator_names[nudger]]
        answers = []
        for output in outputs:
            details = {
                "gamma": gamma,
                "nudging_model": names[1],
                "helper_tokens": output.details.get("helper_tokens"),
                "handovers": output.details.get("handovers"),
                "segments": [[names[m], text] for m, text in output.details.get("segments", [])],
            }
            answers.append(Answer(output.text, by=names, details=details))
        return answers

    def collaborate(self, batch: Batch) -> list[Answer]:
        return self.nudge(batch, float(self.gamma), int(self.nudging_model), step="nudging")

    # -- dev search over (gamma, nudging model) --

    def calibration_step(self, batch: list[dict]) -> None:
        for index, (gamma, nudger) in enumerate(self.candidates):
            answers = self.nudge(batch, gamma, nudger, step="dev")
            self.candidate_sums.update(index, self.score([a.text for a in answers], batch))

    def finish_calibration(self) -> None:
        scores = self.candidate_sums.compute().nan_to_num(-1.0).tolist()
        self.candidate_sums.reset()
        self.search_scores = scores
        if self.search_ties == "moco":
            best, best_score = len(scores) - 1, 0.0
            for index, score in enumerate(scores):
                if score > best_score:
                    best, best_score = index, score
        else:
            best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        gamma, nudger = self.candidates[best]
        self.gamma.fill_(gamma)
        self.nudging_model.fill_(nudger)
        self.calibrated.fill_(True)
        self._example_cost.clear()
        table = ", ".join(
            f"(gamma={g}, {self.collaborator_names[m]})={s:.3f}" for (g, m), s in zip(self.candidates, scores)
        )
        log.info(
            "nudging calibrated on dev: %s; chose gamma=%s, %s", table, gamma, self.collaborator_names[nudger]
        )
