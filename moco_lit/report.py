"""Leaderboards and comparison reports from finished run folders, no logger needed.

``leaderboard_rows``/``format_leaderboard``: one row per method run (and per collaborator of a
``single_model`` run) with the overall score, the score per group of examples (a record field such
as ``skill``) and the cost in model calls and tokens per example.

``write_report`` (``python -m moco_lit report runs/``): every run of a runs root, a sweep or a set
of MoCo logs compared per (model pool, benchmark) setting against the pool's best single model:
``report.md``, a self-contained ``report.html``, PNG heatmaps of score and of gain, a cost–quality
scatter per benchmark, and MoCo's headline statistics (win share, largest gain, collaborative
emergence). ``report.json`` holds every number shown.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from moco_lit import figures as draw
from moco_lit.convert import is_moco_log, runs_from_moco_logs
from moco_lit.data import load_benchmark
from moco_lit.errors import UserError
from moco_lit.evaluation.stats import (
    CONFIDENCE,
    Interval,
    check_confidence,
    score_interval,
    wilson_interval,
)
from moco_lit.export import check_formats, log_to_wandb, write_exports
from moco_lit.results import (
    Baseline,
    Run,
    best_single,
    compare_with_best_single,
    find_run_folders,
    gain_fields,
    gain_over_best_single,
    method_label,
    own_scores,
    paired_or_none,
    run_from_folder,
    spec_key,
    summary_path,
)
from moco_lit.runs import RunFolder
from moco_lit.seeds import merge_seeds, seed_fields, uncertainty_note, with_seed_columns
from moco_lit.variants import separate as separate_variants

# the run readers and the baseline live in moco_lit.results; they are named here as well, so a
# report and what it compares are imported from one place
__all__ = [
    "SOLVED_AT",
    "Baseline",
    "Run",
    "best_single",
    "check_one_scorer",
    "compare",
    "compare_with_best_single",
    "emergence",
    "find_run_folders",
    "format_leaderboard",
    "gain_over_best_single",
    "headline",
    "heatmap_data",
    "heatmap_labels",
    "leaderboard_rows",
    "load_runs",
    "main",
    "print_leaderboard",
    "resolve_target",
    "run_from_folder",
    "spec_key",
    "write_leaderboard_json",
    "write_report",
]


def _groups(benchmark: str, group_field: str | None, config: dict) -> dict[str, str]:
    if not group_field:
        return {}
    data = (config or {}).get("data") or {}
    loaded = load_benchmark(
        benchmark, data.get("data_dir"), data.get("task_type"), data.get("synthetic_seed") or 0
    )
    return {str(r["id"]): str(r.get(group_field, "")) for r in loaded.test}


def leaderboard_rows(run_folders: list[str | Path], group_field: str | None = None) -> list[dict]:
    """One row per method run (and per collaborator of single-model runs), best first."""
    rows = []
    for path in map(Path, run_folders):
        folder = RunFolder(path)
        metrics = folder.read_metrics()
        if metrics is None:
            continue
        config = folder.read_config()
        records = list(folder.load_predictions().values())
        groups = _groups(metrics["benchmark"], group_field, config)
        n = max(len(records), 1)
        cost = {"calls": metrics.get("cost/calls", 0) / n, "tokens": metrics.get("cost/tokens", 0) / n}
        if metrics["method"] == "single_model":
            for name in metrics["collaborators"]:
                scores = [(r["id"], (r.get("details") or {}).get("scores", {}).get(name)) for r in records]
                calls = cost["calls"] / len(metrics["collaborators"])
                tokens = cost["tokens"] / len(metrics["collaborators"])
                rows.append(_row(f"single: {name}", scores, groups, calls, tokens, path))
        else:
            scores = [(r["id"], r.get("score")) for r in records]
            rows.append(
                _row(method_label(config, metrics), scores, groups, cost["calls"], cost["tokens"], path)
            )
    return sorted(rows, key=lambda row: -(row["score"] if row["score"] is not None else -1))


def _row(label: str, scores: list, groups: dict[str, str], calls: float, tokens: float, path: Path) -> dict:
    by_group: dict[str, list[float]] = defaultdict(list)
    values = []
    for example_id, score in scores:
        if score is None:
            continue
        values.append(score)
        if groups:
            by_group[groups.get(str(example_id), "")].append(score)
    return {
        "method": label,
        "score": sum(values) / len(values) if values else None,
        **_interval_fields(score_interval(values)),
        "groups": {g: sum(v) / len(v) for g, v in sorted(by_group.items())},
        "calls_per_example": calls,
        "tokens_per_example": tokens,
        "run": str(path),
    }


def _interval_fields(interval: Interval | None) -> dict:
    """A row's ``score_ci`` ([low, high]) and ``ci_method``, None where nothing was scored."""
    if interval is None:
        return {"score_ci": None, "ci_method": None}
    return {"score_ci": [interval.low, interval.high], "ci_method": interval.method}


def _ci_header(confidence: float = CONFIDENCE) -> str:
    return f"{100 * confidence:g}% CI"


def format_leaderboard(rows: list[dict], title: str = "leaderboard") -> str:
    """A terminal table: score per group, overall with its interval over examples, cost."""
    groups = sorted({g for row in rows for g in row["groups"]})
    header = ["method", *groups, "overall", _ci_header(), "calls/ex", "tokens/ex"]
    table = [header]
    for row in rows:
        cells = [row["method"]]
        cells += [f"{row['groups'].get(g, float('nan')):.3f}" for g in groups]
        interval = row.get("score_ci")
        cells += [
            "-" if row["score"] is None else f"{row['score']:.3f}",
            "-" if not interval else f"[{interval[0]:.2f}, {interval[1]:.2f}]",
            f"{row['calls_per_example']:.1f}",
            f"{row['tokens_per_example']:.0f}",
        ]
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [title, ""]
    for index, cells in enumerate(table):
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_leaderboard(rows: list[dict], title: str = "leaderboard") -> None:
    print(format_leaderboard(rows, title))


def write_leaderboard_json(rows: list[dict], path: str | Path) -> None:
    Path(path).write_text(json.dumps(rows, indent=2) + "\n")


# -- comparing collaborations: runs, baselines, headline statistics ---------------------------
#
# A *setting* is one (model pool, benchmark) pair, as in MoCo's paper. A collaboration's baseline
# is the best single model of its own pool on the same examples, taken from single_model runs
# (every collaborator's per-example score is in their records), so the report needs run folders
# only, and compares runs made on different machines.

SOLVED_AT = 0.5
"""An example counts as solved when its score reaches this (scores of scored task types lie in [0, 1])."""


def load_runs(sources: list[str | Path], pool_names: dict[str, str] | None = None) -> list[Run]:
    """Runs from run folders, folders of them, sweep summaries and MoCo log files (or folders of logs)."""
    runs: list[Run] = []
    moco_logs: list[Path] = []
    labels: dict[str, str] = {}
    for source in map(Path, sources):
        if source.is_file() and _is_sweep_summary(source):
            summary = json.loads(source.read_text())
            cells = [c for c in summary["cells"] if c.get("run_folder")]
            pool_names = {**(pool_names or {}), **{c["run_folder"]: c.get("pool") for c in cells}}
            labels |= {c["run_folder"]: c["label"] for c in cells if c.get("label")}  # the sweep's names
            folders = [Path(c["run_folder"]) for c in cells]
        elif source.is_file():
            if is_moco_log(source):
                moco_logs.append(source)
                continue
            folders = [source.parent] if source.name == "metrics.json" else []
        elif source.is_dir():
            folders = find_run_folders(source)
            moco_logs += [p for p in sorted(source.glob("*.json")) if is_moco_log(p)]
        else:
            raise UserError(f"{source} does not exist; give run folders, a runs/ root, a sweep or MoCo logs")
        runs += [run for run in map(run_from_folder, folders) if run is not None]
    for run in runs_from_moco_logs(moco_logs):
        run.scoring = "moco"  # MoCo's logs carry the scores MoCo's own scorer gave
        runs.append(run)
    for run in runs:
        run.pool_name = (pool_names or {}).get(run.path) or run.pool_name
        run.label = labels.get(run.path, run.label)
    return runs


def _is_sweep_summary(path: Path) -> bool:
    if path.suffix != ".json":
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "cells" in data and "sweep" in data


def emergence(
    run_scores: dict[str, float | None],
    single_scores: list[dict[str, float | None]],
    solved_at: float = SOLVED_AT,
) -> tuple[int, int]:
    """(examples no single collaborator solves but the collaboration does, examples no single one solves)."""

    def solved(value: float | None) -> bool:
        return value is not None and value >= solved_at

    unsolved = [key for key in run_scores if not any(solved(s.get(key)) for s in single_scores)]
    emerged = [key for key in unsolved if solved(run_scores[key])]
    return len(emerged), len(unsolved)


def check_one_scorer(runs: list[Run]) -> None:
    """Refuse to compare runs of one benchmark that different scorers scored (``--scoring``)."""
    for benchmark in sorted({run.benchmark for run in runs}):
        counts: dict[str, int] = {}
        for run in runs:
            if run.benchmark == benchmark:
                counts[run.scoring] = counts.get(run.scoring, 0) + 1
        if len(counts) > 1:
            found = ", ".join(f"{n} by {scoring}" for scoring, n in sorted(counts.items()))
            raise UserError(
                f"runs of {benchmark} were scored by different scorers ({found}); a table compares one "
                "scorer: rerun or rescore them alike (--scoring moco or moco_lit), or report them apart"
            )


def compare(runs: list[Run], solved_at: float = SOLVED_AT, confidence: float = CONFIDENCE) -> list[dict]:
    """One row per run: setting, score, best single model, gain, cost, collaborative emergence.

    Each score has its interval over the run's examples (``score_ci``); the gain has the paired
    interval and p-value of the per-example differences from the best single model, matched by
    example id (``gain_ci``, ``gain_p``, ``gain_test``; ``significant_gain`` when the interval
    lies above zero and p < 1 − confidence), and emergence its Wilson interval (``emergence_ci``).
    """
    singles = [run for run in runs if run.is_single]
    multi_pool = len({run.pool for run in runs}) > 1
    rows = []
    for run in runs:
        baseline = best_single(run, singles)
        emerged = unsolved = None
        if baseline is not None and not run.is_single:
            emerged, unsolved = emergence(run.scores, baseline.per_model, solved_at)
        own = own_scores(run)
        interval = score_interval(list(own.values()), confidence)
        paired = None
        if baseline is not None and run.score is not None:
            paired = paired_or_none(own, baseline.scores, confidence)
        pool = run.pool_name or "+".join(sorted(run.names or run.specs))  # a set: order does not split it
        rows.append(
            {
                "method": run.label,
                "level": run.level,
                "benchmark": run.benchmark,
                "pool": pool,
                "setting": f"{run.benchmark} | {pool}" if multi_pool else run.benchmark,
                "score": run.score,
                "scoring": run.scoring,
                "best_single": None if baseline is None else baseline.score,
                "best_single_model": None if baseline is None else baseline.name,
                "gain": None if baseline is None or run.score is None else run.score - baseline.score,
                **gain_fields(paired),
                "emerged": emerged,
                "unsolved": unsolved,
                "emergence_ci": _share_interval(emerged, unsolved, confidence),
                "score_ci": None if interval is None else [interval.low, interval.high],
                "ci_method": None if interval is None else interval.method,
                "confidence": confidence,
                "n": run.n,
                "tokens_per_example": run.per_example(run.tokens),
                "calls_per_example": run.per_example(run.calls),
                "source": run.source,
                "run": run.path,
                "mtime": run.mtime,
                **seed_fields(run),
                "seed_runs": list(run.seed_paths) or None,
            }
        )
    return _latest_per_cell(rows)


def _share_interval(count: int | None, total: int | None, confidence: float) -> list[float] | None:
    if count is None or not total:
        return None
    return list(wilson_interval(count, total, confidence))


def _latest_per_cell(rows: list[dict]) -> list[dict]:
    """Reruns of one method in one setting: keep the most recent (the one a rerun replaced)."""
    latest: dict[tuple, dict] = {}
    for row in sorted(rows, key=lambda r: r["mtime"]):
        latest[(row["method"], row["setting"])] = row
    return sorted(latest.values(), key=lambda r: (r["setting"], r["method"] != "single_model", r["method"]))


def headline(rows: list[dict]) -> dict:
    """MoCo's headline numbers: win share over the best single model, largest gain, emergence."""
    per_method: dict[str, dict] = {}
    for row in rows:
        if row["method"] == "single_model" or row["gain"] is None:
            continue
        entry = per_method.setdefault(
            row["method"],
            {"settings": 0, "wins": 0, "significant_wins": 0, "gains": [], "emerged": 0, "unsolved": 0},
        )
        entry["settings"] += 1
        entry["wins"] += int(row["gain"] > 0)
        entry["significant_wins"] += int(bool(row.get("significant_gain")))
        entry["gains"].append(row["gain"])
        entry["emerged"] += row["emerged"] or 0
        entry["unsolved"] += row["unsolved"] or 0
    confidence = next((r["confidence"] for r in rows if r.get("confidence")), CONFIDENCE)
    methods = {}
    for label, entry in sorted(per_method.items()):
        gains = entry.pop("gains")
        methods[label] = {
            **entry,
            "win_share": entry["wins"] / entry["settings"],
            "significant_win_share": entry["significant_wins"] / entry["settings"],
            "mean_gain": sum(gains) / len(gains),
            "max_gain": max(gains),
            "emergence": entry["emerged"] / entry["unsolved"] if entry["unsolved"] else None,
            "emergence_ci": _share_interval(entry["emerged"], entry["unsolved"], confidence),
        }
    compared = [r for r in rows if r["method"] != "single_model" and r["gain"] is not None]
    best = max(compared, key=lambda r: r["gain"], default=None)
    emerged = sum(m["emerged"] for m in methods.values())
    unsolved = sum(m["unsolved"] for m in methods.values())
    significant = sum(bool(r.get("significant_gain")) for r in compared)
    return {
        "methods": methods,
        "pairs": len(compared),
        "confidence": confidence,
        "win_share": sum(r["gain"] > 0 for r in compared) / len(compared) if compared else None,
        "wins": sum(r["gain"] > 0 for r in compared),
        # the headline's count: gains whose paired interval lies above zero (the test agreeing)
        "significant_wins": significant,
        "significant_win_share": significant / len(compared) if compared else None,
        "largest_gain": None
        if best is None
        else {"method": best["method"], "setting": best["setting"], "gain": best["gain"]},
        "largest_gain_ci": None if best is None else best.get("gain_ci"),
        "largest_gain_p": None if best is None else best.get("gain_p"),
        "emergence": emerged / unsolved if unsolved else None,
        "emergence_ci": _share_interval(emerged, unsolved, confidence),
        "emerged": emerged,
        "unsolved": unsolved,
        "without_baseline": sorted({f"{r['method']} on {r['setting']}" for r in rows if r["gain"] is None}),
    }


def heatmap_data(
    rows: list[dict], value: str = "score"
) -> tuple[list[str], list[str], list[list[float | None]]]:
    """(method labels, settings, matrix[method][setting]) behind a heatmap of ``value`` ("score" or "gain")."""
    shown = [r for r in rows if value != "gain" or r["method"] != "single_model"]
    methods = sorted({r["method"] for r in shown}, key=lambda m: (m != "single_model", m))
    settings = sorted({r["setting"] for r in shown})
    cells = {(r["method"], r["setting"]): r[value] for r in shown}
    return methods, settings, [[cells.get((m, s)) for s in settings] for m in methods]


# -- figures (drawn by moco_lit.figures) and files ----------------------------------------------


def heatmap_labels(rows: list[dict], value: str = "score") -> list[list[str | None]]:
    """The text of each heatmap cell; a gain whose paired interval lies above zero is starred."""
    methods, settings, matrix = heatmap_data(rows, value)
    starred = {(r["method"], r["setting"]) for r in rows if r.get("significant_gain")}
    labels: list[list[str | None]] = []
    for method, line in zip(methods, matrix):
        labels.append([])
        for setting, v in zip(settings, line):
            if v is None or math.isnan(v):
                labels[-1].append(None)
            elif value == "gain":
                labels[-1].append(f"{v:+.3f}" + ("*" if (method, setting) in starred else ""))
            else:
                labels[-1].append(f"{v:.3f}")
    return labels


def write_report(
    sources: list[str | Path],
    out_dir: str | Path,
    title: str = "moco_lit report",
    solved_at: float = SOLVED_AT,
    confidence: float = CONFIDENCE,
    formats: list[str] | tuple[str, ...] = (),
) -> dict[str, Path]:
    """Compare every run in ``sources``; write report.md, report.html, report.json and PNG figures.

    ``formats`` adds exports: ``latex`` (report.tex) and ``csv`` (report.csv), see moco_lit.export.
    """
    check_confidence(confidence)
    check_formats(formats)
    runs = load_runs(sources)
    if not runs:
        raise UserError(f"no finished test runs in {', '.join(map(str, sources))}")
    check_one_scorer(runs)
    runs, superseded = separate_variants(runs)
    runs = merge_seeds(runs)
    rows = compare(runs, solved_at, confidence)
    stats = headline(rows) | {"superseded": superseded}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "heatmap_score": draw.save(draw.score_heatmap(runs, rows), out / "heatmap_score.png"),
        "heatmap_gain": draw.save(draw.gain_heatmap(rows, runs), out / "heatmap_gain.png"),
        "cost_quality": draw.save(
            draw.cost_quality(draw.cost_quality_series(runs, rows, confidence)), out / "cost_quality.png"
        ),
    }
    figures = {name: path for name, path in figures.items() if path is not None}
    data = {"title": title, "solved_at": solved_at, "headline": stats, "rows": rows}
    (out / "report.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (out / "report.md").write_text(_markdown(title, rows, stats, figures, solved_at))
    (out / "report.html").write_text(_html(title, rows, stats, figures, solved_at))
    exports = write_exports(rows, out, formats, title, runs)
    return {
        "md": out / "report.md",
        "html": out / "report.html",
        "json": out / "report.json",
        **figures,
        **exports,
    }


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _interval(bounds: list[float] | None, signed: bool = False, percent: bool = False) -> str:
    if not bounds:
        return "–"
    if percent:
        return f"[{_pct(bounds[0])}, {_pct(bounds[1])}]"
    return f"[{_fmt(float(bounds[0]), signed)}, {_fmt(float(bounds[1]), signed)}]"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _result_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    ci = _ci_header(next((r["confidence"] for r in rows if r.get("confidence")), CONFIDENCE))
    header = [
        "setting",
        "method",
        "score",
        ci,
        "best single",
        "gain",
        f"gain {ci} (paired)",
        "p",
        "emergence",
        "tokens/ex",
        "calls/ex",
        "n",
    ]
    body = []
    for r in rows:
        emerged = "–" if r["unsolved"] is None else f"{r['emerged']}/{r['unsolved']}"
        if r.get("emergence_ci"):
            emerged += f" {_interval(r['emergence_ci'], percent=True)}"
        best = "–" if r["best_single"] is None else f"{r['best_single']:.3f} ({r['best_single_model']})"
        body.append(
            [
                r["setting"],
                r["method"],
                _fmt(r["score"]),
                _interval(r.get("score_ci")),
                best,
                _fmt(r["gain"], signed=True),
                _interval(r.get("gain_ci"), signed=True),
                _p(r.get("gain_p")),
                emerged,
                f"{r['tokens_per_example']:.0f}",
                f"{r['calls_per_example']:.1f}",
                str(r["n"]),
            ]
        )
    return with_seed_columns(rows, header, body)


def _alpha(stats: dict) -> str:
    return f"{1 - stats.get('confidence', CONFIDENCE):.3g}"


def _method_table(stats: dict) -> tuple[list[str], list[list[str]]]:
    header = [
        "method",
        "settings",
        f"beats best single (CI above 0, p < {_alpha(stats)})",
        "gain above 0 (raw)",
        "mean gain",
        "largest gain",
        "emergence",
    ]
    body = [
        [
            label,
            str(m["settings"]),
            f"{m['significant_wins']}/{m['settings']} ({_pct(m['significant_win_share'])})",
            f"{m['wins']}/{m['settings']} ({_pct(m['win_share'])})",
            _fmt(m["mean_gain"], signed=True),
            _fmt(m["max_gain"], signed=True),
            f"{_pct(m['emergence'])} {_interval(m['emergence_ci'], percent=True)} "
            f"({m['emerged']}/{m['unsolved']})",
        ]
        for label, m in stats["methods"].items()
    ]
    return header, body


def _headline_lines(stats: dict, solved_at: float) -> list[str]:
    largest = stats["largest_gain"]
    ci = _ci_header(stats.get("confidence", CONFIDENCE))
    gain_ci = stats.get("largest_gain_ci")
    p_text = _p(stats.get("largest_gain_p"))
    p_text = p_text.replace("<", "p < ") if p_text.startswith("<") else f"p = {p_text}"
    largest_ci = f" {_interval(gain_ci, signed=True)}, {p_text}" if gain_ci else ""
    lines = [
        f"Collaborations beat the best single model of their pool in {stats.get('significant_wins', 0)} "
        f"of {stats['pairs']} (method, setting) pairs ({_pct(stats.get('significant_win_share'))}) with "
        f"the paired {ci} of the gain above zero (p < {_alpha(stats)}); raw count, any gain above zero: "
        f"{stats.get('wins', 0)} of {stats['pairs']} ({_pct(stats['win_share'])}).",
        "Largest gain: "
        + (
            "–"
            if largest is None
            else f"{largest['gain']:+.3f}{largest_ci} ({largest['method']} on {largest['setting']})."
        ),
        f"Collaborative emergence: {_pct(stats['emergence'])} "
        + (f"({ci} {_interval(stats['emergence_ci'], percent=True)}) " if stats.get("emergence_ci") else "")
        + "of the examples no single collaborator "
        f"solves are solved by the collaboration ({stats['emerged']}/{stats['unsolved']}; solved = score ≥ {solved_at}).",
    ]
    if stats["without_baseline"]:
        lines.append(
            "No single_model run covers the pool of: "
            + "; ".join(stats["without_baseline"])
            + " (no gain shown)."
        )
    for entry in stats.get("superseded") or []:
        lines.append(
            f"Rerun with the same settings: {entry['method']} on {entry['setting']}: {entry['kept']} "
            f"counts, {entry['run']} (older) is left out."
        )
    return lines


def _md_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def _markdown(title: str, rows: list[dict], stats: dict, figures: dict[str, Path], solved_at: float) -> str:
    parts = [f"# {title}", "", "## Headline", ""]
    parts += [f"- {line}" for line in _headline_lines(stats, solved_at)]
    parts += ["", "## Per method", "", _md_table(*_method_table(stats)), "", "## Results", ""]
    parts += [_md_table(*_result_table(rows)), ""]
    parts += [uncertainty_note(rows), ""] if uncertainty_note(rows) else []
    parts += ["## Figures", ""]
    parts += [f"![{name}]({path.name})" for name, path in figures.items()]
    return "\n".join(parts) + "\n"


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _html(title: str, rows: list[dict], stats: dict, figures: dict[str, Path], solved_at: float) -> str:
    images = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}"><figcaption>{name}</figcaption></figure>'
        for name, path in figures.items()
    )
    items = "".join(f"<li>{html.escape(line)}</li>" for line in _headline_lines(stats, solved_at))
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}"
        "td:first-child,td:nth-child(2),th{text-align:left}img{max-width:100%}figure{margin:1em 0}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<h2>Headline</h2><ul>{items}</ul><h2>Per method</h2>{_html_table(*_method_table(stats))}"
        f"<h2>Results</h2>{_html_table(*_result_table(rows))}"
        + (f"<p>{html.escape(uncertainty_note(rows))}</p>" if uncertainty_note(rows) else "")
        + f"<h2>Figures</h2>{images}</body></html>\n"
    )


def resolve_target(target: str, run_dir: str = "runs") -> tuple[list[Path], Path, str]:
    """(sources, default output folder, title) for ``report TARGET``: a path, or a sweep's name."""
    path = Path(target)
    if path.exists():
        out = (path.parent if path.is_file() else path) / "report"
        return [path], out, f"moco_lit report: {path}"
    summary = summary_path(run_dir, target)
    if summary.is_file():
        return [summary], Path(run_dir) / "reports" / target, f"moco_lit report: sweep {target}"
    raise UserError(f"{target!r} is neither a path nor a sweep in {run_dir}/sweeps/ (no {summary})")


def main(argv: list[str]) -> int:
    """``python -m moco_lit report TARGET ...``: write the comparison report and say where it is."""
    parser = argparse.ArgumentParser(
        prog="python -m moco_lit report",
        description="Compare finished runs: a runs/ root, run folders, a sweep's name or MoCo log files.",
    )
    parser.add_argument("targets", nargs="+", help="runs/ root, run folders, sweep name, MoCo logs")
    parser.add_argument("-o", "--output", default=None, help="output folder (default: next to the runs)")
    parser.add_argument("--run_dir", default="runs", help="where sweeps keep their summaries")
    parser.add_argument("--title", default=None)
    parser.add_argument("--solved_at", type=float, default=SOLVED_AT, help="score that counts as solved")
    parser.add_argument(
        "--confidence", type=float, default=CONFIDENCE, help="level of every interval (default 0.95)"
    )
    parser.add_argument(
        "--format",
        nargs="+",
        action="extend",
        default=[],
        metavar="FORMAT",
        help="also write report.tex (latex: booktabs tables) and/or report.csv (csv)",
    )
    parser.add_argument(
        "--wandb", action="store_true", help="also log the tables and plots as a W&B run (job type report)"
    )
    parser.add_argument("--wandb_project", default="moco_lit")
    args = parser.parse_args(argv)
    check_confidence(args.confidence)
    sources, out, title, group = [], None, None, None
    for target in args.targets:
        found, default_out, default_title = resolve_target(target, args.run_dir)
        sources += found
        out, title = out or default_out, title or default_title
        if not Path(target).exists():
            group = group or target  # a sweep's name: its cells' W&B group
    files = write_report(
        sources,
        Path(args.output) if args.output else out,
        args.title or title,
        args.solved_at,
        args.confidence,
        args.format,
    )
    stats = json.loads(files["json"].read_text())["headline"]
    print(
        f"{title}: {stats['pairs']} comparisons, {stats['significant_wins']} beat the best single model "
        f"with the paired {_ci_header(args.confidence)} above zero (p < {_alpha(stats)}; {stats['wins']} with any gain, "
        f"win share {_pct(stats['win_share'])}), emergence {_pct(stats['emergence'])}"
    )
    extra = "".join(f", {files[key].name}" for key in ("tex", "csv") if key in files)
    print(f"report: {files['html']} (and {files['md'].name}{extra}, figures) in {files['md'].parent}")
    if args.wandb:
        try:
            import wandb  # noqa: F401
        except ImportError as error:
            raise UserError(
                "report --wandb needs the wandb package: pip install 'moco-lit[wandb]'"
            ) from error

        data = json.loads(files["json"].read_text())
        pictures = {name: path for name, path in files.items() if path.suffix == ".png"}
        run_id = log_to_wandb(
            data["rows"],
            data["headline"],
            pictures,
            files["md"].parent,
            args.title or title,
            args.wandb_project,
            group,
        )
        print(f"W&B: run {run_id} in project {args.wandb_project} (job type report)")
    return 0
