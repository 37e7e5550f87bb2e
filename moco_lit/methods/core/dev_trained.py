"""``DevTrainedModule``: the base of methods trained under ``fit`` on the dev table.

Its ``fit`` first builds the dev table (:mod:`moco_lit.dev_table`: every collaborator's answer,
score and cost on every dev question) through the method's own ``ask``, so the generation cache
serves answers another method already produced, then trains on it for ``trainer.max_epochs``
epochs of dev batches (automatic optimisation, so DDP and DeepSpeed apply unchanged); ``test`` then
needs the checkpoint (``--ckpt_path``). Under DDP each rank answers its shard of the dev questions
and the shards are gathered, so every rank ends with the whole table in dev order; rank 0 writes
``dev_answers.jsonl``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.distributed as dist

from moco_lit.dev_table import DEV_ANSWERS, DevTable, question_text, rank_and_world
from moco_lit.errors import UserError
from moco_lit.methods.core.module import Answer, Batch, CollaborationModule
from moco_lit.training import LR_SCHEDULES, lr_factor


def answer_dev_questions(
    module: CollaborationModule, examples: Sequence[dict], batch_size: int
) -> list[dict[str, Any]]:
    """Rows for ``examples``: every collaborator answers each batch in one call, then it is scored."""
    names = module.collaborator_names
    rows: list[dict[str, Any]] = []
    for start in range(0, len(examples), batch_size):
        batch = Batch(examples[start : start + batch_size])
        answers = module.ask_all(batch.prompts, batch.ids, step="dev")
        scores = [module.score([output.text for output in outputs], batch) for outputs in answers]
        for i, example in enumerate(batch):
            rows.append(
                {
                    "id": example["id"],
                    "question": question_text(example["prompt"]),
                    "outputs": {name: answers[m][i].text for m, name in enumerate(names)},
                    "scores": {name: scores[m][i] for m, name in enumerate(names)},
                    "tokens": {
                        name: answers[m][i].prompt_tokens + answers[m][i].new_tokens
                        for m, name in enumerate(names)
                    },
                }
            )
    return rows


def collect_dev_table(module: CollaborationModule, write: bool = True) -> DevTable:
    """Build the whole dev table inside a running ``fit`` (every rank gets all of it).

    Call it from ``on_fit_start`` (or later): the collaborators, engine and scorer are ready then.
    """
    datamodule = module.trainer.datamodule
    examples = datamodule.examples("dev")
    rank, world = rank_and_world()
    shard = examples[rank::world]
    rows = answer_dev_questions(module, shard, datamodule.hparams.batch_size)
    if world > 1:
        gathered: list[list[dict] | None] = [None] * world
        dist.all_gather_object(gathered, rows)
        order = {example["id"]: i for i, example in enumerate(examples)}
        rows = sorted((row for part in gathered for row in part or []), key=lambda row: order[row["id"]])
    module._example_cost.clear()  # dev answers are not part of any test record's cost
    table = DevTable(module.collaborator_names, rows)
    folder = module.runtime.run_folder
    if write and folder is not None and rank == 0:
        table.write_jsonl(folder.path / DEV_ANSWERS)
    return table


def even_out_training_batches(module: CollaborationModule) -> None:
    """Under DDP, cap every rank's training batches at the smallest rank's count.

    The dev split is sharded without padding, so with a size that does not divide evenly one rank
    can get one batch more; its extra gradient all-reduce would wait forever. Dropping that batch
    loses at most ``world - 1`` examples per epoch (they stay in the dev table).
    """
    rank, world = rank_and_world()
    if world == 1:
        return
    datamodule = module.trainer.datamodule
    count, batch_size = len(datamodule.examples("dev")), datamodule.hparams.batch_size
    batches = [math.ceil(len(range(r, count, world)) / batch_size) for r in range(world)]
    if len(set(batches)) > 1:
        module.trainer.limit_train_batches = min(batches)


class DevTrainedModule(CollaborationModule):
    """A method trained under ``fit`` on the dev table; subclasses write ``prepare_training`` and
    ``training_step`` (returning a loss) and keep their trainable weights in registered submodules.

    ``fit``: ``on_fit_start`` builds the dev table (every rank gets all of it), sets the dev scores,
    calls ``prepare_training`` (which returns one label per dev question, written to
    ``dev_answers.jsonl``), then the Trainer runs the epochs. Validation during ``fit`` is skipped:
    it would score the method on its own training questions. The checkpoint holds the weights,
    the dev table and its labels; ``test`` without one stops with a clear error.

    Args:
        learning_rate, weight_decay: AdamW's.
        lr_schedule: ``cosine`` (MoCo's: linear warmup over ``warmup_steps``, then from
            ``learning_rate`` down to 0 over the fit, per optimizer step) or ``constant``.
        warmup_steps: optimizer steps of linear warmup (MoCo's 0).
    """

    needs_calibration = True

    def __init__(
        self,
        collaborators: list[str | dict],
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: Literal["cosine", "constant"] = "cosine",
        warmup_steps: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, **kwargs)
        if lr_schedule not in LR_SCHEDULES:
            raise UserError(f"lr_schedule {lr_schedule!r}: expected one of {', '.join(LR_SCHEDULES)}")
        if warmup_steps < 0:
            raise UserError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.warmup_steps = warmup_steps
        self.ddp_anchor.requires_grad_(False)  # the method's own weights are what DDP synchronises
        self.register_buffer("trained", torch.tensor(False))
        self.dev_table: DevTable | None = None
        self.dev_labels: list[int] = []

    def prepare_training(self, table: DevTable) -> list[int]:
        """Get ready to train on ``table``; return each dev question's label (a collaborator index)."""
        raise NotImplementedError

    def on_fit_start(self) -> None:
        # a resumed fit keeps its checkpoint's table: the collaborators may be trained agents now
        resumed = self.trainer.ckpt_path is not None and self.dev_table is not None
        table = self.dev_table if resumed else collect_dev_table(self, write=False)
        self.dev_scores.copy_(table.mean_scores().to(self.dev_scores))
        self.calibrated.fill_(True)
        self.dev_table = table
        self.dev_labels = self.prepare_training(table)
        folder = self.runtime.run_folder
        if folder is not None and self.global_rank == 0:
            table.write_jsonl(folder.path / DEV_ANSWERS, self.dev_labels)
        even_out_training_batches(self)

    def dev_rows(self, batch: list[dict]) -> list[int]:
        """Row numbers in the dev table of a training batch's examples."""
        index = self.dev_table.index_of()
        return [index[example["id"]] for example in batch]

    def on_train_epoch_end(self) -> None:
        self.trained.fill_(True)

    def configure_optimizers(self) -> dict:
        return self.adamw_with_schedule([p for p in self.parameters() if p.requires_grad])

    def adamw_with_schedule(self, parameters: list[torch.nn.Parameter]) -> dict:
        """AdamW on ``parameters`` with ``lr_schedule`` stepped after every optimizer step."""
        optimizer = torch.optim.AdamW(parameters, lr=self.learning_rate, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _lr_factor(self, step: int) -> float:
        if self.lr_schedule == "constant" or (step == 0 and self.warmup_steps == 0):
            return 1.0  # no horizon needed (the optimizer is built before the epochs are known)
        horizon = self.lr_horizon()
        return lr_factor(step % horizon, horizon, self.lr_schedule, self.warmup_steps)

    def lr_horizon(self) -> int:
        """Optimizer steps one cosine spans: the whole fit (MoCo decays over one training run).

        Read when the schedule is evaluated, after ``prepare_training`` may have set the epochs.
        """
        if self._trainer is None:
            return 1
        return max(1, int(min(self.trainer.estimated_stepping_batches, 2**31)))

    def on_validation_start(self) -> None:
        if self.trainer.state.fn != "fit":
            super().on_validation_start()

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn != "fit":
            super().on_validation_epoch_start()

    def validation_step(self, batch: list[dict], batch_idx: int) -> None:
        if self.trainer.state.fn != "fit":
            super().validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.state.fn != "fit":
            super().on_validation_epoch_end()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.dev_table is not None:
            checkpoint["dev_table"] = {**self.dev_table.state(), "labels": list(self.dev_labels)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "dev_table" in checkpoint:
            self.dev_table = DevTable.from_state(checkpoint["dev_table"])
            self.dev_labels = list(checkpoint["dev_table"]["labels"])

    def ensure_calibrated(self) -> None:
        if not bool(self.trained):
            raise UserError(
                f"{self.method_name} is not trained: run `python -m moco_lit fit` with the same "
                "model arguments first, then pass its checkpoint with --ckpt_path"
            )

    def answer_routed(self, batch: Batch, choices: list[int], details: list[dict]) -> list[Answer]:
        """Each example answered by its chosen collaborator only (one batched call per collaborator)."""
        texts: dict[int, str] = {}
        for model in sorted(set(choices)):
            routed = [i for i, choice in enumerate(choices) if choice == model]
            examples = Batch.of(batch).pick(routed)
            outputs = self.ask(model, examples.prompts, examples.ids)
            texts.update({i: output.text for i, output in zip(routed, outputs)})
        names = self.collaborator_names
        return [Answer(texts[i], by=names[choice], details=details[i]) for i, choice in enumerate(choices)]
