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
