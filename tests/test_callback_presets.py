"""Run I/O callbacks in the config: listed by --print_config, changed by the presets in callbacks/.

Every preset loads and runs a tiny scripted recipe writing the same run folder as the defaults;
``no_wandb_table`` drops only the W&B table, ``checkpoint_every_epoch`` keeps one checkpoint per
fit epoch, ``cost_per_collaborator`` adds each collaborator's calls, tokens and seconds to
metrics.json. A config that leaves out the writer is warned that nothing is written.
"""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from moco_lit.callbacks import CostAccounting, PredictionsTable, ResumeFromRunFolder, RunFolderWriter
from moco_lit.cli import main
from tests.conftest import ROOT
from tests.test_run_io import CASES, DATA, FIXTURES, POOL, assert_same_files, run_files

PRESETS = sorted(path.name for path in (ROOT / "callbacks").glob("*.yaml"))
RUN_IO = [ResumeFromRunFolder, CostAccounting, RunFolderWriter]


def callback_types(cli) -> list[type]:
    return [type(c) for c in cli.trainer.callbacks if type(c) in {*RUN_IO, PredictionsTable}]


def test_print_config_lists_the_default_callbacks(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*CASES["mv_test"], "--model.collaborators", POOL, *DATA, "--print_config"])
    assert exit_info.value.code == 0
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    assert [c["class_path"] for c in trainer["callbacks"]] == [
        "moco_lit.callbacks.ResumeFromRunFolder",
        "moco_lit.callbacks.CostAccounting",
        "moco_lit.callbacks.RunFolderWriter",
        "moco_lit.callbacks.PredictionsTable",
    ]


def test_presets_are_found_by_name():
    from moco_lit.shipped import resolve

    assert PRESETS == [
        "checkpoint_every_epoch.yaml",
        "cost_per_collaborator.yaml",
        "default.yaml",
        "no_wandb_table.yaml",
    ]
    for preset in PRESETS:
        assert resolve(f"callbacks/{preset[:-5]}") == str(ROOT / "callbacks" / preset)


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_runs_a_tiny_recipe_with_the_same_run_folder(preset, run_cli):
    folder = run_files(run_cli, "mv_test", "-c", f"callbacks/{preset}")
    if preset == "cost_per_collaborator.yaml":  # the same files, and more keys in metrics.json
        path = folder / "metrics.json"
        metrics = json.loads(path.read_text())
        added = {key: metrics.pop(key) for key in list(metrics) if key.count("/") == 2}
        path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        check_per_collaborator(added, metrics)
    assert_same_files(folder, "mv_test")


def check_per_collaborator(added: dict, metrics: dict) -> None:
    """majority_vote asks each of the three collaborators once per example; the rows add up."""
    names = ("oracle", "coin", "multiplier")
    assert set(added) == {
        f"cost/{n}/{k}" for n in names for k in ("calls", "tokens", "new_tokens", "seconds")
    }
    assert all(added[f"cost/{n}/calls"] == 5 for n in names)
    for key in ("calls", "tokens", "new_tokens"):
        assert sum(added[f"cost/{n}/{key}"] for n in names) == metrics[f"cost/{key}"]
    assert all(0 <= added[f"cost/{n}/seconds"] <= metrics["seconds"] for n in names)
    expected = json.loads((FIXTURES / "mv_test" / "metrics.json").read_text())
    assert metrics["cost/tokens"] == expected["cost/tokens"]


def test_default_preset_is_the_defaults_and_no_wandb_table_drops_only_the_table(run_cli):
    _, plain = run_cli(*CASES["mv_test"], "--model.collaborators", POOL, *DATA)
    _, listed = run_cli(
        *CASES["mv_test"], "--model.collaborators", POOL, *DATA, "-c", "callbacks/default.yaml"
    )
    _, without = run_cli(
        *CASES["mv_test"], "--model.collaborators", POOL, *DATA, "-c", "callbacks/no_wandb_table"
    )
    assert callback_types(plain) == callback_types(listed) == [*RUN_IO, PredictionsTable]
    assert callback_types(without) == RUN_IO


def test_checkpoint_every_epoch_keeps_one_checkpoint_per_fit_epoch(run_cli):
    preset = ["-c", "callbacks/checkpoint_every_epoch.yaml", "--trainer.max_epochs", "2"]
    _, fitted = run_cli("fit", "--model", "majority_vote", "--model.collaborators", POOL, *DATA, *preset)
    checkpoints = sorted(p.name for p in (fitted.model.runtime.run_folder.path / "checkpoints").iterdir())
    assert checkpoints == ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt", "last.ckpt"]


def test_without_the_writer_nothing_is_written_and_a_warning_says_so(run_cli, caplog):
    with caplog.at_level(logging.WARNING, logger="moco_lit.lightning_cli"):
        _, cli = run_cli(*CASES["mv_test"], "--model.collaborators", POOL, *DATA, "--trainer.callbacks", "[]")
    assert not cli.model.runtime.run_folder.path.exists() or not any(
        cli.model.runtime.run_folder.path.iterdir()
    )
    assert "no RunFolderWriter: nothing is written to" in caplog.text
    assert cli.model.epoch_records.metrics["score"] == 0.8  # it still collaborated and scored
