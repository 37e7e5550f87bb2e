"""Seeds: a sweep and a single `test` run once per seed, each seed in its own run folder, and the
report folds runs that differ only by seed into one row with the spread over seeds beside the
interval over examples."""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path

import pytest
import yaml

from moco_lit.errors import UserError
from moco_lit.evaluation.stats import score_interval
from moco_lit.report import Run, write_report
from moco_lit.seeds import merge_seeds, parse_seeds, split_seeds_flag
from moco_lit.sweep import planned_run_folder, run_sweep, sweep_from_spec

# coin is right on an example when its sampling seed comes up heads: other seeds, other scores
POOL = ["callable:tests.scripted.coin", "callable:tests.scripted.reverser", "callable:tests.scripted.wrong"]


def _spec(tmp_path: Path, **changes) -> dict:
    return {
        "name": "seedy",
        "run_dir": str(tmp_path / "runs"),
        "collaborators": POOL,
        "benchmarks": ["quickstart_multiply"],
        "methods": ["majority_vote"],
        "data": {"limit": 8},
        "model": {"max_new_tokens": 8},  # temperature 0.7 (the default): answers are sampled
        "seeds": [0, 1, 2],
        "wandb": False,
        **changes,
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[Path, str]:
    """single_model and majority_vote, three seeds each (6 runs), made once."""
    tmp_path = tmp_path_factory.mktemp("seeded")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOCO_LIT_HOME", str(tmp_path / "home"))
        results = run_sweep(sweep_from_spec(_spec(tmp_path)), out=out)
    assert [r.status for r in results] == ["done"] * 6
    assert [r.seed for r in results] == [0, 1, 2, 0, 1, 2]
    return tmp_path / "runs", out.getvalue()


def test_each_seed_is_a_cell_with_its_own_run_folder(tmp_path):
    sweep = sweep_from_spec(_spec(tmp_path))
    cells = sweep.cells()
    assert [(c.method, c.seed) for c in cells] == [
        ("single_model", 0),
        ("single_model", 1),
        ("single_model", 2),
        ("majority_vote", 0),
        ("majority_vote", 1),
        ("majority_vote", 2),
    ]
    argv = sweep.argv(cells[4])
    assert argv[argv.index("--model.seed") + 1] == "1" and argv[argv.index("--seed_everything") + 1] == "1"
    folders = {planned_run_folder(sweep.argv(c)) for c in cells[3:]}
    assert len(folders) == 3  # the seed is part of the run id
    assert all(c.seed is None for c in sweep_from_spec(_spec(tmp_path, seeds=None)).cells())


def test_seeds_are_checked_where_they_are_given(tmp_path):
    assert parse_seeds("0, 1,2") == [0, 1, 2] and parse_seeds([3]) == [3] and parse_seeds(4) == [4]
    for bad in ("a", "1,1", "-1", ""):
        with pytest.raises(UserError, match="seed"):
            parse_seeds(bad)
    with pytest.raises(UserError, match="model: {seed}"):
        sweep_from_spec(_spec(tmp_path, model={"seed": 3}))
    with pytest.raises(UserError, match="args of mv"):
        sweep_from_spec(
            _spec(tmp_path, methods=[{"method": "majority_vote", "label": "mv", "args": {"seed": 1}}])
        )
    assert split_seeds_flag(["test", "--seeds=0,2", "--data.limit", "3"]) == (
        ["test", "--data.limit", "3"],
        [0, 2],
    )
    with pytest.raises(UserError, match="one or the other"):
        split_seeds_flag(["test", "--seeds", "0,1", "--model.seed", "3"])


def test_bad_seeds_on_the_command_line_are_one_error_line(tmp_path, capsys):
    from moco_lit.cli import main

    grid = ["--methods", "majority_vote", "--benchmarks", "quickstart_multiply", "--collaborators", POOL[0]]
    assert main(["sweep", "--name", "s", *grid, "--run_dir", str(tmp_path), "--seeds", "0,x"]) == 2
    assert main(["sweep", "--name", "s", *grid, "--seeds", "0,1", "--model.seed", "5"]) == 2
    assert main(["test", "--model", "majority_vote", "--seeds", "1,1"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert "'x' is not an integer seed" in errors[0] and "one or the other" in errors[1]
    assert "seed listed twice" in errors[2]
    assert not (tmp_path / "sweeps").exists()  # nothing ran


def test_sweep_prints_the_spread_over_seeds(seeded):
    runs, printed = seeded
    summary = json.loads((runs / "sweeps" / "seedy.json").read_text())
    scores = [c["score"] for c in summary["cells"] if c["label"] == "majority_vote"]
    assert [c["seed"] for c in summary["cells"]] == [0, 1, 2, 0, 1, 2]
    assert len(set(scores)) > 1  # the seed changed the sampled answers
    line = next(line for line in printed.splitlines() if line.strip().startswith("majority_vote"))
    assert f"{statistics.fmean(scores):.3f} ± {statistics.stdev(scores):.3f}" in line
    assert "not over examples" in printed


def test_report_folds_the_seeds_of_a_cell_into_one_row(seeded, tmp_path):
    runs, _ = seeded
    files = write_report([runs / "sweeps" / "seedy.json"], tmp_path / "out")
    rows = {r["method"]: r for r in json.loads(files["json"].read_text())["rows"]}
    assert set(rows) == {"single_model", "majority_vote"}
    vote = rows["majority_vote"]
    metrics = [json.loads((Path(p) / "metrics.json").read_text()) for p in vote["seed_runs"]]
    per_seed = [m["score"] for m in metrics]
    assert vote["seeds"] == [0, 1, 2] and vote["n_seeds"] == 3
    assert vote["seed_scores"] == per_seed and len(set(per_seed)) > 1
    assert vote["score"] == pytest.approx(statistics.fmean(per_seed))
    assert vote["seed_std"] == pytest.approx(statistics.stdev(per_seed))
    assert (vote["seed_min"], vote["seed_max"]) == (min(per_seed), max(per_seed))
    # the interval over examples is the one of each example's score averaged over the seeds
    records = [
        {json.loads(line)["id"]: json.loads(line)["score"] for line in open(Path(p) / "predictions.jsonl")}
        for p in vote["seed_runs"]
    ]
    averaged = [statistics.fmean(r[key] for r in records) for key in records[0]]
    interval = score_interval(averaged)
    assert vote["score_ci"] == pytest.approx([interval.low, interval.high])
    # the baseline follows one collaborator over the seeds; the gain is against it
    single = rows["single_model"]
    assert single["n_seeds"] == 3 and single["best_single_model"] == "coin"
    assert vote["gain"] == pytest.approx(vote["score"] - single["score"])
    page = files["md"].read_text()
    assert "95% CI over examples" in page and "± std over seeds [min, max] (n)" in page
    assert "Two kinds of uncertainty" in page


def test_one_seed_keeps_the_report_as_it_was(seeded, tmp_path):
    runs, _ = seeded
    one = [p for p in (runs / "quickstart_multiply").glob("*/*") if (p / "metrics.json").exists()][:1]
    files = write_report(one, tmp_path / "out")
    row = json.loads(files["json"].read_text())["rows"][0]
    assert row["n_seeds"] == 1 and row["seed_std"] is None
    assert "over seeds" not in files["md"].read_text()


def _run(path: str, seed: int | None, scores: dict, experiment: str = "e1", mtime: float = 0.0) -> Run:
    return Run(
        path=path,
        method="m",
        label="m",
        level="text",
        benchmark="b",
        specs=("x",),
        names=("x",),
        score=statistics.fmean(v for v in scores.values() if v is not None),
        n=len(scores),
        tokens=10.0,
        calls=1.0,
        scores=scores,
        seed=seed,
        experiment=experiment,
        mtime=mtime,
    )


def test_merge_keeps_apart_what_differs_by_more_than_the_seed():
    old = _run("old", 0, {"a": 0.0, "b": 0.0}, mtime=1)
    seed0 = _run("s0", 0, {"a": 1.0, "b": 0.0}, mtime=2)  # a rerun of seed 0: it counts
    seed1 = _run("s1", 1, {"a": 1.0, "b": 1.0}, mtime=3)
    other = _run("other", 2, {"a": 0.0, "b": 0.0}, experiment="e2", mtime=4)
    moco = _run("log", None, {"a": 1.0, "b": None}, experiment="", mtime=5)
    merged = {r.path: r for r in merge_seeds([old, seed0, seed1, other, moco])}
    assert set(merged) == {"s1", "other", "log"}
    folded = merged["s1"]
    assert folded.seeds == (0, 1) and folded.seed_scores == (0.5, 1.0) and folded.seed_paths == ("s0", "s1")
    assert folded.scores == {"a": 1.0, "b": 0.5} and folded.score == 0.75
    assert merged["other"].seed_scores == () and merged["log"].scores == moco.scores


def test_test_command_runs_each_seed_and_prints_the_spread(tmp_path, capsys):
    from moco_lit.cli import main

    argv = ["test", "--model", "single_model", "--model.collaborators", "[callable:tests.scripted.coin]"]
    argv += ["--data.benchmark", "quickstart_multiply", "--data.limit", "6", "--model.max_new_tokens", "8"]
    argv += ["--run_dir", str(tmp_path / "runs"), "--wandb", "false", "--progress", "false", "--seeds", "3,4"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    folders = sorted((tmp_path / "runs" / "quickstart_multiply" / "single_model").iterdir())
    assert len(folders) == 2
    seeds = {
        yaml.safe_load((f / "config.yaml").read_text())["model"]["init_args"]["seed"]: f for f in folders
    }
    scores = [json.loads((seeds[s] / "metrics.json").read_text())["score"] for s in (3, 4)]
    assert f"seed 3: score {scores[0]:.3f}" in printed and f"seed 4: score {scores[1]:.3f}" in printed
    assert f"over seeds 3,4: {statistics.fmean(scores):.3f} ± {statistics.stdev(scores):.3f}" in printed
