"""``PredictionsTable``: runs compared side by side in Weights & Biases.

At the start of ``test`` it adds the experiment's identity (method, level, collaborators,
benchmark) to the run config as top-level keys the dashboard can group by; at the end it reads the
run folder (the one source of truth, also for reports: so it must come after ``RunFolderWriter``)
and logs the summary metrics, ``gain_over_best_single`` when a ``single_model`` run of the same
pool and benchmark exists, and a ``wandb.Table`` with one row per example. Without a
``WandbLogger`` it does nothing, so it is one of the default callbacks of every run.
"""

from __future__ import annotations

import json
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from moco_lit.results import compare_with_best_single

TABLE_COLUMNS = [
    "id", "output", "answer", "reference", "score", "prompt", "answered_by", "calls", "tokens", "details",
]  # fmt: skip
SUMMARY_KEYS = ("score", "cost/tokens", "cost/calls", "cost/new_tokens", "n")


def _wandb_loggers(trainer: L.Trainer) -> list:
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


class PredictionsTable(L.Callback):
    """Log config, summary metrics and a per-example predictions table to every attached W&B run."""

    def __init__(self, max_rows: int = 10_000) -> None:
        self.max_rows = max_rows

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = _wandb_loggers(trainer)
        if not loggers or trainer.global_rank != 0:
            return
        identity = _identity(pl_module, trainer)
        for logger in loggers:
            getattr(logger, "start", lambda: None)()  # setup is over: a held run may start
            logger.experiment.config.update(identity, allow_val_change=True)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = _wandb_loggers(trainer)
        folder = getattr(getattr(pl_module, "runtime", None), "run_folder", None)
        if not loggers or folder is None or trainer.global_rank != 0:
            return
        metrics = folder.read_metrics()
        if metrics is None:
            return
        summary = comparison_summary(folder.path, metrics)
        table = self._table(list(folder.load_predictions().values()))
        for logger in loggers:
            run = logger.experiment
            run.summary.update(summary)
            run.log({"predictions": table})

    def _table(self, records: list[dict]):
        import wandb

        table = wandb.Table(columns=TABLE_COLUMNS)
        for record in records[: self.max_rows]:
            table.add_data(*(_cell(record, column) for column in TABLE_COLUMNS))
        return table


def comparison_summary(run_path, metrics: dict) -> dict[str, Any]:
    """The W&B summary of a finished run: its metrics plus the gain over the pool's best single model."""
    summary: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        if isinstance(metrics.get(key), int | float):
            summary[key if key.startswith("cost/") else f"test/{key}"] = float(metrics[key])
    if metrics.get("score_ci"):  # the score's interval over examples, beside it
        summary["test/score_ci_low"], summary["test/score_ci_high"] = map(float, metrics["score_ci"])
    n = metrics.get("n")
    for key in ("cost/calls", "cost/tokens", "cost/new_tokens"):
        # the totals grow with the run's size: per example, runs of different sizes compare
        if isinstance(n, int | float) and n > 0 and isinstance(metrics.get(key), int | float):
            summary[f"{key}_per_example"] = float(metrics[key]) / n
    comparison = compare_with_best_single(run_path)
    if comparison is not None:
        summary["gain_over_best_single"] = comparison["gain"]
        if comparison["gain_ci"] is not None:  # paired by example id, as the report pairs them
            low, high = comparison["gain_ci"]
            summary["gain_over_best_single_ci_low"], summary["gain_over_best_single_ci_high"] = low, high
            summary["gain_over_best_single_p"] = comparison["gain_p"]
    return summary


def _identity(module: Any, trainer: L.Trainer) -> dict[str, Any]:
    datamodule = getattr(trainer, "datamodule", None)
    hparams = getattr(datamodule, "hparams", {}) if datamodule is not None else {}
    return {
        "method": getattr(module, "method_name", type(module).__name__),
        "level": getattr(module, "level", ""),
        "collaborators": list(getattr(module, "collaborator_specs", [])),
        "pool_size": len(getattr(module, "collaborator_specs", [])),
        "benchmark": hparams.get("benchmark") if hparams else None,
    }


def _cell(record: dict, column: str) -> Any:
    value = record.get(column)
    if column == "details":
        return json.dumps(value, ensure_ascii=False) if value else ""
    if column in {"answered_by", "reference", "answer"} and not isinstance(value, str | int | float | None):
        return json.dumps(value, ensure_ascii=False)  # lists and dicts: one column type for W&B
    if column == "prompt":  # records written before prompts were recorded have none
        return value or ""
    if column in {"reference", "answer"} and value is not None:
        return str(value)
    return value
