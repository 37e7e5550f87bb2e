"""The report's figures: score and gain heatmaps, and a cost–quality scatter per benchmark.

Score heatmap: methods (and each single model of the pool) × benchmarks, and × the subsets of a
benchmark whose records carry one (the quickstart's ``skill``, a ``category`` field), so the axis
along which collaborators differ is visible. Gain heatmap: gain over the best single model per
setting, starred where it counts. Cost–quality: tokens per example against score with its
interval, one colour-and-marker pair per method, the legend outside the data, the Pareto frontier
(no cheaper run scores higher) drawn, and a log cost axis when costs span decades.

Figures are sized from their labels and laid out by matplotlib's constrained layout;
``texts_outside`` lists any text that still falls outside its figure (the tests call it).
"""

from __future__ import annotations

import math
from pathlib import Path

from moco_lit.data import sources
from moco_lit.data.registry import BENCHMARKS
from moco_lit.data.synthetic import synthetic_names
from moco_lit.errors import UserError
from moco_lit.evaluation.stats import CONFIDENCE, score_interval
from moco_lit.results import Run, best_single
from moco_lit.runs import RunFolder

SUBSET_FIELDS = ("skill", "category", "subject", "subset")
"""Record fields that split a benchmark into subsets, in order of preference."""
MAX_SUBSETS = 12
"""A field with more distinct values than this is a label, not a subset worth a column each."""
LOG_COST_SPAN = 20.0
"""The cost axis turns logarithmic when the largest cost is this many times the smallest."""
MIN_SCORE_SPAN = 0.2
"""The score axis spans at least this much, so one point with a tight interval is not magnified."""
MAX_FRONTIER_LABELS = 8
"""Runs on the Pareto frontier are named beside their points up to this many (the legend has all)."""
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise UserError("the report's figures need matplotlib: pip install 'moco-lit[report]'") from err
    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


# -- subsets of a benchmark -----------------------------------------------------------------------


def example_subsets(benchmark: str, data: dict | None = None) -> tuple[str | None, dict[str, str]]:
    """(field, example id → subset) for a benchmark whose test records carry a subset field.

    Only data that is on this machine is read (synthetic benchmarks, files, ``data_dir``, MoCo's
    cached files): a report never downloads. (None, {}) when there is no such field.
    """
    records = _offline_test_records(benchmark, data or {})
    for name in SUBSET_FIELDS:
        values = [r.get(name) for r in records]
        distinct = {v for v in values if isinstance(v, str) and v}
        if records and all(isinstance(v, str) and v for v in values) and 2 <= len(distinct) <= MAX_SUBSETS:
            return name, {str(r["id"]): str(r[name]) for r in records}
    return None, {}


def _offline_test_records(benchmark: str, data: dict) -> list[dict]:
    info = BENCHMARKS.get(benchmark)
    local = (
        benchmark in synthetic_names()
        or Path(benchmark).expanduser().is_file()
        or data.get("data_dir")
        or (info is not None and (sources.modelco_cache_dir() / info.moco_file).is_file())
    )
    if not local:
        return []
    try:
        loaded = sources.load_benchmark(
            benchmark, data.get("data_dir"), data.get("task_type"), data.get("synthetic_seed") or 0
        )
    except (UserError, OSError, ValueError):
        return []  # the data moved since the run: the figure goes without subsets
    return list(loaded.test)


def _subsets_by_benchmark(runs: list[Run]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for run in runs:
        if run.benchmark in found or run.source != "run":
            continue
        data = (RunFolder(run.path).read_config() or {}).get("data") or {}
        found[run.benchmark] = example_subsets(run.benchmark, data)[1]
    return found


# -- data behind the figures --------------------------------------------------------------------


def _mean(scores: dict[str, float | None], ids: set[str] | None = None) -> float | None:
    values = [v for k, v in scores.items() if v is not None and (ids is None or k in ids)]
    return sum(values) / len(values) if values else None


def _single_name(run: Run, spec: str) -> str:
    return run.names[run.specs.index(spec)] if spec in run.specs and run.names else spec


def score_table(runs: list[Run], rows: list[dict]) -> tuple[list[str], list[str], list[list[float | None]]]:
    """(row labels, column labels, matrix) of the score heatmap.

    Rows: each single model of a pool (``single: NAME``), then each method, best mean first.
    Columns: per setting its overall score, then one per subset of its benchmark.
    """
    by_path = {run.path: run for run in runs}
    subsets = _subsets_by_benchmark([by_path[r["run"]] for r in rows if r["run"] in by_path])
    settings = sorted({r["setting"] for r in rows})
    columns = _columns(rows, subsets)
    cells: dict[tuple[str, str], dict[str, float | None]] = {}
    for row in rows:
        run = by_path.get(row["run"])
        if run is not None and run.is_single and run.single:
            for spec, scores in run.single.items():
                variant = run.label.removeprefix("single_model")  # " (temperature=0.2)" of a variant
                cells[(f"single: {_single_name(run, spec)}{variant}", row["setting"])] = scores
        elif run is not None:
            cells[(row["method"], row["setting"])] = run.scores
    singles = sorted({label for label, _ in cells if label.startswith("single: ")})
    methods = {label for label, _ in cells if not label.startswith("single: ")}

    def value(label: str, column: tuple[str, str | None]) -> float | None:
        setting, group = column
        scores = cells.get((label, setting))
        if scores is None:
            return None
        if group is None:
            return _mean(scores)
        benchmark = next(r["benchmark"] for r in rows if r["setting"] == setting)
        ids = {key for key, g in subsets.get(benchmark, {}).items() if g == group}
        return _mean(scores, ids)

    def overall(label: str) -> float:
        values = [value(label, (s, None)) for s in settings]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else -1.0

    ordered = singles + sorted(methods, key=lambda m: (-overall(m), m))
    return ordered, _column_labels(columns), [[value(label, c) for c in columns] for label in ordered]


def cost_quality_series(
    runs: list[Run], rows: list[dict], confidence: float = CONFIDENCE
) -> dict[str, list[tuple[str, float, float, list[float] | None]]]:
    """Per benchmark: (label, tokens per example, score, [low, high]) of each compared run and single model."""
    by_path = {run.path: run for run in runs}
    points: dict[str, list] = {}
    for row in rows:
        run = by_path.get(row["run"])
        if run is None:
            continue
        if run.is_single and run.single:
            share = run.per_example(run.tokens) / max(len(run.single), 1)
            for spec, scores in run.single.items():
                values = [v for v in scores.values() if v is not None]
                if values:
                    interval = score_interval(values, confidence)
                    bounds = None if interval is None else [interval.low, interval.high]
                    label = f"single: {_single_name(run, spec)}{run.label.removeprefix('single_model')}"
                    points.setdefault(row["benchmark"], []).append(
                        (label, share, sum(values) / len(values), bounds)
                    )
        elif row["score"] is not None:
            points.setdefault(row["benchmark"], []).append(
                (row["method"], row["tokens_per_example"], row["score"], row.get("score_ci"))
            )
    return points


def pareto_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, score) points no other point beats on both (cheaper or as cheap, and higher), by cost."""
    frontier: list[tuple[float, float]] = []
    for cost, score in sorted(points, key=lambda p: (p[0], -p[1])):
        if not frontier or score > frontier[-1][1]:
            frontier.append((cost, score))
    return frontier


# -- drawing ------------------------------------------------------------------------------------

CHAR_WIDTH = 0.075
"""Inches per character of 8-point text, a little over the average so labels are never cut."""


def _text_colour(rgba: tuple) -> str:
    red, green, blue = rgba[:3]
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def draw_heatmap(
    row_labels: list[str],
    column_labels: list[str],
    matrix: list[list[float | None]],
    cell_text: list[list[str | None]],
    title: str,
    diverging: bool = False,
    separators: list[int] = (),
):
    """A labelled heatmap figure: column labels on top, each cell's number in a colour that reads on it."""
    if not row_labels or not column_labels:
        return None
    plt = _pyplot()
    data = [[math.nan if v is None else v for v in line] for line in matrix]
    finite = [v for line in data for v in line if not math.isnan(v)] or [0.0]
    label_width = CHAR_WIDTH * max(map(len, row_labels)) + 0.3
    header_height = 0.6 * CHAR_WIDTH * max(map(len, column_labels)) + 0.5  # labels at 45 degrees
    cell_width = max(0.62, 0.07 * max((len(t) for line in cell_text for t in line if t), default=4))
    width = max(4.0, label_width + cell_width * len(column_labels) + 1.3)
    height = header_height + 0.3 * len(row_labels) + 0.6 + 0.15 * title.count("\n")
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    if diverging:
        bound = max(map(abs, finite)) or 1.0
        image = ax.imshow(data, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    else:
        low, high = (0.0, 1.0) if 0 <= min(finite) and max(finite) <= 1 else (min(finite), max(finite))
        image = ax.imshow(data, cmap="viridis", vmin=low, vmax=high, aspect="auto")
    for i, line in enumerate(cell_text):
        for j, text in enumerate(line):
            if text is not None:
                colour = _text_colour(image.cmap(image.norm(data[i][j])))
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    ax.xaxis.tick_top()
    ax.set_xticks(range(len(column_labels)), column_labels, rotation=45, ha="left", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.tick_params(length=0)
    for index in separators:  # between the single models and the methods, or between settings
        line = ax.axhline if index > 0 else ax.axvline
        line(abs(index) - 0.5, color="white", linewidth=2)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, aspect=30)
    return fig


def save(fig, path: Path) -> Path | None:
    """Write ``fig`` (None: nothing to draw) as a PNG and free it."""
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def score_heatmap(runs: list[Run], rows: list[dict]):
    """Score of every single model and method, per setting and per subset of its benchmark."""
    labels, columns, matrix = score_table(runs, rows)
    text = [[None if v is None else f"{v:.2f}" for v in line] for line in matrix]
    singles = sum(label.startswith("single: ") for label in labels)
    settings = sorted({r["setting"] for r in rows})
    title = "score" if len(settings) > 1 else f"score on {settings[0]}" if settings else "score"
    vertical = [-j for j, label in enumerate(columns) if j and label in settings]
    separators = ([singles] if 0 < singles < len(labels) else []) + vertical
    return draw_heatmap(labels, columns, matrix, text, title, separators=separators)


def _columns(rows: list[dict], subsets: dict[str, dict[str, str]]) -> list[tuple[str, str | None]]:
    """Per setting (sorted): (setting, None) for its overall value, then (setting, subset) per subset."""
    columns: list[tuple[str, str | None]] = []
    for setting in sorted({r["setting"] for r in rows}):
        benchmark = next(r["benchmark"] for r in rows if r["setting"] == setting)
        columns += [
            (setting, None),
            *((setting, g) for g in sorted(set(subsets.get(benchmark, {}).values()))),
        ]
    return columns


def _column_labels(columns: list[tuple[str, str | None]]) -> list[str]:
    many = len({setting for setting, _ in columns}) > 1
    return [(setting if many else "overall") if group is None else group for setting, group in columns]


def gain_table(
    runs: list[Run], rows: list[dict]
) -> tuple[list[str], list[str], list[list[float | None]], list[list[str | None]]]:
    """(methods, column labels, matrix, cell texts) of the gain heatmap, largest mean gain first.

    Per setting: the report row's gain, starred where it counts; then per subset of its benchmark
    the mean per-example difference from the same best single model, on that subset's examples.
    """
    by_path = {run.path: run for run in runs}
    shown = [r for r in rows if r["method"] != "single_model" and r["gain"] is not None]
    subsets = _subsets_by_benchmark([by_path[r["run"]] for r in shown if r["run"] in by_path])
    columns = _columns(shown, subsets)
    singles = [run for run in runs if run.is_single]
    cells: dict[tuple[str, tuple], tuple[float, str]] = {}
    for row in shown:
        star = "*" if row.get("significant_gain") else ""
        cells[(row["method"], (row["setting"], None))] = (row["gain"], f"{row['gain']:+.3f}{star}")
        run = by_path.get(row["run"])
        baseline = None if run is None else best_single(run, singles)
        for setting, group in columns if baseline is not None else ():
            if setting != row["setting"] or group is None:
                continue
            ids = [key for key, g in subsets.get(row["benchmark"], {}).items() if g == group]
            pairs = [(run.scores.get(key), baseline.scores.get(key)) for key in ids]
            differences = [a - b for a, b in pairs if a is not None and b is not None]
            if differences:
                value = sum(differences) / len(differences)
                cells[(row["method"], (setting, group))] = (value, f"{value:+.2f}")

    def mean_gain(method: str) -> float:
        values = [cells[(method, c)][0] for c in columns if c[1] is None and (method, c) in cells]
        return sum(values) / len(values) if values else -math.inf

    methods = sorted({r["method"] for r in shown}, key=lambda m: (-mean_gain(m), m))
    matrix = [[cells[(m, c)][0] if (m, c) in cells else None for c in columns] for m in methods]
    text = [[cells[(m, c)][1] if (m, c) in cells else None for c in columns] for m in methods]
    return methods, _column_labels(columns), matrix, text


def gain_heatmap(rows: list[dict], runs: list[Run] = ()):
    """Gain over the best single model per method, setting and subset; starred where it counts."""
    methods, columns, matrix, text = gain_table(list(runs), rows)
    confidence = next((r["confidence"] for r in rows if r.get("confidence")), CONFIDENCE)
    title = f"gain over the best single model\n*: paired CI above 0, p < {1 - confidence:.3g}"
    settings = sorted({r["setting"] for r in rows})
    if len(columns) > len({r["setting"] for r in rows if r["method"] != "single_model"}):
        title += "\nsubsets: against the same model on their examples"
    vertical = [-j for j, label in enumerate(columns) if j and label in settings]
    return draw_heatmap(methods, columns, matrix, text, title, diverging=True, separators=vertical)


def _styles(labels: list[str]) -> dict[str, tuple[str, str]]:
    """A distinct (colour, marker) pair per label: colours cycle fast, markers slowly."""
    pairs = [(c, m) for m in MARKERS for c in COLOURS]
    return {label: pairs[index % len(pairs)] for index, label in enumerate(labels)}


def cost_quality(points: dict[str, list[tuple[str, float, float, list[float] | None]]]):
    """Tokens per example against score per benchmark, with intervals and the Pareto frontier."""
    if not points:
        return None
    plt = _pyplot()
    benchmarks = sorted(points)
    labels = list(dict.fromkeys(label for b in benchmarks for label, *_ in sorted(points[b])))
    labels = sorted(labels, key=lambda label: (not label.startswith("single: "), label))
    styles = _styles(labels)
    legend_width = CHAR_WIDTH * max(map(len, labels)) + 0.6
    rows_of_legend = math.ceil(len(labels) / max(1, int(6.5 // 0.25)))
    fig, axes = plt.subplots(
        1,
        len(benchmarks),
        figsize=(4.2 * len(benchmarks) + legend_width * rows_of_legend, max(3.6, 0.2 * len(labels) + 1.2)),
        squeeze=False,
        layout="constrained",
    )
    handles = {}
    for ax, benchmark in zip(axes[0], benchmarks):
        shown = points[benchmark]
        costs = [cost for _, cost, _, _ in shown]
        positive = [c for c in costs if c > 0]
        log_axis = len(positive) == len(costs) and max(positive) / min(positive) >= LOG_COST_SPAN
        for label, cost, score, bounds in shown:
            colour, marker = styles[label]
            yerr = None if not bounds else [[max(score - bounds[0], 0.0)], [max(bounds[1] - score, 0.0)]]
            handle = ax.errorbar(
                [cost],
                [score],
                yerr=yerr,
                fmt=marker,
                color=colour,
                markersize=6,
                markerfacecolor="white" if label.startswith("single: ") else colour,
                elinewidth=0.8,
                capsize=2,
                alpha=0.9,
            )
            handles.setdefault(label, handle)
        frontier = pareto_frontier([(cost, score) for _, cost, score, _ in shown])
        if len(frontier) > 1:
            xs, ys = zip(*frontier)
            handles["Pareto frontier"] = ax.step(
                xs, ys, where="post", color="black", linestyle="--", linewidth=1
            )[0]
            # the frontier's runs are named where they are, unless there are too many to read
            for cost, score in frontier if len(frontier) <= MAX_FRONTIER_LABELS else ():
                names = [label for label, c, s, _ in shown if (c, s) == (cost, score)]
                more = f" (+{len(names) - 1})" if len(names) > 1 else ""
                ax.annotate(
                    _short(min(names, key=len)) + more,
                    (cost, score),
                    xytext=(5, -3),
                    textcoords="offset points",
                    fontsize=7,
                    va="top",
                    annotation_clip=True,
                )
        if log_axis:
            ax.set_xscale("log")
        ax.set_ylim(*_score_limits([(score, bounds) for _, _, score, bounds in shown]))
        ax.set_xlabel("tokens per example" + (" (log scale)" if log_axis else ""), fontsize=9)
        ax.set_ylabel("score", fontsize=9)
        ax.set_title(benchmark, fontsize=10)
        ax.grid(alpha=0.3)
    fig.legend(
        [handles[label] for label in [*labels, "Pareto frontier"] if label in handles],
        [label for label in [*labels, "Pareto frontier"] if label in handles],
        loc="outside right upper",
        fontsize=7,
        ncols=rows_of_legend,
        title="hollow: single models",
        title_fontsize=7,
    )
    return fig


def _short(label: str, width: int = 24) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _score_limits(points: list[tuple[float, list[float] | None]]) -> tuple[float, float]:
    """Limits that hold every interval, span at least ``MIN_SCORE_SPAN`` and stay near [0, 1]."""
    lows = [bounds[0] if bounds else score for score, bounds in points]
    highs = [bounds[1] if bounds else score for score, bounds in points]
    low, high = min(lows), max(highs)
    if high - low < MIN_SCORE_SPAN:
        middle = (low + high) / 2
        low, high = middle - MIN_SCORE_SPAN / 2, middle + MIN_SCORE_SPAN / 2
    pad = 0.05 * (high - low)
    low, high = low - pad, high + pad
    unit = all(0 <= v <= 1 for v in lows + highs)
    if unit and low < 0:
        low, high = -pad, max(high - low - pad, MIN_SCORE_SPAN + pad)
    if unit and high > 1:
        low, high = min(low, 1 + pad - (high - low)), 1 + pad
    return low, high


def texts_outside(fig) -> list[str]:
    """The visible texts of a figure that do not lie wholly inside it (empty when nothing is cut)."""
    fig.canvas.draw()  # runs the layout
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    undrawn = set()  # labels of ticks beyond an axis' limits exist but are not drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - 1e-9 * (high - low) <= tick.get_loc() <= high + 1e-9 * (high - low):
                    undrawn |= {id(tick.label1), id(tick.label2)}
    outside = []
    for text in fig.findobj(
        lambda artist: hasattr(artist, "get_text") and hasattr(artist, "get_window_extent")
    ):
        if not text.get_visible() or not text.get_text() or id(text) in undrawn:
            continue
        extent = text.get_window_extent(renderer)
        if (
            extent.x0 < box.x0 - 1
            or extent.y0 < box.y0 - 1
            or extent.x1 > box.x1 + 1
            or extent.y1 > box.y1 + 1
        ):
            outside.append(text.get_text())
    return outside
