"""Checkpoints keep their promise: a resumable ``last.ckpt`` every iteration, and one method each.

A weight search whose dev score stops improving gets no new best-k file from the recipe's
ModelCheckpoint, yet ``last.ckpt`` holds every iteration as it ends, and a search resumed from any
of them reaches the uninterrupted search's state. A checkpoint whose saved arguments differ from
the command line's wins, with one warning line naming each value.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from moco_lit.callbacks import IterationCheckpoint
from moco_lit.methods.weight.model_swarms import ModelSwarms
from tests.conftest import collaborators_arg

RECIPE = """trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        monitor: search/best_dev_score
        mode: max
        save_last: true
"""


def _fit(run_cli, tiny_models, recipe: Path, run_dir: Path, *extra: str):
    return run_cli(
        "fit",
        "-c",
        str(recipe),
        "--model",
        "model_swarms",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.max_new_tokens",
        "4",
        "--model.max_iterations",
        "3",
        "--trainer.max_epochs",
        "3",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
        "--run_dir",
        str(run_dir),
        *extra,
    )[1]


def test_a_search_that_stops_improving_still_checkpoints_every_iteration(
    run_cli, tiny_models, tmp_path, monkeypatch
):
    # the same dev score for every candidate: the best never improves after the first iteration
    monkeypatch.setattr(ModelSwarms, "dev_score", lambda self, model, batches: 0.5)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    saved: list[Path] = []
    original = IterationCheckpoint.on_train_epoch_end

    def keep_a_copy(self, trainer, pl_module):
        original(self, trainer, pl_module)
        copy = tmp_path / f"after_iteration_{len(saved) + 1}.ckpt"
        shutil.copyfile(self.last_path, copy)
        saved.append(copy)

    monkeypatch.setattr(IterationCheckpoint, "on_train_epoch_end", keep_a_copy)
    whole = _fit(run_cli, tiny_models, recipe, tmp_path / "whole")

    iterations = [torch.load(p, weights_only=False)["merge_search"]["iteration"] for p in saved]
    assert iterations == [1, 2, 3]
    checkpoints = sorted(p.name for p in whole.model.runtime.run_folder.path.rglob("*.ckpt"))
    assert checkpoints == ["epoch=0-step=1.ckpt", "last.ckpt"]  # best-k kept only the first
    assert not list(whole.model.runtime.run_folder.path.rglob("*.partial"))
    assert (whole.model.runtime.run_folder.path / "config.yaml").is_file()

    # killed after iteration 2: resuming from that last.ckpt loses nothing
    resumed = _fit(run_cli, tiny_models, recipe, tmp_path / "resumed", "--ckpt_path", str(saved[1]))
    assert resumed.model.iteration == whole.model.iteration == 3
    assert resumed.model.history == whole.model.history
    assert torch.equal(resumed.model.swarm.positions, whole.model.swarm.positions)


def test_checkpoint_values_that_override_the_command_line_are_named(run_cli, tmp_path, caplog):
    common = [
        "--model",
        "majority_vote",
        "--model.collaborators",
        "[callable:tests.scripted.wrong, callable:tests.scripted.multiplier]",
        "--model.tie",
        "dev-based",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "4",
    ]
    _, fitted = run_cli("fit", *common, "--model.max_new_tokens", "8")
    checkpoint = fitted.trainer.checkpoint_callbacks[-1].last_path
    assert checkpoint.name == "last.ckpt"
    with caplog.at_level(logging.WARNING, logger="moco_lit.lightning_cli"):
        _, tested = run_cli("test", *common, "--model.max_new_tokens", "16", "--ckpt_path", str(checkpoint))
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "moco_lit.lightning_cli"]
    assert "max_new_tokens=8 (not 16)" in warning and "tie" not in warning
    assert tested.model.hparams.max_new_tokens == 8


def test_a_full_disk_while_checkpointing_is_one_line(run_cli, tmp_path, monkeypatch):
    import errno
    import os

    import lightning as L

    from moco_lit.errors import UserError

    save = L.Trainer.save_checkpoint

    def full(self, filepath, *args, **kwargs):
        if str(filepath).endswith(full_at):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))
        return save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "save_checkpoint", full)
    args = ["--model", "majority_vote", "--model.collaborators", "[callable:tests.scripted.oracle]"]
    args += ["--data.benchmark", "quickstart", "--data.limit", "2"]
    full_at = "last.ckpt.partial"  # ours: the partial file goes, the message names last.ckpt
    with pytest.raises(UserError, match=r"^disk full: cannot write the checkpoint .*last\.ckpt; free space"):
        run_cli("fit", *args, "--run_dir", str(tmp_path / "a"))
    assert not list(tmp_path.rglob("*.partial"))
    full_at = ".ckpt"  # Lightning's own ModelCheckpoint, first: the CLI names the file
    with pytest.raises(UserError, match=r"^disk full: cannot write .*epoch=0-step=1\.ckpt; free space"):
        run_cli("fit", *args, "--run_dir", str(tmp_path / "b"))
