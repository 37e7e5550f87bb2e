"""Leaderboards and comparison reports from finished run folders, no logger needed.

``leaderboard_rows``/``format_leaderboard`` (``leaderboard.py``): one row per method run (and per
collaborator of a ``single_model`` run) with the overall score, the score per group of examples
(a record field such as ``skill``) and the cost in model calls and tokens per example.

``write_report`` (``python -m moco_lit report runs/``, ``command.py``): every run of a runs root, a
sweep or a set of MoCo logs compared per (model pool, benchmark) setting against the pool's best
single model (``compare.py``, over the run reader and baseline of ``moco_lit.results``):
``report.md`` and a self-contained ``report.html`` (``render.py``), PNG heatmaps of score and of
gain, a cost–quality scatter per benchmark, and MoCo's headline statistics (win share, largest
gain, collaborative emergence). ``report.json`` holds every number shown.
"""

from __future__ import annotations

from moco_lit.report.command import main, resolve_target, write_report
from moco_lit.report.compare import (
    SOLVED_AT,
    check_one_scorer,
    compare,
    emergence,
    headline,
    heatmap_data,
    heatmap_labels,
    load_runs,
)
from moco_lit.report.leaderboard import (
    format_leaderboard,
    leaderboard_rows,
    print_leaderboard,
    write_leaderboard_json,
)
from moco_lit.results import (
    Baseline,
    Run,
    best_single,
    compare_with_best_single,
    find_run_folders,
    gain_over_best_single,
    run_from_folder,
    spec_key,
)

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
