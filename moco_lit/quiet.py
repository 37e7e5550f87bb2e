"""Quiet runs inside a larger command: the quickstart and sweeps print one line per run."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

# the per-run progress lines: calibration, resuming, search iterations, model loading, checkpoints
PER_RUN_LOGGERS = ("moco_lit.methods", "moco_lit.collaborators", "moco_lit.lightning_cli")


@contextlib.contextmanager
def quiet_runs(quiet: bool = True) -> Iterator[None]:
    """While the runs of a larger command go: their per-run lines only when not ``quiet``;
    warnings and errors always."""
    loggers = [logging.getLogger(name) for name in PER_RUN_LOGGERS]
    levels = [logger.level for logger in loggers]
    if quiet:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
