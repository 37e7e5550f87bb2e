"""``CostAccounting``: what an evaluation cost, summed over its examples and ranks, and how long it took.

Every model call goes through ``CollaborationModule.ask``, which charges its calls, prompt plus
new tokens, and new tokens to each example's record; this callback adds up the records of every
batch (examples resumed from the run folder included, so a resumed run reports the cost of the
whole run), sums them across ranks, logs ``cost/calls``, ``cost/tokens`` and ``cost/new_tokens``
and hands them, with the epoch's wall-clock ``seconds``, to the run folder's ``metrics.json``.
"""

from __future__ import annotations

import time

import lightning as L
import torch

from moco_lit.runs import COUNTS


class CostAccounting(L.Callback):
    """Total calls and tokens of the epoch's records, reduced across ranks, and the epoch's seconds."""

    def __init__(self) -> None:
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
        for name, value in metrics.items():
            pl_module.log(name, value, rank_zero_only=True, sync_dist=False)
        pl_module.epoch_records.metrics.update(metrics)

    def _time(self, pl_module: L.LightningModule) -> None:
        pl_module.epoch_records.metrics["seconds"] = round(time.perf_counter() - self._started, 3)
