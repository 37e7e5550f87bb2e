"""The run folder as callbacks: resume from it at an epoch's start, write to it as batches finish.

``ResumeFromRunFolder`` reads the records already in the run folder (every rank file included)
into the module's ``epoch_records.resumed``, so those examples are not run again.
``RunFolderWriter`` appends each batch's new records to ``predictions.jsonl`` (one file per rank
under DDP) and, once every rank is done, merges rank files and writes ``metrics.json``: the
module's scores and the other callbacks' additions (cost, seconds), the run's identity and the
score's interval over all of the folder's examples.

Both act on ``test``, ``validate`` and ``predict``; validation inside ``fit`` has no run folder
(every epoch's answers differ). The folder itself (``runtime.run_folder``) is chosen and locked
by the command line before the run starts.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from moco_lit.evaluation.stats import score_interval
from moco_lit.runs import RunFolder


def run_folder_of(trainer: L.Trainer, pl_module: L.LightningModule) -> RunFolder | None:
    """The folder records go to; none for validation inside ``fit`` or a run without one."""
    if trainer.state.fn == "fit":
        return None
    return getattr(getattr(pl_module, "runtime", None), "run_folder", None)


class ResumeFromRunFolder(L.Callback):
    """Skip the examples whose records are already in the run folder (a killed run resumes)."""

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._load(trainer, pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._load(trainer, pl_module)

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._load(trainer, pl_module)

    def _load(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = run_folder_of(trainer, pl_module)
        done = folder.load_predictions() if folder is not None else {}
        pl_module.epoch_records.resumed = done
        if done:
            pl_module.note(f"resuming: {len(done)} examples already in {folder.path}")


class RunFolderWriter(L.Callback):
    """Append every batch's new records to the run folder; merge rank files and write metrics.json at the end.

    Runs before ``PredictionsTable`` (which reads what this writes) and after ``CostAccounting``
    (whose numbers it writes) in the trainer's callbacks.
    """

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        self._append(trainer, pl_module)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        self._append(trainer, pl_module)

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: object) -> None:
        self._append(trainer, pl_module)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module, "test")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._finish(trainer, pl_module, "dev")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module, None)

    def _append(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = run_folder_of(trainer, pl_module)
        fresh = pl_module.epoch_records.fresh
        if folder is not None and fresh:
            folder.append_predictions(fresh, trainer.global_rank, trainer.world_size)

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str | None) -> None:
        folder = run_folder_of(trainer, pl_module)
        if folder is None:
            return
        trainer.strategy.barrier()  # every rank's last records are in its file
        if trainer.global_rank != 0:
            return
        if trainer.world_size > 1 or folder.shards():
            folder.merge_shards()  # also rank files of an earlier run with another number of ranks
        if split is None:
            return
        metrics = dict(pl_module.epoch_records.metrics)
        seconds = metrics.pop("seconds", None)
        folder.write_metrics(
            {
                "method": pl_module.method_name,
                "level": pl_module.level,
                "split": split,
                "collaborators": pl_module.collaborator_names,
                "dev_scores": _floats(pl_module.dev_scores) if bool(pl_module.calibrated) else None,
                **({"seconds": seconds} if seconds is not None else {}),
                **pl_module.runtime.config.get("summary", {}),
                **metrics,
                **_score_intervals(pl_module, folder, metrics),
            }
        )


def _score_intervals(pl_module: Any, folder: RunFolder, metrics: dict) -> dict:
    """``score_ci`` (and ``score_ci/<name>``) over the folder's examples, every rank's included."""
    records = list(folder.load_predictions().values())
    out: dict[str, Any] = {}
    for key, scores in pl_module.per_example_scores(records, metrics).items():
        interval = score_interval(scores)
        if interval is None:
            continue
        out[key.replace("score", "score_ci", 1)] = [interval.low, interval.high]
        if key == "score":
            out |= {"ci_method": interval.method, "confidence": interval.confidence, "ci_n": interval.n}
    return out


def _floats(tensor: torch.Tensor) -> list[float]:
    return [round(float(v), 6) for v in tensor.tolist()]
