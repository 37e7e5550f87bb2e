"""The report as text: the headline, the per-method and per-run tables, as markdown and as a
self-contained HTML page (figures inlined). The LaTeX and CSV exports are in ``moco_lit.export``.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from moco_lit.evaluation.stats import CONFIDENCE
from moco_lit.seeds import uncertainty_note, with_seed_columns


def ci_header(confidence: float = CONFIDENCE) -> str:
    return f"{100 * confidence:g}% CI"


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return str(value)


def as_percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _interval(bounds: list[float] | None, signed: bool = False, percent: bool = False) -> str:
    if not bounds:
        return "–"
    if percent:
        return f"[{as_percent(bounds[0])}, {as_percent(bounds[1])}]"
    return f"[{_fmt(float(bounds[0]), signed)}, {_fmt(float(bounds[1]), signed)}]"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _result_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    ci = ci_header(next((r["confidence"] for r in rows if r.get("confidence")), CONFIDENCE))
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


def alpha(stats: dict) -> str:
    return f"{1 - stats.get('confidence', CONFIDENCE):.3g}"


def _method_table(stats: dict) -> tuple[list[str], list[list[str]]]:
    header = [
        "method",
        "settings",
        f"beats best single (CI above 0, p < {alpha(stats)})",
        "gain above 0 (raw)",
        "mean gain",
        "largest gain",
        "emergence",
    ]
    body = [
        [
            label,
            str(m["settings"]),
            f"{m['significant_wins']}/{m['settings']} ({as_percent(m['significant_win_share'])})",
            f"{m['wins']}/{m['settings']} ({as_percent(m['win_share'])})",
            _fmt(m["mean_gain"], signed=True),
            _fmt(m["max_gain"], signed=True),
            f"{as_percent(m['emergence'])} {_interval(m['emergence_ci'], percent=True)} "
            f"({m['emerged']}/{m['unsolved']})",
        ]
        for label, m in stats["methods"].items()
    ]
    return header, body


def _headline_lines(stats: dict, solved_at: float) -> list[str]:
    largest = stats["largest_gain"]
    ci = ci_header(stats.get("confidence", CONFIDENCE))
    gain_ci = stats.get("largest_gain_ci")
    p_text = _p(stats.get("largest_gain_p"))
    p_text = p_text.replace("<", "p < ") if p_text.startswith("<") else f"p = {p_text}"
    largest_ci = f" {_interval(gain_ci, signed=True)}, {p_text}" if gain_ci else ""
    lines = [
        f"Collaborations beat the best single model of their pool in {stats.get('significant_wins', 0)} "
        f"of {stats['pairs']} (method, setting) pairs ({as_percent(stats.get('significant_win_share'))}) with "
        f"the paired {ci} of the gain above zero (p < {alpha(stats)}); raw count, any gain above zero: "
        f"{stats.get('wins', 0)} of {stats['pairs']} ({as_percent(stats['win_share'])}).",
        "Largest gain: "
        + (
            "–"
            if largest is None
            else f"{largest['gain']:+.3f}{largest_ci} ({largest['method']} on {largest['setting']})."
        ),
        f"Collaborative emergence: {as_percent(stats['emergence'])} "
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


def markdown_report(
    title: str, rows: list[dict], stats: dict, figures: dict[str, Path], solved_at: float
) -> str:
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


def html_report(title: str, rows: list[dict], stats: dict, figures: dict[str, Path], solved_at: float) -> str:
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
