"""Trainer presets in configs/trainer/: each parses as a LightningCLI trainer section, and the
DeepSpeed ones build a ``DeepSpeedStrategy`` (validated on CPU; DeepSpeed itself runs on CUDA)."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import ROOT

PRESETS = sorted((ROOT / "configs" / "trainer").glob("*.yaml"))
DEEPSPEED = [p for p in PRESETS if p.stem.startswith("deepspeed")]
EXPECTED = {"cpu", "ddp", "deepspeed_zero2", "deepspeed_zero3", "deepspeed_zero3_offload", "multinode"}


def test_every_named_preset_exists():
    assert EXPECTED <= {p.stem for p in PRESETS}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_parses_with_print_config(preset, run_cli, capsys):
    args = [
        "fit",
        "-c",
        str(preset),
        "--model",
        "single_model",
        "--model.collaborators",
        "[a]",
        "--print_config",
    ]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*args)
    assert exit_info.value.code == 0
    # DeepSpeed logs a line to stdout when it is first imported (no accelerator found): skip it
    out = capsys.readouterr().out.splitlines()
    printed = yaml.safe_load("\n".join(line for line in out if not line.startswith("[20")))
    for key, value in yaml.safe_load(preset.read_text())["trainer"].items():
        if key != "strategy":
            assert printed["trainer"][key] == value, key
    strategy = yaml.safe_load(preset.read_text())["trainer"].get("strategy")
    if strategy:
        assert printed["trainer"]["strategy"]["class_path"] == strategy["class_path"]


@pytest.mark.parametrize("preset", DEEPSPEED, ids=lambda p: p.stem)
def test_deepspeed_presets_build_the_strategy(preset):
    pytest.importorskip("deepspeed")
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import DeepSpeedStrategy, Strategy

    section = yaml.safe_load(preset.read_text())["trainer"]["strategy"]
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    strategy = parser.instantiate_classes(parser.parse_object({"strategy": section})).strategy
    assert isinstance(strategy, DeepSpeedStrategy)
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == section["init_args"]["stage"]
    assert ("offload_optimizer" in zero) == bool(section["init_args"].get("offload_optimizer"))
    assert ("offload_param" in zero) == bool(section["init_args"].get("offload_parameters"))
