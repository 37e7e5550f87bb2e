"""Every project command parses its flags the same way: a misspelt flag is one ``error:`` line
naming the closest flag, exit code 2 (as LightningCLI's commands do through moco_lit's checks)."""

import pytest

from moco_lit.cli import main


@pytest.mark.parametrize(
    "argv, suggestion",
    [
        (["quickstart", "--limt", "3"], "--limit"),
        (["convert", "moco.json", "--allow_lossyy"], "--allow_lossy"),
        (["report", "runs", "--formatt", "csv"], "--format"),
        (["score", "--benchmark", "b.json", "--predictions", "p.jsonl", "--jsn"], "--json"),
        (["data", "list", "--verbos"], None),
    ],
)
def test_a_misspelt_flag_is_one_error_line_with_a_suggestion(argv, suggestion, capsys):
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("INFO ")]
    assert len(lines) == 1 and lines[0].startswith("error: python -m moco_lit ")
    assert "unrecognized arguments" in lines[0]
    if suggestion:
        assert f"(did you mean {suggestion}?)" in lines[0]
