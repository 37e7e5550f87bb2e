"""Single model: each collaborator answers alone — the baseline every collaboration is compared with.

Every collaborator answers every question; each gets its own score (``score/<name>``), and the
run's ``score`` is the best single model's (the number a collaboration must beat). Each record
keeps every collaborator's output and score, which is what collaborative-emergence statistics
need. With ``model`` set, only that collaborator answers.
"""

from __future__ import annotations

from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule, ScoreSums


class SingleModel(CollaborationModule):
    """Args:
    model: index of the one collaborator to run; None runs each of them (one row each).
    max_new_tokens: MoCo's single-model baseline budget, 100 (every other method's is 512).
    """

    method_name = "single_model"
    level = "baseline"

    def __init__(
        self, collaborators: list[str | dict], model: int | None = None, max_new_tokens: int = 100, **kwargs
    ) -> None:
        super().__init__(collaborators, max_new_tokens=max_new_tokens, **kwargs)
        if model is not None and not 0 <= model < len(collaborators):
            raise UserError(f"single_model.model={model} but there are {len(collaborators)} collaborators")
        self.model_index = model
        chosen = [model] if model is not None else range(len(collaborators))
        self.chosen = list(chosen)
        self.per_model = ScoreSums(len(self.chosen))

    def collaborate(self, batch: Batch) -> list[Answer]:
        outputs = {m: self.ask(m, batch.prompts, batch.ids) for m in self.chosen}
        scores = {m: self.score([o.text for o in outputs[m]], batch) for m in self.chosen}
        first = self.chosen[0]
        answers = []
        for i in range(len(batch)):
            names = [self.collaborator_names[m] for m in self.chosen]
            answers.append(
                Answer(
                    outputs[first][i].text,
                    by=self.collaborator_names[first],
                    details={
                        "outputs": {n: outputs[m][i].text for n, m in zip(names, self.chosen)},
                        "scores": {n: scores[m][i] for n, m in zip(names, self.chosen)},
                    },
                )
            )
        return answers

    def update_extra_metrics(self, records: list[dict]) -> None:
        for slot, m in enumerate(self.chosen):
            name = self.collaborator_names[m]
            self.per_model.update(slot, [r.get("details", {}).get("scores", {}).get(name) for r in records])

    def extra_epoch_metrics(self) -> dict:
        per_model = self.per_model.compute().tolist()
        self.per_model.reset()
        scores = {self.collaborator_names[m]: per_model[slot] for slot, m in enumerate(self.chosen)}
        best = max(scores, key=lambda name: (scores[name], -list(scores).index(name)))
        return {
            **{f"score/{name}": value for name, value in scores.items()},
            "score": scores[best],
            "best_single_model": best,
        }

    def per_example_scores(self, records: list[dict], metrics: dict) -> dict[str, list[float | None]]:
        by_name = {
            self.collaborator_names[m]: [
                (r.get("details") or {}).get("scores", {}).get(self.collaborator_names[m]) for r in records
            ]
            for m in self.chosen
        }
        # the run's score is its best collaborator's, so is its interval
        return {
            **{f"score/{name}": s for name, s in by_name.items()},
            "score": by_name[metrics["best_single_model"]],
        }
