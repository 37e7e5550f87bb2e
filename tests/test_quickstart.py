"""The quickstart end to end with a tiny training budget: specialists, methods, leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

from moco_lit.data.synthetic import SKILLS, synthetic_benchmark
from moco_lit.quickstart import SpecialistTraining, ensure_specialists, run_quickstart


def test_synthetic_benchmark_is_deterministic_and_mixed():
    first, second = synthetic_benchmark("quickstart"), synthetic_benchmark("quickstart")
    assert first.test == second.test and first.dev == second.dev
    assert {r["skill"] for r in first.test} == set(SKILLS)
    assert len({r["id"] for r in first.test}) == len(first.test)
    assert synthetic_benchmark("quickstart_reverse").task_type == "exact_match"
    assert synthetic_benchmark("not_a_synthetic_name") is None


def test_quickstart_trains_caches_and_prints_a_leaderboard(tmp_path, capsys):
    training = SpecialistTraining(max_steps=20, seconds=60, train_examples=200)
    rows = run_quickstart(run_dir=str(tmp_path / "runs"), limit=6, training=training)
    out = capsys.readouterr().out
    assert "quickstart leaderboard" in out
    labels = {row["method"] for row in rows}
    assert {f"single: {skill}" for skill in SKILLS} <= labels
    assert any(label.startswith("majority_vote") for label in labels)
    for row in rows:
        assert set(row["groups"]) <= set(SKILLS) and 0.0 <= row["score"] <= 1.0
        metrics = json.loads((Path(row["run"]) / "metrics.json").read_text())
        assert metrics["n"] == 6
    # the specialists are cached: asking again trains nothing and returns the same folders
    folders = ensure_specialists(training)
    assert [Path(f).name for f in folders] == list(SKILLS)
    assert all((Path(f) / "config.json").exists() for f in folders)
