"""Reports: numbers equal the run folders', heatmap data has one cell per method × setting,
emergence on a hand-made case, MoCo logs as runs, and the leaderboard still works."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from moco_lit.evaluation.stats import wilson_interval
from moco_lit.report import (
    Run,
    best_single,
    compare,
    emergence,
    headline,
    heatmap_data,
    heatmap_labels,
    write_report,
)
from moco_lit.sweep import run_sweep, sweep_from_spec
from tests.report_helpers import make_run

POOL = [
    "callable:tests.scripted.multiplier",
    "callable:tests.scripted.reverser",
    "callable:tests.scripted.wrong",
]


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """single_model, majority_vote and moa on two benchmarks with one pool (6 runs), made once."""
    tmp_path = tmp_path_factory.mktemp("swept")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOCO_LIT_HOME", str(tmp_path / "home"))  # the module runs before the per-test home
        return _sweep(tmp_path)


def _sweep(tmp_path: Path) -> Path:
    sweep = sweep_from_spec(
        {
            "name": "rep",
            "run_dir": str(tmp_path / "runs"),
            "collaborators": POOL,
            "benchmarks": ["quickstart_multiply", "quickstart_reverse"],
            "methods": ["majority_vote", "moa"],
            "data": {"limit": 6},
            "model": {"max_new_tokens": 8},
            "wandb": False,
        }
    )
    results = run_sweep(sweep, out=open(os.devnull, "w"))
    assert all(r.status == "done" for r in results)
    return tmp_path / "runs"


def _metrics(folder: str) -> dict:
    return json.loads((Path(folder) / "metrics.json").read_text())


def test_report_numbers_equal_the_run_folders(swept: Path):
    files = write_report([swept / "sweeps" / "rep.json"], swept / "out", title="t")
    data = json.loads(files["json"].read_text())
    rows = data["rows"]
    assert len(rows) == 6
    for row in rows:
        metrics = _metrics(row["run"])
        assert row["score"] == metrics["score"] and row["n"] == metrics["n"]
        assert row["tokens_per_example"] == pytest.approx(metrics["cost/tokens"] / metrics["n"])
        single = next(r for r in rows if r["method"] == "single_model" and r["benchmark"] == row["benchmark"])
        single_metrics = _metrics(single["run"])
        assert row["best_single"] == pytest.approx(single_metrics["score"])  # the best of score/<name>
        assert row["best_single_model"] == single_metrics["best_single_model"]
        assert row["gain"] == pytest.approx(metrics["score"] - single_metrics["score"])
    collaborations = [r for r in rows if r["method"] != "single_model"]
    stats = data["headline"]
    assert stats["pairs"] == 4
    assert stats["win_share"] == pytest.approx(sum(r["gain"] > 0 for r in collaborations) / 4)
    assert stats["largest_gain"]["gain"] == pytest.approx(max(r["gain"] for r in collaborations))
    for name in ("heatmap_score", "heatmap_gain", "cost_quality"):
        assert files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = files["html"].read_text()
    assert page.count("data:image/png;base64,") == 3 and 'src="http' not in page and '.png"' not in page
    assert "heatmap_gain.png" in files["md"].read_text()


def test_heatmap_data_has_one_cell_per_method_and_setting(swept: Path):
    from moco_lit.report import load_runs

    rows = compare(load_runs([swept]))
    methods, settings, matrix = heatmap_data(rows, "score")
    assert (
        methods[0] == "single_model"
        and len(methods) == 3
        and settings == ["quickstart_multiply", "quickstart_reverse"]
    )
    assert [len(line) for line in matrix] == [2, 2, 2] and all(v is not None for line in matrix for v in line)
    by_cell = {(r["method"], r["setting"]): r["score"] for r in rows}
    assert matrix[methods.index("moa")][1] == by_cell[("moa", "quickstart_reverse")]
    gain_methods, _, gains = heatmap_data(rows, "gain")
    assert "single_model" not in gain_methods and sum(len(line) for line in gains) == 4


def test_report_command_on_a_sweep_name(swept: Path, capsys):
    from moco_lit.cli import main

    assert main(["report", "rep", "--run_dir", str(swept)]) == 0
    assert (swept / "reports" / "rep" / "report.html").exists()
    assert "report.html" in capsys.readouterr().out


def test_emergence_counts_what_no_single_model_solves():
    collaboration = {"a": 1.0, "b": 1.0, "c": 0.0, "d": 1.0, "e": None}
    singles = [
        {"a": 0.0, "b": 1.0, "c": 0.0, "d": 0.0, "e": 0.0},
        {"a": 0.0, "b": 0.0, "c": 0.0, "d": None, "e": 0.0},
    ]
    # unsolved by every single model: a, c, d, e; of those the collaboration solves a and d
    assert emergence(collaboration, singles) == (2, 4)
    assert emergence(collaboration, singles, solved_at=1.5) == (0, 5)


def _run(method: str, scores: dict, single: dict | None = None, specs=("m1", "m2")) -> Run:
    return make_run(method, scores, single=single, specs=specs, path=f"/{method}")


def test_best_single_and_headline_on_a_hand_made_pool():
    ids = ["1", "2", "3", "4"]
    m1 = dict(zip(ids, [1.0, 0.0, 0.0, 0.0]))
    m2 = dict(zip(ids, [1.0, 1.0, 0.0, 0.0]))
    single = _run("single_model", m2, single={"m1": m1, "m2": m2})
    good = _run("good", dict(zip(ids, [1.0, 1.0, 1.0, 0.0])))
    bad = _run("bad", dict(zip(ids, [1.0, 0.0, 0.0, 0.0])))
    baseline = best_single(good, [single])
    assert (baseline.name, baseline.score) == ("m2", 0.5)
    assert best_single(_run("x", m1, specs=("m1", "m3")), [single]) is None  # m3 never ran alone
    rows = compare([single, good, bad])
    stats = headline(rows)
    assert stats["methods"]["good"]["win_share"] == 1.0 and stats["methods"]["bad"]["win_share"] == 0.0
    assert stats["win_share"] == 0.5 and stats["largest_gain"] == {
        "method": "good",
        "setting": "b",
        "gain": 0.25,
    }
    assert stats["methods"]["good"]["emergence"] == 0.5  # examples 3 and 4: no single model; good solves 3
    assert stats["emergence"] == pytest.approx(1 / 4)


def _moco_log(
    folder: Path, method: str, who: str, models: list[str], outputs: list[str], scores: list[float]
):
    body = {
        "task": "quickstart_multiply",
        "task_type": "exact_match",
        "model_names": models,
        "hyperparameters": {"max_response_length": 16},
        "avg_test_score": sum(scores) / len(scores),
        "logs": [
            {"input": f"q{i}", "output": o, "score": s} for i, (o, s) in enumerate(zip(outputs, scores))
        ],
    }
    path = folder / f"quickstart_multiply_{who}_{round(body['avg_test_score'], 4)}_{method}.json"
    path.write_text(json.dumps(body))
    return path


def test_moco_logs_are_reported_and_scored(tmp_path, capsys):
    from moco_lit.cli import main
    from moco_lit.data import load_benchmark

    answers = [r["output"] for r in load_benchmark("quickstart_multiply").test[:4]]
    logs = tmp_path / "logs"
    logs.mkdir()
    _moco_log(logs, "single_model", "A", ["org/A"], ["0"] * 4, [1.0, 0.0, 0.0, 0.0])
    _moco_log(logs, "single_model", "B", ["org/B"], ["0"] * 4, [0.0, 1.0, 0.0, 0.0])
    vote = _moco_log(
        logs, "majority_vote", "2", ["org/A", "org/B"], answers[:3] + ["x"], [1.0, 1.0, 1.0, 0.0]
    )
    files = write_report([logs], tmp_path / "out")
    data = json.loads(files["json"].read_text())
    row = next(r for r in data["rows"] if r["method"] == "majority_vote")
    assert (
        row["best_single"] == 0.25
        and row["gain"] == pytest.approx(0.5)
        and (row["emerged"], row["unsolved"]) == (1, 2)
    )
    assert main(["score", "--predictions", str(vote), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["benchmark"] == "quickstart_multiply" and scored["n"] == 4 and scored["mean"] == 0.75


def test_leaderboard_still_reads_run_folders(swept: Path):
    from moco_lit.report import find_run_folders, format_leaderboard, leaderboard_rows

    rows = leaderboard_rows(find_run_folders(swept))
    labels = {row["method"] for row in rows}
    assert {"single: multiplier", "single: reverser", "single: wrong", "moa"} <= labels
    assert "leaderboard" in format_leaderboard(rows)


def test_labels_tell_a_methods_trained_form_from_its_zero_shot_one():
    from moco_lit.results import method_label

    def config(**init_args) -> dict:
        return {"model": {"init_args": init_args}}

    metrics = {"method": "llm_blender"}
    assert method_label(config(ranker=0), metrics) == "llm_blender"
    assert method_label(config(train_ranker_on_dev=False), metrics) == "llm_blender"
    assert method_label(config(train_fuser_on_dev=True), metrics) == "llm_blender (trained)"
    assert method_label(config(tie="random"), {"method": "majority_vote"}) == "majority_vote (tie=random)"
    assert (
        method_label(config(router="encoder"), {"method": "trained_router"})
        == "trained_router (router=encoder)"
    )
    # an argument only another method names in its label is not shown
    assert method_label(config(tie="random"), {"method": "moa"}) == "moa"
    assert method_label(config(mode="logit"), {"method": "not_registered"}) == "not_registered"


def test_labels_come_from_the_class_that_ran():
    import inspect

    from moco_lit import methods
    from moco_lit.results import method_label

    # the configured class path decides, so a subclass under another name keeps its parent's label
    config = {"model": {"class_path": "moco_lit.methods.api.cascade.Cascade", "init_args": {"mode": "logit"}}}
    assert method_label(config, {"method": "my_cascade"}) == "my_cascade (mode=logit)"
    labelled = {}
    for name in methods.names():
        method = methods.get(name)
        arguments = inspect.signature(method.__init__).parameters
        declared = (*getattr(method, "report_label_args", ()), *getattr(method, "report_trained_flags", ()))
        assert set(declared) <= set(arguments), f"{name} labels runs by arguments it does not take"
        if declared:
            labelled[name] = declared
    assert labelled == {
        "cascade": ("mode",),
        "dare_ties": ("mode",),
        "expo": ("mode",),
        "llm_blender": ("train_ranker_on_dev", "train_fuser_on_dev"),
        "majority_vote": ("tie",),
        "mentor_collab": ("mode",),
        "slm_mux": ("tie",),
        "structure": ("structure_type",),
        "trained_router": ("router",),
    }


def _paired_pool() -> list[Run]:
    """40 questions: m2 solves 24 (ids 0–23), m1 12; "strong" solves 30 (0–29), "slight" 25 (0–24)."""
    ids = [str(i) for i in range(40)]
    m1 = {key: float(i < 12) for i, key in enumerate(ids)}
    m2 = {key: float(i < 24) for i, key in enumerate(ids)}
    single = _run("single_model", m2, single={"m1": m1, "m2": m2})
    strong = _run("strong", {key: float(i < 30) for i, key in enumerate(ids)})
    slight = _run("slight", {key: float(i < 25) for i, key in enumerate(ids)})
    return [single, strong, slight]


def test_a_gain_whose_exact_test_disagrees_with_its_interval_is_not_counted():
    # 4 of 20 questions more than the best single model, none fewer: interval above zero, p = 0.125
    ids = [str(i) for i in range(20)]
    zero = {key: 0.0 for key in ids}
    single = _run("single_model", zero, single={"m1": zero, "m2": zero})
    four = _run("four", {key: float(i < 4) for i, key in enumerate(ids)})
    row = next(r for r in compare([single, four]) if r["method"] == "four")
    assert row["gain_ci"][0] > 0 and row["gain_p"] == pytest.approx(0.125)
    assert row["significant_gain"] is False
    assert headline(compare([single, four]))["significant_wins"] == 0


def test_gains_are_paired_by_id_and_the_headline_counts_only_intervals_above_zero(tmp_path):
    rows = {row["method"]: row for row in compare(_paired_pool())}
    strong, slight, single = rows["strong"], rows["slight"], rows["single_model"]
    # unpaired, strong's Wilson interval [0.598, 0.858] overlaps the best single's [0.446, 0.737] ...
    assert strong["score_ci"][0] < single["score_ci"][1] and single["best_single_model"] == "m2"
    assert single["score_ci"] == pytest.approx([0.4460, 0.7365], abs=5e-4)
    # ... paired, the 6 examples strong alone solves give +0.15 with K/40, K ~ Binomial(40, 0.15):
    # an interval of about [2/40, 11/40], and McNemar's exact p = 2 / 2⁶
    assert strong["gain"] == pytest.approx(0.15) and strong["significant_gain"] is True
    assert strong["gain_ci"] == pytest.approx([2 / 40, 11 / 40], abs=0.026) and strong["gain_ci"][0] > 0
    assert (strong["gain_test"], strong["gain_p"], strong["paired_n"]) == ("mcnemar_exact", 2 / 64, 40)
    # one example more than the best single model: a gain, but its interval reaches zero (p = 1)
    assert slight["gain"] == pytest.approx(0.025) and slight["significant_gain"] is False
    assert slight["gain_ci"][0] == 0.0 and slight["gain_p"] == 1.0
    # emergence: 16 examples no single model solves; strong solves 6 of them → Wilson(6, 16)
    assert (strong["emerged"], strong["unsolved"]) == (6, 16)
    assert strong["emergence_ci"] == pytest.approx([0.1848, 0.6136], abs=5e-4)
    stats = headline(list(rows.values()))
    assert (stats["significant_wins"], stats["wins"], stats["pairs"]) == (1, 2, 2)
    assert stats["win_share"] == 1.0 and stats["significant_win_share"] == 0.5
    assert stats["methods"]["strong"]["significant_wins"] == 1
    assert stats["methods"]["slight"]["significant_wins"] == 0 and stats["methods"]["slight"]["wins"] == 1
    assert stats["largest_gain_ci"] == strong["gain_ci"] and stats["largest_gain_p"] == 2 / 64
    # emergence pooled over both methods: (6 + 1) of (16 + 16)
    assert stats["emergence_ci"] == pytest.approx(list(wilson_interval(7, 32)))


def test_report_files_show_the_intervals_and_the_counted_headline(tmp_path, monkeypatch):
    from moco_lit.report import command as report  # write_report reads its runs there

    monkeypatch.setattr(report, "load_runs", lambda sources: _paired_pool())
    files = write_report(["unused"], tmp_path / "out", title="t")
    markdown = files["md"].read_text()
    assert (
        "in 1 of 2 (method, setting) pairs (50.0%) with the paired 95% CI of the gain above zero (p < 0.05)"
        in markdown
    )
    assert "any gain above zero: 2 of 2 (100.0%)" in markdown
    assert "Largest gain: +0.150 [+0.050, " in markdown and "], p = 0.031 (strong on b)." in markdown
    assert "| b | strong | 0.750 | [0.598, 0.858] | 0.600 (m2) | +0.150 | [+0.050, " in markdown
    assert "| 0.031 | 6/16 [18.5%, 61.4%] |" in markdown
    assert "[0.598, 0.858]" in files["html"].read_text()
    rows = json.loads(files["json"].read_text())["rows"]
    assert {r["method"]: r["significant_gain"] for r in rows} == {
        "single_model": False,
        "strong": True,
        "slight": False,
    }
    # the gain heatmap stars the gain whose interval lies above zero
    assert heatmap_labels(rows, "gain") == [["+0.025"], ["+0.150*"]]  # slight, strong
    assert heatmap_labels(rows, "score") == [["0.600"], ["0.625"], ["0.750"]]
    narrower = write_report(["unused"], tmp_path / "out90", title="t", confidence=0.9)
    assert "90% CI" in narrower["md"].read_text()


def test_report_refuses_a_confidence_outside_zero_one(swept: Path, capsys):
    from moco_lit.cli import main

    assert main(["report", "rep", "--run_dir", str(swept), "--confidence", "95"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "confidence must lie strictly between 0 and 1" in err[0]


def test_leaderboard_intervals_equal_the_run_folders_and_fit_a_terminal(swept: Path):
    from moco_lit.report import find_run_folders, format_leaderboard, leaderboard_rows

    rows = leaderboard_rows(find_run_folders(swept / "quickstart_multiply"))
    for row in rows:
        if not row["method"].startswith("single: "):
            assert row["score_ci"] == _metrics(row["run"])["score_ci"]
        else:
            name = row["method"].removeprefix("single: ")
            assert row["score_ci"] == _metrics(row["run"])[f"score_ci/{name}"]
    # the quickstart's widest table: its longest label, three skills, the interval column
    wide = [
        {
            "method": "trained_router (router=encoder)",
            "score": 0.972,
            "score_ci": [0.904, 0.992],
            "groups": {"multiply": 1.0, "next_letter": 1.0, "reverse": 0.917},
            "calls_per_example": 10.0,
            "tokens_per_example": 1725.0,
        }
    ]
    table = format_leaderboard(wide, "quickstart leaderboard (test split, 35 s)")
    assert max(map(len, table.splitlines())) <= 110
    assert "95% CI" in table and "0.972  [0.90, 0.99]" in table
