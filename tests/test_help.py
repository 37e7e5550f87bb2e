"""A short --help per Lightning command, --help-all for every option, --model.help by short name."""

from __future__ import annotations

import pytest

from moco_lit.cli import main


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
def test_help_is_short_and_points_to_help_all(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m moco_lit {command} ")
    assert len(out.splitlines()) < 40 and "--help-all" in out and "majority_vote" in out
    assert "INFO" not in capsys.readouterr().err  # no network check for a help page


def test_help_all_lists_every_option(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["test", "--help-all"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert (
        out.startswith("usage: python -m moco_lit")
        and "--trainer.max_epochs" in out
        and len(out.splitlines()) > 100
    )


def test_model_help_takes_a_short_method_name(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["test", "--model.help", "majority_vote"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "--model.tie {random,dev-based}" in out and "--model.collaborators" in out


@pytest.mark.parametrize("form", ["class_path", "string"])
def test_a_recipe_may_name_its_method_by_short_name(form, tmp_path, capsys):
    model = (
        "model:\n  class_path: majority_vote\n  init_args:\n"
        "    collaborators: [callable:tests.scripted.oracle, callable:tests.scripted.wrong]\n"
        if form == "class_path"
        else "model: majority_vote\n"
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(model + "data:\n  benchmark: quickstart\n  limit: 3\n")
    extra = [] if form == "class_path" else ["--model.collaborators", "[callable:tests.scripted.oracle]"]
    common = ["--run_dir", str(tmp_path / "runs"), "--wandb", "false", "--progress", "false"]
    assert main(["test", "-c", str(recipe), *extra, *common]) == 0
    (records,) = list((tmp_path / "runs" / "quickstart" / "majority_vote").rglob("predictions.jsonl"))
    assert len(records.read_text().splitlines()) == 3
    recipe.write_text(recipe.read_text().replace("majority_vote", "majorty_vote"))
    assert main(["test", "-c", str(recipe), *extra, *common]) == 2
    assert "(did you mean majority_vote?)" in capsys.readouterr().err
