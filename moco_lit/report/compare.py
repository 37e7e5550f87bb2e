"""Comparing collaborations: runs, baselines and MoCo's headline statistics.

A *setting* is one (model pool, benchmark) pair, as in MoCo's paper. A collaboration's baseline
is the best single model of its own pool on the same examples, taken from single_model runs
(every collaborator's per-example score is in their records), so the report needs run folders
only, and compares runs made on different machines. ``compare`` gives one row per run (score,
gain with its paired interval and test, emergence), ``headline`` the numbers across them, and
``heatmap_data``/``heatmap_labels`` the cells of the figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from moco_lit.convert import is_moco_log, runs_from_moco_logs
from moco_lit.errors import UserError
from moco_lit.evaluation.stats import CONFIDENCE, score_interval, wilson_interval
from moco_lit.results import (
    Run,
    best_single,
    find_run_folders,
    gain_fields,
    own_scores,
    paired_or_none,
    run_from_folder,
)
from moco_lit.seeds import seed_fields

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
