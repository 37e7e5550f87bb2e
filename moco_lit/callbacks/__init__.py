"""Lightning callbacks for run I/O: the run folder, resuming, cost, W&B, and per-iteration checkpoints.

A ``CollaborationModule`` collaborates and scores; what a run reads and writes around it is done
here, by callbacks listed in the trainer's callbacks (``--print_config`` shows them; the presets
in ``callbacks/`` change them). The defaults, in the order they must run:

- ``ResumeFromRunFolder``: examples already in the run folder are not run again.
- ``CostAccounting``: calls, tokens and seconds of the run, into ``metrics.json`` and the logger.
- ``RunFolderWriter``: ``predictions.jsonl`` as batches finish, ``metrics.json`` at the end.
- ``PredictionsTable``: summary and a per-example table in W&B (a no-op without a W&B logger).

``IterationCheckpoint`` (a resumable ``last.ckpt`` every ``fit`` epoch) is attached by the
command line to fits that checkpoint.
"""

from __future__ import annotations

from moco_lit.callbacks.checkpoint import LAST, IterationCheckpoint
from moco_lit.callbacks.cost import CostAccounting
from moco_lit.callbacks.run_folder import ResumeFromRunFolder, RunFolderWriter, run_folder_of
from moco_lit.callbacks.wandb_table import TABLE_COLUMNS, PredictionsTable, comparison_summary

# the trainer's callbacks unless a recipe or preset says otherwise (class paths, as a config holds them)
DEFAULT_CALLBACKS: list[dict] = [
    {"class_path": "moco_lit.callbacks.ResumeFromRunFolder"},
    {"class_path": "moco_lit.callbacks.CostAccounting"},
    {"class_path": "moco_lit.callbacks.RunFolderWriter"},
    {"class_path": "moco_lit.callbacks.PredictionsTable", "init_args": {"max_rows": 10_000}},
]

__all__ = [
    "DEFAULT_CALLBACKS",
    "LAST",
    "TABLE_COLUMNS",
    "CostAccounting",
    "IterationCheckpoint",
    "PredictionsTable",
    "ResumeFromRunFolder",
    "RunFolderWriter",
    "comparison_summary",
    "run_folder_of",
]
