"""Logit fusion: decode from the (weighted) average of all collaborators' next-token logits.

At every step each collaborator reads the shared prefix (its own KV cache), the next-token logits
are averaged (or summed with ``weights``) in the shared id space and one token is chosen from the
mix by seeded sampling (MoCo's: temperature 0.7, no top-p) or greedily. Needs one vocabulary
across collaborators: a clear error otherwise. MoCo: ``logit_fusion`` (logit arithmetic, cf. model ensembling / "product of experts").
"""

from __future__ import annotations

from moco_lit.decoding import FuseRule, average, check_same_vocabulary, weighted_sum
from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule


class LogitFusion(CollaborationModule):
    """Args:
    weights: one weight per collaborator for a weighted sum of logits; None averages them.
    temperature, top_p: MoCo samples every token from softmax(fused logits / temperature) with no
        nucleus cut (its run-wide temperature, 0.7 by default); ``temperature: 0`` decodes greedily.
    """

    method_name = "logit_fusion"
    level = "logit"
    min_collaborators = 2

    def __init__(
        self,
        collaborators: list[str | dict],
        weights: list[float] | None = None,
        temperature: float = 0.7,
        top_p: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, temperature=temperature, top_p=top_p, **kwargs)
        if weights is not None and len(weights) != len(collaborators):
            raise UserError(
                f"logit_fusion.weights has {len(weights)} entries for {len(collaborators)} collaborators"
            )
        self.weights = weights

    def setup(self, stage: str) -> None:
        super().setup(stage)
        check_same_vocabulary(self.collaborators, self.method_name)

    def fusion_rule(self) -> FuseRule:
        return average() if self.weights is None else weighted_sum(self.weights)

    def collaborate(self, batch: Batch) -> list[Answer]:
        models = list(range(len(self.collaborators)))
        outputs = self.ask_joint(models, batch.prompts, batch.ids, self.fusion_rule(), step="fusion")
        return [
            Answer(output.text, by=self.collaborator_names, details={"new_tokens": output.new_tokens})
            for output in outputs
        ]
