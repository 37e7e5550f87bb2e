"""Distillation: a collaboration's outputs on dev become SFT targets for each collaborator.

The teacher is any finished run of any method on dev (``python -m moco_lit validate ...``): its
``predictions.jsonl`` gives one output per dev question. Every collaborator (the students) is
LoRA-tuned on question -> teacher output. With ``rounds`` above 1 the loop self-improves: each
later round the tuned students answer dev again and an answer that agrees with the teacher's
replaces the teacher's text as that student's target. The dev-best student answers at test.
MoCo lists it as the way back from a collaboration to one model (knowledge distillation, Hinton
et al. 2015; self-improvement as in STaR, Zelikman et al. 2022).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from moco_lit.errors import UserError
from moco_lit.methods.core.agent_trained import AgentTrainedModule
from moco_lit.methods.core.module import Answer, Batch, Example

log = logging.getLogger(__name__)


def read_teacher_outputs(teacher_run: str) -> dict[str, str]:
    """``id -> output`` from a run folder's ``predictions.jsonl`` (or that file itself)."""
    path = Path(teacher_run)
    path = path / "predictions.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise UserError(
            f"distillation.teacher_run {teacher_run!r}: no predictions.jsonl there; give the folder of "
            "a finished `python -m moco_lit validate` run (or its predictions.jsonl)"
        )
    outputs = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
                outputs[str(record["id"])] = str(record["output"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise UserError(
                    f"{path}:{number}: expected a JSON record with id and output ({err})"
                ) from err
    return outputs


class Distillation(AgentTrainedModule):
    """Args:
    teacher_run: run folder (or predictions.jsonl) of the teacher system on the dev split.
    rounds: distillation rounds; later rounds re-generate with the students (self-improvement).
    epochs_per_iteration: SFT epochs per round.
    multi_model: ``shared_base`` / ``one_by_one`` / ``auto`` (see ``agent_trained.LoraAgents``).
    """

    method_name = "distillation"
    level = "baseline"

    def __init__(
        self, collaborators: list[str | dict], teacher_run: str = "", rounds: int = 1, **kwargs
    ) -> None:
        super().__init__(collaborators, num_iterations=rounds, **kwargs)
        if not teacher_run:
            raise UserError(
                "distillation.teacher_run is required: the run folder of the teacher's validate run"
            )
        self.teacher_run = teacher_run
        self.teacher: dict[str, str] = {}
        count = len(collaborators)
        self.register_buffer("student_dev_scores", torch.full((count,), float("nan"), dtype=torch.float64))
        self.register_buffer("teacher_logp_before", torch.full((count,), float("nan"), dtype=torch.float64))
        self.register_buffer("teacher_logp_after", torch.full((count,), float("nan"), dtype=torch.float64))

    def teacher_targets(self) -> tuple[list[Example], list[str]]:
        """The dev questions the teacher answered, and its outputs."""
        if not self.teacher:
            self.teacher = read_teacher_outputs(self.teacher_run)
        examples = [e for e in self.dev_examples() if e["id"] in self.teacher]
        if not examples:
            raise UserError(
                f"distillation.teacher_run {self.teacher_run!r} answers none of this benchmark's dev "
                "questions; run the teacher with `validate` on the same benchmark"
            )
        return examples, [self.teacher[e["id"]] for e in examples]

    def teacher_logps(self) -> torch.Tensor:
        """Each student's mean summed log-likelihood of the teacher's outputs."""
        examples, targets = self.teacher_targets()
        prompts = [e["prompt"] for e in examples]
        keys = list(self.agents.agents)
        return torch.tensor([float(self.agent_completion_logps(k, prompts, targets).mean()) for k in keys])

    def build_iteration(self, iteration: int) -> dict[str, list[dict]]:
        examples, targets = self.teacher_targets()
        if iteration == 0:
            self.teacher_logp_before.copy_(self.teacher_logps().to(self.teacher_logp_before))
        per_student = [targets] * len(self.collaborators)
        if iteration > 0:  # self-improvement: a student's own answer that agrees with the teacher
            ids = [e["id"] for e in examples]
            outputs = self.ask_all([e["prompt"] for e in examples], ids, step=f"round{iteration}")
            per_student = [
                [
                    own.text if self.answer_of(own.text, e) == self.answer_of(target, e) else target
                    for own, e, target in zip(outputs[m], examples, targets)
                ]
                for m in range(len(self.collaborators))
            ]
            self._example_cost.clear()
        return {
            e["id"]: [
                {"agent": f"agent{m}", "prompt": e["prompt"], "completion": per_student[m][i]}
                for m in range(len(self.collaborators))
            ]
            for i, e in enumerate(examples)
        }

    def items_loss(self, items: list[dict]) -> torch.Tensor:
        losses = [
            self.agent_sft_loss(key, [x["prompt"] for x in own], [x["completion"] for x in own])
            for key in sorted({item["agent"] for item in items})
            for own in [[item for item in items if item["agent"] == key]]
        ]
        return torch.stack(losses).mean()

    def finish_training(self) -> None:
        self.teacher_logp_after.copy_(self.teacher_logps().to(self.teacher_logp_after))
        scores = self.score_on_dev(range(len(self.collaborators)), step="student-dev")
        self.student_dev_scores.copy_(torch.tensor(scores, dtype=torch.float64))
        log.info(
            "distillation: teacher log-likelihood per student %s -> %s; student dev scores %s",
            self.teacher_logp_before.tolist(),
            self.teacher_logp_after.tolist(),
            scores,
        )

    @property
    def best_student(self) -> int:
        scores = torch.nan_to_num(self.student_dev_scores, nan=-1.0)
        return int(scores.argmax())

    def collaborate(self, batch: Batch) -> list[Answer]:
        student = self.best_student
        outputs = self.ask(student, batch.prompts, batch.ids)
        name = self.collaborator_names[student]
        return [Answer(o.text, by=name, details={"student": name}) for o in outputs]

    def extra_epoch_metrics(self) -> dict[str, float]:
        return {
            "teacher_logp_before": float(self.teacher_logp_before.nanmean()),
            "teacher_logp_after": float(self.teacher_logp_after.nanmean()),
        }
