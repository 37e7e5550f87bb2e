"""``CostAccounting``: what an evaluation cost, summed over its examples and ranks, and how long it took.

Every model call goes through ``CollaborationModule.ask``, which charges its calls, prompt plus
new tokens, and new tokens to each example's record; this callback adds up the records of every
batch (examples resumed from the run folder included, so a resumed run reports the cost of the
whole run), sums them across ranks, logs ``cost/calls``, ``cost/tokens`` and ``cost/new_tokens``
and hands them, with the epoch's wall-clock ``seconds``, to the run folder's ``metrics.json``.

With ``per_collaborator`` it also reports ``cost/<collaborator>/{calls,tokens,new_tokens,seconds}``:
what each model of the pool was asked during this epoch (``joint`` holds the time of token-level
decoding, whose tokens are charged to its models; ``other`` judges and helpers), summed across
ranks. These count the calls this process made: a resumed run leaves out the examples it skipped.
"""

from __future__ import annotations

import time

import lightning as L
import torch

from moco_lit.runs import COUNTS

PER_MODEL = ("calls", "tokens", "new_tokens", "seconds")


class CostAccounting(L.Callback):
    """Total calls and tokens of the epoch's records, reduced across ranks, and the epoch's seconds."""

    def __init__(self, per_collaborator: bool = False) -> None:
        self.per_collaborator = per_collaborator
        self._totals = [0, 0, 0]
        self._started = time.perf_counter()

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        self._count(pl_module)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        self._count(pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._total(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._total(pl_module)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._time(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._time(pl_module)

    def _start(self) -> None:
        self._totals = [0, 0, 0]
        self._started = time.perf_counter()

    def _count(self, pl_module: L.LightningModule) -> None:
        for record in pl_module.epoch_records.batch:
            for slot, key in enumerate(COUNTS):
                self._totals[slot] += record[key]

    def _total(self, pl_module: L.LightningModule) -> None:
        """Every rank must call this: the totals are summed across ranks."""
        totals = torch.tensor(self._totals, dtype=torch.float64, device=pl_module.device)
        totals = pl_module.trainer.strategy.reduce(totals, reduce_op="sum")
        metrics = {f"cost/{key}": float(value) for key, value in zip(COUNTS, totals.tolist())}
        if self.per_collaborator:
            metrics |= self._by_collaborator(pl_module)
        for name, value in metrics.items():
            pl_module.log(name, value, rank_zero_only=True, sync_dist=False)
        pl_module.epoch_records.metrics.update(metrics)

    def _by_collaborator(self, pl_module: L.LightningModule) -> dict[str, float]:
        names = [*pl_module.collaborator_names, "joint", "other"]  # the same rows on every rank
        by_model = pl_module.epoch_records.by_model
        rows = torch.tensor(
            [by_model.get(name, [0, 0, 0, 0.0]) for name in names],
            dtype=torch.float64,
            device=pl_module.device,
        )
        rows = pl_module.trainer.strategy.reduce(rows, reduce_op="sum")
        metrics = {}
        for name, row in zip(names, rows.tolist()):
            if any(row):
                metrics |= {f"cost/{name}/{key}": value for key, value in zip(PER_MODEL, row)}
                metrics[f"cost/{name}/seconds"] = round(row[3], 3)
        return metrics

    def _time(self, pl_module: L.LightningModule) -> None:
        pl_module.epoch_records.metrics["seconds"] = round(time.perf_counter() - self._started, 3)
