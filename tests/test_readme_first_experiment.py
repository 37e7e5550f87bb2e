"""README's first experiment, run as written: its commands from the marked block, its numbers."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest

from moco_lit.cli import main

ROOT = Path(__file__).resolve().parent.parent
USER_HOME = Path(os.environ.get("MOCO_LIT_HOME", Path.home() / ".cache" / "moco_lit")).expanduser()


def first_experiment() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- first-experiment -->\s*```bash\n(.*?)```\s*<!-- /first-experiment -->", text, re.S
    )
    assert block, "README has no marked first experiment"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line]


@pytest.mark.slow
def test_the_first_experiment_runs_as_written_and_gives_the_readme_numbers(tmp_path, monkeypatch, capsys):
    """Needs the quickstart's specialists (the quickstart trains them; CI runs it before the tests)."""
    if not list((USER_HOME / "quickstart").glob("specialists-*/next_letter/config.json")):
        pytest.skip(
            "the quickstart's specialists are not trained here yet: run `python -m moco_lit quickstart`"
        )
    monkeypatch.setenv("MOCO_LIT_HOME", str(USER_HOME))  # the trained specialists and their cache
    commands = first_experiment()
    assert [c[:3] for c in commands] == [["python", "-m", "moco_lit"]] * 3
    for command in commands:
        assert main([*command[3:], "--run_dir", str(tmp_path / "runs"), "--wandb", "false"]) == 0
    capsys.readouterr()
    single = json.loads(
        next((tmp_path / "runs" / "quickstart" / "single_model").glob("*/metrics.json")).read_text()
    )
    (routed,) = [
        json.loads(p.read_text())
        for p in (tmp_path / "runs" / "quickstart" / "trained_router").glob("*/metrics.json")
        if "-" not in p.parent.name
    ]
    readme = (ROOT / "README.md").read_text()
    best_single = max(v for k, v in single.items() if k.startswith("score/"))
    assert f"alone scores {best_single:.3f}" in readme
    low, high = routed["score_ci"]
    assert f"collaboration {routed['score']:.3f} (95% CI [{low:.3f}, {high:.3f}])" in readme
    assert routed["n"] == 180 and routed["score"] > best_single
