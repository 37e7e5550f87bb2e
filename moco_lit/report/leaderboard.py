"""Leaderboards from finished run folders: one row per method run (and per collaborator of a
``single_model`` run) with the overall score and its interval, the score per group of examples (a
record field such as ``skill``) and the cost in model calls and tokens per example.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from moco_lit.data import load_benchmark
from moco_lit.evaluation.stats import Interval, score_interval
from moco_lit.report.render import ci_header
from moco_lit.results import method_label
from moco_lit.runs import RunFolder


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


def format_leaderboard(rows: list[dict], title: str = "leaderboard") -> str:
    """A terminal table: score per group, overall with its interval over examples, cost."""
    groups = sorted({g for row in rows for g in row["groups"]})
    header = ["method", *groups, "overall", ci_header(), "calls/ex", "tokens/ex"]
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
