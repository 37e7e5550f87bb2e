"""Logit contrastive decoding: amplify what the best models know and the worst ones do not.

Collaborators are ranked by their dev score (calibration in ``fit``). At every step the logits
are ``best + lambda_ * (sum of the top-k models' logits - sum of the bottom-k models' logits)``,
one KV cache per model, one shared vocabulary (a clear error otherwise). MoCo:
``logit_contrastive`` (after contrastive decoding, Li et al. 2023, "Contrastive Decoding").
"""

from __future__ import annotations

from moco_lit.decoding import check_same_vocabulary, contrast
from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule


class LogitContrastive(CollaborationModule):
    """Args:
    k: how many top and how many bottom models (by dev score) take part.
    lambda_: weight of the top-minus-bottom offset added to the best model's logits.
    temperature, top_p: MoCo samples every token from softmax(contrasted logits / temperature)
        with no nucleus cut (its run-wide temperature, 0.7 by default); ``temperature: 0`` decodes
        greedily.
    """

    method_name = "logit_contrastive"
    level = "logit"
    min_collaborators = 2
    needs_calibration = True

    def __init__(
        self,
        collaborators: list[str | dict],
        k: int = 1,
        lambda_: float = 0.2,
        temperature: float = 0.7,
        top_p: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, temperature=temperature, top_p=top_p, **kwargs)
        if k < 1 or 2 * k > len(collaborators):
            raise UserError(
                f"logit_contrastive.k={k} needs 2*k distinct collaborators (top and bottom); "
                f"there are {len(collaborators)}"
            )
        self.k = k
        self.lambda_ = lambda_

    def setup(self, stage: str) -> None:
        super().setup(stage)
        check_same_vocabulary(self.collaborators, self.method_name)

    def contrast_models(self) -> tuple[list[int], list[int]]:
        """(top-k, bottom-k) collaborator indices from the dev ranking."""
        ranking = self.dev_ranking()
        return ranking[: self.k], ranking[-self.k :]

    def collaborate(self, batch: Batch) -> list[Answer]:
        top, bottom = self.contrast_models()
        rule = contrast(range(self.k), range(self.k, 2 * self.k), self.lambda_)
        outputs = self.ask_joint(top + bottom, batch.prompts, batch.ids, rule, step="contrastive")
        names = self.collaborator_names
        details = {"top": [names[m] for m in top], "bottom": [names[m] for m in bottom]}
        return [Answer(output.text, by=[names[m] for m in top], details=details) for output in outputs]
