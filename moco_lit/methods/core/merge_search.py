"""``MergeSearch``: the shared mechanics of the weight-level methods (one merged model).

The collaborators stay resident; one extra *working* model (a copy of the first collaborator,
built once) receives every candidate merge in place, and answers as one more collaborator through
``self.ask``. A search runs under ``fit`` with manual optimisation: the dev split is the training
data, each epoch collects the rank's dev batches and, at its end, runs one search iteration —
score the collaborators alone if the method needs that (first epoch), then merge and score each
candidate the optimiser proposes (scores are torchmetrics states reduced across ranks, so every
rank takes the same decision). The search state is a plain dict in the checkpoint, so a search
resumed with ``--ckpt_path`` reaches the same result. ``test`` merges the best candidate (searching
first if nothing was searched); ``predict`` can also export it with ``save_pretrained``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from moco_lit.collaborators import Collaborator, Prompt, load_collaborator
from moco_lit.errors import UserError
from moco_lit.evaluation import ScoreMetric, Scorer
from moco_lit.merging import (
    MergeRule,
    Weights,
    adapter_weights,
    check_compatible,
    is_lora,
    lora_full_weights,
    merge_rule,
    model_weights,
    writable_tensors,
)
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule, Example

log = logging.getLogger(__name__)

Recipe = dict[str, Any]
"""A candidate merge, JSON-able: ``{"op": <merge rule>, "weights": [...], <the rule's parameters>}``
(``op`` names a rule of ``moco_lit.merging.MERGE_RULES``; other keys are the search's own notes)."""

MAX_INLINE_ITERATIONS = 1000


class MergeSearch(CollaborationModule):
    """Base of the weight-level methods. Subclasses write ``propose``/``tell``/``final_recipe``.

    Args:
        export_dir: with ``predict``, save the merged model there (``save_pretrained``; PEFT's
            adapter format when the merge is over LoRA adapters) with its tokenizer and recipe.
    """

    level = "weight"
    min_collaborators = 1
    dev_examples: ClassVar[int | None] = None
    """Search on only the first ``dev_examples`` dev examples (None: all of the served dev split)."""

    def __init__(self, collaborators: list[str | dict], export_dir: str | None = None, **kwargs) -> None:
        super().__init__(collaborators, **kwargs)
        self.automatic_optimization = False
        self.export_dir = export_dir
        self.keep_out_of_checkpoint("export_dir")
        self.candidate_score = ScoreMetric()
        self.merged_index: int | None = None
        self.sources: list[Weights] = []
        self.target: dict[str, torch.Tensor] = {}
        self.iteration = 0
        self.finished = False
        self.best: dict[str, Any] = {"recipe": None, "score": -math.inf}
        self.history: list[dict[str, Any]] = []  # every evaluated candidate: iteration, recipe, score
        self._applied: str | None = None
        self._base_fingerprint = ""
        self._dev_batches: list[list[Example]] = []
        self.rule: MergeRule = merge_rule("linear")
        self.rule_args: dict[str, Any] = {}
        self.base_model_name: str | None = None
        self.base: Weights | None = None

    def choose_rule(
        self, name: str, args: dict[str, Any] | None = None, base_model_name: str | None = None
    ) -> None:
        """Merge every candidate with the registered rule ``name`` and its parameters ``args``;
        rules on task vectors take them against ``base_model_name``."""
        self.rule = merge_rule(name)
        self.rule_args = dict(args or {})
        self.rule.check_params(self.rule_args)
        self.base_model_name = base_model_name

    def rule_recipe(self, weights: list[float]) -> Recipe:
        """The recipe merging the collaborators with ``weights`` by the chosen rule."""
        recipe: Recipe = {"op": self.rule.name, "weights": weights, **self.rule_args}
        if "seed" in self.rule.params and "seed" not in recipe:
            recipe["seed"] = self.hparams.seed
        return recipe

    # -- what a method writes -----------------------------------------------------------------

    def merge_space(self) -> Literal["full", "adapters"]:
        """Merge full weights (LoRA collaborators seen as W + B·A) or only the adapters' tensors."""
        return "full"

    def needs_dev_scores(self) -> bool:
        return False

    def start_search(self) -> None:
        """Build the optimiser (after dev scores, when the method needs them)."""

    def propose(self) -> list[Recipe]:
        """The candidates of this iteration (empty: nothing more to try)."""
        return []

    def tell(self, recipes: list[Recipe], scores: list[float]) -> None:
        """Record the candidates' dev scores; set ``self.finished`` when the search is over."""

    def final_recipe(self) -> Recipe:
        """The merge that is tested (default: the best candidate seen)."""
        if self.best["recipe"] is None:
            raise RuntimeError(f"{self.method_name} has no merge yet: run its search first")
        return self.best["recipe"]

    def prompt_of(self, example: Example) -> Prompt:
        """What every model is shown for ``example``, on dev and on test."""
        return example["prompt"]

    def write_merge(self, recipe: Recipe) -> None:
        """Write ``recipe``'s merge into the working model with the merge rule it names."""
        rule = merge_rule(recipe["op"])
        params = {key: value for key, value in recipe.items() if key in rule.params}
        rule.apply(self.target, self.sources, recipe["weights"], self.base, **params)

    def search_state(self) -> dict[str, Any]:
        """The optimiser's state (plain data)."""
        return {}

    def load_search_state(self, state: dict[str, Any]) -> None:
        pass

    # -- the working model --------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self._trainer is not None:
            # validation would score the previous best on dev before this epoch's iteration
            self.trainer.limit_val_batches = 0
        if self.merged_index is None:
            self._build_working_model()
        if self.base is None and self.rule.needs_base:
            self.base = self.load_base(self.base_model_name)

    def load_base(self, name: str | None) -> Weights:
        """The model task vectors are taken against: ``name``, or the base of LoRA collaborators."""
        if name is None:
            first = self.collaborators[0].model
            if not is_lora(first):
                raise UserError(
                    f"{self.method_name} needs base_model_name (the model the collaborators were "
                    "fine-tuned from), or LoRA collaborators on one base"
                )
            return lora_full_weights(first, "base of the LoRA collaborators", with_delta=False)
        model = load_collaborator(name, self.collaborators[0].device).model
        if is_lora(model):
            return lora_full_weights(model, name)
        return model_weights(model, name)

    def _build_working_model(self) -> None:
        scripted = [c.name for c in self.collaborators if c.model is None]
        if scripted:
            raise UserError(f"{self.method_name} merges weights; {scripted[0]!r} has no weights to merge")
        space = self.merge_space()
        first = self.collaborators[0]
        model = copy.deepcopy(first.model)
        if space == "full" and is_lora(model):
            model = model.merge_and_unload()
        model.eval()
        self.sources = [self.view(c, space) for c in self.collaborators]
        self.target = writable_tensors(model, adapters_only=space == "adapters")
        check_compatible(self.target, self.sources)
        self._base_fingerprint = hashlib.sha256(
            "|".join([self.method_name, space, *(c.fingerprint for c in self.collaborators)]).encode()
        ).hexdigest()[:24]
        merged = Collaborator(
            name=f"{self.method_name}-merge",
            spec=first.spec,
            tokenizer=first.tokenizer,
            model=model,
            fingerprint=self._base_fingerprint,
        )
        self.collaborators.append(merged)
        self.merged_index = len(self.collaborators) - 1

    @staticmethod
    def view(collaborator: Collaborator, space: str) -> Weights:
        if space == "adapters":
            return adapter_weights(collaborator.model, collaborator.name)
        if is_lora(collaborator.model):
            return lora_full_weights(collaborator.model, collaborator.name)
        return model_weights(collaborator.model, collaborator.name)

    @property
    def merged(self) -> Collaborator:
        return self.collaborators[self.merged_index]

    @property
    def inputs(self) -> range:
        """Indices of the recipe's collaborators (the working model comes after them)."""
        return range(len(self.collaborator_specs))

    def apply(self, recipe: Recipe) -> None:
        """Load ``recipe``'s merge into the working model, and re-key its generation cache."""
        description = json.dumps(recipe, sort_keys=True)
        if description == self._applied:
            return
        self.write_merge(recipe)
        self.merged.fingerprint = self._base_fingerprint
        self.merged.refresh_fingerprint(description)
        self._applied = description

    # -- the search under fit -----------------------------------------------------------------

    def on_train_epoch_start(self) -> None:
        self._dev_batches = []

    def training_step(self, batch: list[Example], batch_idx: int) -> None:
        if batch_idx == 0:
            # one (no-op) optimiser step per iteration: Lightning counts steps only inside
            # training_step, and ModelCheckpoint saves nothing while the count stays 0
            self.optimizers().step()
        kept = self._search_part(batch)
        if kept:
            self._dev_batches.append(kept)

    def on_train_epoch_end(self) -> None:
        if not self.finished:
            self.search_iteration(self._dev_batches)
        self._dev_batches = []
        self.log("search/best_dev_score", _finite(self.best["score"]), rank_zero_only=True)
        self.log("search/iteration", float(self.iteration), rank_zero_only=True)
        if self.finished:
            self.trainer.should_stop = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.ddp_anchor], lr=0.0)

    def on_fit_end(self) -> None:
        if self.best["recipe"] is not None or self.finished:
            self.apply(self.final_recipe())

    def _search_part(self, batch: list[Example]) -> list[Example]:
        if self.dev_examples is None:
            return batch
        allowed = {e["id"] for e in self.trainer.datamodule.examples("dev")[: self.dev_examples]}
        return [example for example in batch if example["id"] in allowed]

    def search_iteration(self, batches: list[list[Example]]) -> None:
        """One iteration: dev scores first if needed, then score what the optimiser proposes."""
        if self.needs_dev_scores() and not bool(self.calibrated):
            self.dev_scores.copy_(torch.tensor([self.dev_score(m, batches) for m in self.inputs]))
            self.calibrated.fill_(True)
            table = ", ".join(
                f"{self.collaborator_names[m]}={float(self.dev_scores[m]):.3f}" for m in self.inputs
            )
            self.note(f"{self.method_name}: dev scores {table}")
        if self.iteration == 0:
            self.start_search()
        recipes = [] if self.finished else self.propose()
        scores = []
        for recipe in recipes:
            self.apply(recipe)
            scores.append(self.dev_score(self.merged_index, batches))
        for recipe, score in zip(recipes, scores):
            self.history.append({"iteration": self.iteration, "recipe": recipe, "score": score})
            if score > self.best["score"]:
                self.best = {"recipe": recipe, "score": score}
        self.tell(recipes, scores)
        if not recipes:
            self.finished = True
        self.iteration += 1
        self._example_cost.clear()
        if recipes:
            self.note(
                f"{self.method_name} iteration {self.iteration}: dev scores {[round(s, 4) for s in scores]}"
            )

    def dev_score(self, model: int, batches: list[list[Example]]) -> float:
        """Mean dev score of collaborator ``model`` over all ranks' batches."""
        for batch in batches:
            outputs = self.ask(
                model, [self.prompt_of(e) for e in batch], [e["id"] for e in batch], step="dev"
            )
            self.candidate_score.update(self.score([o.text for o in outputs], batch))
        value = float(self.candidate_score.compute())
        self.candidate_score.reset()
        return value if not math.isnan(value) else 0.0

    def ensure_searched(self) -> None:
        """Before test/predict: search on dev now if no search ever ran (say so), then merge."""
        if self.iteration == 0 and not self.finished:
            self.note(f"{self.method_name}: no search yet; searching on the dev split first")
            self._ensure_scorer()
            batches = [
                kept for b in self.trainer.datamodule.train_dataloader() if (kept := self._search_part(b))
            ]
            while not self.finished and self.iteration < MAX_INLINE_ITERATIONS:
                self.search_iteration(batches)
        self.apply(self.final_recipe())

    def _ensure_scorer(self) -> None:
        """``predict`` sets up no scorer; a search run from ``predict`` needs one for dev."""
        if self.scorer is None:
            task_type = self.trainer.datamodule.task_type
            self.check_task_type(task_type)
            self.scorer = Scorer.for_task(
                task_type,
                reward_model=self.hparams.reward_model,
                verifier=self.hparams.verifier,
                encoder=self.hparams.encoder,
                device=self.collaborators[0].device,
            )

    # -- checkpoint ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["merge_search"] = {
            "iteration": self.iteration,
            "finished": self.finished,
            "best": copy.deepcopy(self.best),
            "history": copy.deepcopy(self.history),
            "optimizer": self.search_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("merge_search")
        if state is None:
            return
        self.iteration = int(state["iteration"])
        self.finished = bool(state["finished"])
        self.best = copy.deepcopy(state["best"])
        self.history = copy.deepcopy(state["history"])
        if state["optimizer"]:
            self.load_search_state(state["optimizer"])
        self._applied = None

    # -- evaluation with the merged model -----------------------------------------------------

    def on_test_start(self) -> None:
        self.ensure_searched()

    def on_validation_start(self) -> None:
        if not self.trainer.sanity_checking and self.trainer.state.fn != "fit":
            self.ensure_searched()

    def on_predict_start(self) -> None:
        self.ensure_searched()
        if self.export_dir and self.global_rank == 0:
            self.export(self.export_dir)

    def collaborate(self, batch: Batch) -> list[Answer]:
        outputs = self.ask(self.merged_index, [self.prompt_of(example) for example in batch], batch.ids)
        merge = self.describe(self.final_recipe())
        return [Answer(o.text, by=self.merged.name, details={"merge": merge}) for o in outputs]

    def describe(self, recipe: Recipe) -> dict[str, Any]:
        """The recipe with collaborator names instead of positions (for records and exports)."""
        names = [self.collaborator_names[m] for m in self.inputs]
        out = dict(recipe)
        if "weights" in out and len(out["weights"]) == len(names):
            out["weights"] = {n: round(float(w), 6) for n, w in zip(names, out["weights"])}
        return out

    def export(self, folder: str) -> Path:
        """Save the merged model (or adapter) with its tokenizer and a ``merge.json`` recipe."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        self.merged.model.save_pretrained(path)
        self.merged.tokenizer.save_pretrained(path)
        (path / "merge.json").write_text(
            json.dumps(
                {
                    "method": self.method_name,
                    "recipe": self.final_recipe(),
                    "named": self.describe(self.final_recipe()),
                },
                indent=2,
            )
        )
        self.note(f"{self.method_name}: merged model saved to {path}")
        return path

    def extra_epoch_metrics(self) -> dict[str, float]:
        return {"search_dev_score": _finite(self.best["score"])}


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else math.nan
