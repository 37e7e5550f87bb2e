"""The report's tables for papers and spreadsheets: LaTeX (booktabs) and CSV.

``latex_tables``: methods × settings, each score with its interval over examples and the best of
each column in bold; then the gain over the best single model with its paired interval, in bold
where it counts (interval above zero and exact test below 1 − confidence). Needs only
``\\usepackage{booktabs}``. ``write_csv``: one line per report row with every number the report
shows (intervals as ``_low``/``_high`` columns), for pandas or a spreadsheet.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from moco_lit.errors import UserError
from moco_lit.evaluation.stats import CONFIDENCE
from moco_lit.figures import score_table
from moco_lit.lightning_cli import wandb_credentials
from moco_lit.tracking import wandb_run_id

FORMATS = ("latex", "csv")
"""Export formats ``report --format`` writes besides report.md, report.html and report.json."""

CSV_COLUMNS = (
    "setting",
    "benchmark",
    "pool",
    "method",
    "level",
    "score",
    "score_ci",
    "ci_method",
    "best_single",
    "best_single_model",
    "gain",
    "gain_ci",
    "gain_p",
    "gain_test",
    "paired_n",
    "significant_gain",
    "emerged",
    "unsolved",
    "emergence_ci",
    "n",
    "n_seeds",
    "seed_std",
    "seed_min",
    "seed_max",
    "tokens_per_example",
    "calls_per_example",
    "confidence",
    "scoring",
    "run",
)
"""Columns of report.csv; an interval ``X_ci`` becomes ``X_ci_low`` and ``X_ci_high``."""

BEST_SINGLE = "best single model"

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def latex_escape(text: str) -> str:
    """``text`` as LaTeX prints it verbatim in text mode."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in str(text))


def _number(value: float, signed: bool = False, digits: int = 3) -> str:
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "$-$") if text.startswith("-") else text


def _cell(value: float | None, bounds: list[float] | None, bold: bool, signed: bool = False) -> str:
    if value is None:
        return "--"
    text = _number(value, signed)
    text = rf"\textbf{{{text}}}" if bold else text
    if bounds:
        low, high = (_number(b, signed, 2) for b in bounds)
        text += rf" {{\scriptsize [{low}, {high}]}}"
    return text


def _grid(rows: list[dict], value: str) -> tuple[list[str], list[str], dict[tuple[str, str], dict]]:
    settings = sorted({r["setting"] for r in rows})
    cells = {}
    for row in rows:
        label = BEST_SINGLE if row["method"] == "single_model" else row["method"]
        if value == "gain" and label == BEST_SINGLE:
            continue
        cells[(label, row["setting"])] = row
    methods = sorted({label for label, _ in cells}, key=lambda m: (m != BEST_SINGLE, m))
    return methods, settings, cells


def _tabular(header: list[str], body: list[list[str]], separate_first: bool) -> list[str]:
    lines = [r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule"]
    lines.append(" & ".join(header) + r" \\")
    lines.append(r"\midrule")
    for index, cells in enumerate(body):
        lines.append(" & ".join(cells) + r" \\")
        if separate_first and index == 0 and len(body) > 1:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return lines


def latex_tables(rows: list[dict], title: str = "moco_lit report", runs: list | None = None) -> str:
    """Booktabs tables: scores (best per column in bold) and gains (bold where they count), and,
    given the runs and a benchmark with subsets (``moco_lit.figures.score_table``), the score of
    every single model and method per subset."""
    confidence = next((r["confidence"] for r in rows if r.get("confidence")), CONFIDENCE)
    level = f"{100 * confidence:g}\\%"
    methods, settings, cells = _grid(rows, "score")
    best = {}
    for setting in settings:
        scores = [round(cells[(m, setting)]["score"], 3) for m in methods if _has(cells, m, setting, "score")]
        best[setting] = max(scores, default=None)
    header = ["Method", *(latex_escape(s) for s in settings)]
    body = []
    for method in methods:
        line = [latex_escape(method)]
        for setting in settings:
            row = cells.get((method, setting))
            score = None if row is None else row.get("score")
            bold = score is not None and round(score, 3) == best[setting]
            line.append(_cell(score, None if row is None else row.get("score_ci"), bold))
        body.append(line)
    parts = [
        f"% {title}: tables written by moco_lit report; needs \\usepackage{{booktabs}}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        *_tabular(header, body, separate_first=methods[:1] == [BEST_SINGLE]),
        rf"\caption{{Score per setting with its {level} interval over examples (Wilson for 0/1 scores, "
        r"bootstrap otherwise). Best single model: the best collaborator of the pool alone. "
        r"Bold: best in its column.}",
        r"\label{tab:scores}",
        r"\end{table}",
    ]
    gain_methods, _, gain_cells = _grid(rows, "gain")
    gain_methods = [m for m in gain_methods if any(_has(gain_cells, m, s, "gain") for s in settings)]
    if gain_methods:
        body = []
        for method in gain_methods:
            line = [latex_escape(method)]
            for setting in settings:
                row = gain_cells.get((method, setting)) or {}
                line.append(
                    _cell(row.get("gain"), row.get("gain_ci"), bool(row.get("significant_gain")), True)
                )
            body.append(line)
        alpha = f"{1 - confidence:.3g}"
        parts += [
            "",
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            *_tabular(header, body, separate_first=False),
            rf"\caption{{Gain over the best single model of the pool, with its paired {level} interval "
            rf"over examples. Bold: the interval lies above zero and the exact paired test gives $p < {alpha}$.}}",
            r"\label{tab:gains}",
            r"\end{table}",
        ]
    parts += _subset_table(rows, runs or [])
    return "\n".join(parts) + "\n"


def _subset_table(rows: list[dict], runs: list) -> list[str]:
    labels, columns, matrix = score_table(runs, rows) if runs else ([], [], [])
    if len(columns) <= len({r["setting"] for r in rows}):
        return []  # no benchmark with subsets
    best = []
    for j in range(len(columns)):
        values = [round(line[j], 3) for line in matrix if line[j] is not None]
        best.append(max(values, default=None))
    body = [
        [latex_escape(label)]
        + [_cell(v, None, v is not None and round(v, 3) == best[j]) for j, v in enumerate(line)]
        for label, line in zip(labels, matrix)
    ]
    singles = sum(label.startswith("single: ") for label in labels)
    lines = _tabular(["Method", *map(latex_escape, columns)], body, separate_first=False)
    if 0 < singles < len(labels):  # a rule between the single models and the methods
        lines.insert(4 + singles, r"\midrule")
    return [
        "",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        *lines,
        r"\caption{Score overall and per subset of each benchmark, for every single model of the pool and "
        r"every method. Bold: best in its column.}",
        r"\label{tab:subsets}",
        r"\end{table}",
    ]


def _has(cells: dict, method: str, setting: str, value: str) -> bool:
    row = cells.get((method, setting))
    return row is not None and row.get(value) is not None


def csv_rows(rows: list[dict], missing: str | None = "") -> tuple[list[str], list[list]]:
    """(header, lines) of report.csv: ``CSV_COLUMNS`` with intervals split into low and high."""
    header = []
    for column in CSV_COLUMNS:
        header += [f"{column}_low", f"{column}_high"] if column.endswith("_ci") else [column]
    lines = []
    for row in rows:
        line = []
        for column in CSV_COLUMNS:
            value = row.get(column)
            if column.endswith("_ci"):
                line += list(value) if value else [missing, missing]
            else:
                line.append(missing if value is None else value)
        lines.append(line)
    return header, lines


def write_csv(rows: list[dict], path: Path) -> Path:
    header, lines = csv_rows(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(lines)
    return path


def write_exports(
    rows: list[dict], out: Path, formats: list[str], title: str, runs: list | None = None
) -> dict[str, Path]:
    """report.tex and/or report.csv in ``out``, as ``formats`` asks."""
    files = {}
    if "latex" in formats:
        files["tex"] = out / "report.tex"
        files["tex"].write_text(latex_tables(rows, title, runs))
    if "csv" in formats:
        files["csv"] = write_csv(rows, out / "report.csv")
    return files


def check_formats(formats: list[str] | tuple[str, ...]) -> None:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(
            f"--format {unknown[0]!r} is not an export format; choose from {', '.join(FORMATS)} "
            "(report.md, report.html and report.json are always written)"
        )


# -- W&B: the report's tables and plots in a workspace --------------------------------------------


def _key(setting: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", setting).strip("_") or "setting"


def log_to_wandb(
    rows: list[dict],
    stats: dict,
    figures: dict[str, Path],
    out: Path,
    title: str,
    project: str = "moco_lit",
    group: str | None = None,
) -> str:
    """Log the report as one W&B run (job type ``report``); returns the run's id.

    ``results``: the rows of report.csv as a ``wandb.Table``; per setting, native bar charts of
    score (``score/<setting>``) and gain (``gain/<setting>``) and a cost–quality scatter
    (``cost_quality/<setting>``); the PNG figures under ``figures/``; the headline numbers in the
    summary. The run id comes from the output folder, so rewriting a report updates its run.
    Offline (files in ``out/wandb``) unless W&B credentials are set.
    """
    import wandb

    header, lines = csv_rows(rows, missing=None)
    run = wandb.init(
        project=project,
        job_type="report",
        group=group or "report",
        name=title,
        id=wandb_run_id(out),
        resume="allow",
        dir=str(out),
        mode="online" if wandb_credentials() else "offline",
        config={"report": str(out), "confidence": stats.get("confidence"), "rows": len(lines)},
    )
    try:
        logged: dict = {"results": wandb.Table(columns=header, data=lines, allow_mixed_types=True)}
        for setting in sorted({r["setting"] for r in rows}):
            shown = [r for r in rows if r["setting"] == setting and r["score"] is not None]
            table = wandb.Table(
                columns=["method", "score", "score_ci_low", "score_ci_high", "gain", "tokens_per_example"],
                data=[
                    [
                        r["method"],
                        r["score"],
                        *(r.get("score_ci") or [None, None]),
                        r.get("gain"),
                        r["tokens_per_example"],
                    ]
                    for r in shown
                ],
            )
            key = _key(setting)
            logged[f"score/{key}"] = wandb.plot.bar(table, "method", "score", title=f"score on {setting}")
            logged[f"cost_quality/{key}"] = wandb.plot.scatter(
                table, "tokens_per_example", "score", title=f"tokens per example and score on {setting}"
            )
            gains = [
                [r["method"], r["gain"]]
                for r in shown
                if r["method"] != "single_model" and r.get("gain") is not None
            ]
            if gains:
                logged[f"gain/{key}"] = wandb.plot.bar(
                    wandb.Table(columns=["method", "gain"], data=gains),
                    "method",
                    "gain",
                    title=f"gain over the best single model on {setting}",
                )
        logged |= {f"figures/{name}": wandb.Image(str(path)) for name, path in figures.items()}
        run.log(logged)
        for key in ("pairs", "wins", "significant_wins", "win_share", "significant_win_share", "emergence"):
            run.summary[key] = stats.get(key)
        largest = stats.get("largest_gain") or {}
        run.summary["largest_gain"] = largest.get("gain")
    except BaseException:
        run.finish(exit_code=1)  # a report that failed half-way is not shown as finished
        raise
    run.finish()
    return run.id
