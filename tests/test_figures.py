"""Report figures: subset columns in the score heatmap, distinct styles and the Pareto frontier in
the cost–quality plot, axes that do not magnify one point, and no text outside its figure."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from moco_lit import figures
from moco_lit.data.synthetic import synthetic_benchmark
from moco_lit.report import Run, compare
from tests.report_helpers import make_run

SKILLS = ("multiply", "next_letter", "reverse")
LONG = "majority_vote (tie=dev-based, answer_grouping=value)"


def _run(method: str, scores: dict, label: str | None = None, single: dict | None = None, tokens=0.0) -> Run:
    return make_run(
        method, scores, single=single, benchmark="quickstart", specs=SKILLS, label=label, level="text",
        tokens_per_example=tokens, calls_per_example=1.0, path=f"/nonexistent/{label or method}",
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def quickstart_runs() -> list[Run]:
    """Three specialists (each right on its own skill only), a router and a long-named vote."""
    skill_of = {r["id"]: r["skill"] for r in synthetic_benchmark("quickstart").test}
    specialist = {s: {key: float(skill == s) for key, skill in skill_of.items()} for s in SKILLS}
    router = {key: float(skill != "reverse" or key.endswith("0")) for key, skill in skill_of.items()}
    return [
        _run("single_model", specialist["multiply"], single=specialist, tokens=51.0),
        _run("trained_router", router, "trained_router (router=encoder)", tokens=17.0),
        _run("majority_vote", specialist["reverse"], LONG, tokens=1700.0),
    ]


def test_score_heatmap_has_a_column_per_skill_and_a_row_per_single_model(quickstart_runs):
    rows = compare(quickstart_runs)
    labels, columns, matrix = figures.score_table(quickstart_runs, rows)
    assert columns == ["overall", *SKILLS]
    assert labels == [*(f"single: {s}" for s in SKILLS), "trained_router (router=encoder)", LONG]
    cells = dict(zip(labels, matrix))
    assert cells["single: next_letter"] == [pytest.approx(1 / 3), 0.0, 1.0, 0.0]
    reverse_right = 1 / 10  # ids reverse-test-0, -10, -20, ... of 60
    assert cells["trained_router (router=encoder)"][1:] == [1.0, 1.0, pytest.approx(reverse_right)]
    assert cells[LONG][0] == pytest.approx(1 / 3)
    fig = figures.score_heatmap(quickstart_runs, rows)
    assert figures.texts_outside(fig) == []
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == labels  # whole labels, none cut


def test_subsets_come_from_local_data_only(tmp_path, monkeypatch):
    field, subsets = figures.example_subsets("quickstart")
    assert field == "skill" and set(subsets.values()) == set(SKILLS)
    assert figures.example_subsets("quickstart_multiply") == (None, {})  # one skill: no subsets
    records = [
        {"id": str(i), "split": "test", "input": "q", "output": "a", "category": "abc"[i % 3]}
        for i in range(6)
    ]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert figures.example_subsets("mine", {"data_dir": str(tmp_path), "task_type": "exact_match"}) == (
        "category",
        {str(i): "abc"[i % 3] for i in range(6)},
    )

    def download(*args, **kwargs):
        raise AssertionError("a report must not download a benchmark")

    monkeypatch.setattr("moco_lit.data.sources.modelco_cache_dir", lambda: tmp_path / "empty")
    monkeypatch.setattr("moco_lit.data.sources.load_benchmark", download)
    assert figures.example_subsets("gsm8k") == (None, {})


def test_gain_heatmap_has_subset_columns_largest_gain_first(quickstart_runs):
    rows = compare(quickstart_runs)
    methods, columns, matrix, text = figures.gain_table(quickstart_runs, rows)
    assert methods == ["trained_router (router=encoder)", LONG] and columns == ["overall", *SKILLS]
    # against the best single model (the multiply specialist: all tie at 1/3, the first counts)
    assert matrix[0] == [pytest.approx(2.1 / 3 - 1 / 3), 0.0, 1.0, pytest.approx(0.1)]
    assert text[0][0] == "+0.367*" and text[1] == ["+0.000", "-1.00", "+0.00", "+1.00"]
    fig = figures.gain_heatmap(rows, quickstart_runs)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == methods
    assert figures.texts_outside(fig) == []
    assert figures.gain_table([], rows)[1] == ["overall"]  # without the runs: no subset columns


def test_pareto_frontier_keeps_only_runs_no_cheaper_run_beats():
    points = [(10, 0.3), (10, 0.5), (20, 0.4), (30, 0.7), (40, 0.7), (5, 0.1)]
    assert figures.pareto_frontier(points) == [(5, 0.1), (10, 0.5), (30, 0.7)]


def test_cost_quality_plot_reads_with_twenty_methods():
    labels = [f"method_{i:02d} (setting={i})" for i in range(18)] + ["single: a", "single: b"]
    points = {
        "gsm8k": [
            (label, 10.0 * 1.4**i, 0.1 + 0.04 * i, [0.05 + 0.04 * i, 0.2 + 0.04 * i])
            for i, label in enumerate(labels)
        ]
    }
    fig = figures.cost_quality(points)
    ax = fig.axes[0]
    styles = {
        (
            tuple(line.get_color()) if not isinstance(line.get_color(), str) else line.get_color(),
            line.get_marker(),
        )
        for container in ax.containers
        for line in [container.lines[0]]
    }
    assert len(ax.containers) == 20 and len(styles) == 20  # a colour-and-marker pair each
    assert all(container.has_yerr for container in ax.containers)  # every point has its interval
    assert ax.get_xscale() == "log"  # 10 to 10 × 1.4¹⁹ ≈ 6000 tokens
    legend = fig.legends[0]
    assert len(legend.get_texts()) == 21 and legend.get_texts()[-1].get_text() == "Pareto frontier"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    frontier = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(frontier) == 1 and len(frontier[0].get_xdata()) == 20  # each point costs more and scores more
    assert figures.texts_outside(fig) == []


def test_one_point_is_not_magnified_and_close_costs_stay_linear():
    fig = figures.cost_quality({"mmlu": [("single: a", 100.0, 0.15, None), ("moa", 300.0, 0.152, None)]})
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert high - low >= figures.MIN_SCORE_SPAN and low <= 0.15 <= 0.152 <= high
    assert ax.get_xscale() == "linear"
    assert figures.texts_outside(fig) == []
