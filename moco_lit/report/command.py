"""``python -m moco_lit report TARGET ...``: compare the runs of a runs root, a sweep or MoCo logs and
write ``report.md``, ``report.html``, ``report.json``, the PNG figures and the chosen exports.
"""

from __future__ import annotations

import json
from pathlib import Path

from moco_lit import figures as draw
from moco_lit.argv import CommandParser
from moco_lit.errors import UserError
from moco_lit.evaluation.stats import CONFIDENCE, check_confidence
from moco_lit.export import check_formats, log_to_wandb, write_exports
from moco_lit.report.compare import SOLVED_AT, check_one_scorer, compare, headline, load_runs
from moco_lit.report.render import alpha, as_percent, ci_header, html_report, markdown_report
from moco_lit.results import summary_path
from moco_lit.seeds import merge_seeds
from moco_lit.variants import separate as separate_variants


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
    (out / "report.md").write_text(markdown_report(title, rows, stats, figures, solved_at))
    (out / "report.html").write_text(html_report(title, rows, stats, figures, solved_at))
    exports = write_exports(rows, out, formats, title, runs)
    return {
        "md": out / "report.md",
        "html": out / "report.html",
        "json": out / "report.json",
        **figures,
        **exports,
    }


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
    parser = CommandParser(
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
        f"with the paired {ci_header(args.confidence)} above zero (p < {alpha(stats)}; {stats['wins']} with any gain, "
        f"win share {as_percent(stats['win_share'])}), emergence {as_percent(stats['emergence'])}"
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
