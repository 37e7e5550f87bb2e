"""Near-miss names and flags get a suggestion; a missing required argument says which flag."""

from __future__ import annotations

import pytest

from moco_lit.cli import main
from moco_lit.errors import UserError, did_you_mean
from tests.conftest import collaborators_arg

POOL = collaborators_arg(["callable:tests.scripted.oracle", "callable:tests.scripted.wrong"])
DATA = ["--data.benchmark", "quickstart", "--data.limit", "2", "--wandb", "false", "--progress", "false"]


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["test", "--model", "majorty_vote", "--model.collaborators", POOL, *DATA],
            "error: unknown method 'majorty_vote' (did you mean majority_vote?); available methods: ",
        ),
        (
            ["test", "--model", "majority_vote", "--model.collaborators", POOL, *DATA, "--data.limt", "3"],
            "error: unrecognized argument --data.limt (did you mean --data.limit?); `--help` lists the options",
        ),
        (
            [
                "test",
                "--model",
                "majority_vote",
                "--model.collaborators",
                POOL,
                *DATA,
                "--model.tei",
                "random",
            ],
            "error: unrecognized argument --model.tei (did you mean --model.tie?); `--help` lists the options",
        ),
        (
            ["test", "--model", "majority_vote", *DATA],
            "error: --model.collaborators is required (the collaborating models, e.g. "
            "--model.collaborators '[smollm2-135m-instruct, gemma3-270m]')",
        ),
        (
            ["test", "--model", "single_model", "--model.collaborators", "[smolm2-135m-instruct]", *DATA],
            "error: unknown model 'smolm2-135m-instruct' (did you mean smollm2-135m-instruct?) "
            "(short names: smollm2-135m-instruct, gemma3-270m)",
        ),
        (
            [
                "test",
                "--model",
                "majority_vote",
                "--model.collaborators",
                POOL,
                *DATA[2:],
                "--data.benchmark",
                "gsm8kk",
            ],
            "did you mean gsm8k?",
        ),
    ],
    ids=["method", "data flag", "method flag", "required", "short model name", "benchmark"],
)
def test_one_line_with_a_suggestion(argv, expected, capsys, tmp_path):
    assert main([*argv, "--run_dir", str(tmp_path / "runs")]) == 2
    line = error_line(capsys)
    assert line.startswith(expected) or (expected.startswith("did") and expected in line.lower()), line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("predictions.jsonl"))


def test_did_you_mean_only_for_close_names():
    assert did_you_mean("majorty_vote", ["majority_vote", "moa"]) == " (did you mean majority_vote?)"
    assert did_you_mean("xyz", ["majority_vote", "moa"]) == ""


def test_a_hub_id_close_to_a_short_name_is_still_a_hub_id():
    from moco_lit.model_files import resolve_model

    assert resolve_model("someorg/smollm2-135m-instruct") == "someorg/smollm2-135m-instruct"
    with pytest.raises(UserError, match="did you mean gemma3-270m"):
        resolve_model("gemma3-270")


def test_a_quickstart_specialist_name_is_checked():
    import moco_lit.quickstart  # noqa: F401  (registers the quickstart: resolver)
    from moco_lit.model_files import resolve_model

    with pytest.raises(
        UserError, match=r"unknown quickstart specialist 'multipy' \(did you mean multiply\?\)"
    ):
        resolve_model("quickstart:multipy")
