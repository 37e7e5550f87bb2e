"""``IterationCheckpoint``: a resumable ``checkpoints/last.ckpt`` at the end of every ``fit`` epoch.

One epoch is one search iteration or one training round; whatever the recipe's ModelCheckpoint
keeps as best-k, a kill loses at most the iteration it interrupted. The file is replaced
atomically (written beside it, then renamed), so a kill while saving leaves the previous
iteration's file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from moco_lit.errors import UserError

LAST = "last.ckpt"


class IterationCheckpoint(Checkpoint):
    """Save a resumable ``last.ckpt`` after every training epoch (best-k stays with ModelCheckpoint).

    A ``Checkpoint`` subclass, so Lightning runs it after the module's ``on_train_epoch_end``
    (where a search finishes its iteration). It takes over ``save_last`` from every
    ModelCheckpoint, which writes ``last.ckpt`` only when it also saves a best-k file.
    """

    def __init__(self, on_first_save=None) -> None:
        self.on_first_save = on_first_save
        self.last_path: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                callback.save_last = False

    def directory(self, trainer: L.Trainer) -> Path:
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                return Path(callback.dirpath)
        return Path(trainer.default_root_dir) / "checkpoints"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        target = self.directory(trainer) / LAST
        partial = target.with_name(LAST + ".partial")
        if trainer.is_global_zero:
            if self.on_first_save is not None:
                self.on_first_save()
                self.on_first_save = None
            target.parent.mkdir(parents=True, exist_ok=True)
        try:
            trainer.save_checkpoint(partial)  # every rank takes part; rank 0 writes
            if trainer.is_global_zero:
                with open(partial, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(partial, target)
        except OSError as err:
            if trainer.is_global_zero:
                partial.unlink(missing_ok=True)
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            kept = f"; {target} still holds the iteration before" if target.exists() else ""
            raise UserError(
                f"disk full: cannot write the checkpoint {target}{kept}; free space and rerun"
            ) from err
        self.last_path = target
