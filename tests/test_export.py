"""report --format latex/csv: booktabs tables with intervals and the best of each column in bold,
a CSV whose numbers equal the report's rows, and one error line for an unknown format."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from moco_lit.export import csv_rows, latex_escape, latex_tables
from moco_lit.report import Run, compare
from tests.report_helpers import make_run

AMPERSAND = "vote & verify_all"


def _run(method: str, benchmark: str, scores: dict, single: dict | None = None) -> Run:
    return make_run(
        method,
        scores,
        single=single,
        benchmark=benchmark,
        level="text",
        tokens_per_example=10.0,
        calls_per_example=2.0,
    )


def _runs() -> list[Run]:
    """Two benchmarks of 40 questions: "strong" wins the first clearly, AMPERSAND ties it on the second."""
    ids = [str(i) for i in range(40)]

    def solving(k: int) -> dict:
        return {key: float(i < k) for i, key in enumerate(ids)}

    runs = []
    for benchmark, strong, other in (("gsm8k", 30, 25), ("math_500", 20, 20)):
        m1, m2 = solving(12), solving(24 if benchmark == "gsm8k" else 10)
        best = m2 if benchmark == "gsm8k" else m1
        runs += [
            _run("single_model", benchmark, best, single={"m1": m1, "m2": m2}),
            _run("strong", benchmark, solving(strong)),
            _run(AMPERSAND, benchmark, solving(other)),
        ]
    return runs


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return compare(_runs())


def _body(table: str) -> list[list[str]]:
    inner = table.split("\\midrule\n", 1)[1].split("\\bottomrule")[0]
    return [line.removesuffix(" \\\\").split(" & ") for line in inner.splitlines() if line != "\\midrule"]


def test_latex_tables_are_booktabs_with_intervals_and_the_best_in_bold(rows):
    tex = latex_tables(rows)
    scores, gains = tex.split("\\end{table}")[:2]
    for table in (scores, gains):
        assert table.count("\\toprule") == table.count("\\bottomrule") == 1 and "\\hline" not in table
        assert table.count("{") == table.count("}")  # braces balance
        assert "\\begin{tabular}{lcc}" in table and "Method & gsm8k & math\\_500 \\\\" in table
    body = {line[0]: line[1:] for line in _body(scores)}
    assert list(body) == ["best single model", "strong", "vote \\& verify\\_all"]
    # gsm8k: strong (30/40) is best alone; math_500: strong and the other tie at 20/40
    assert body["strong"][0] == "\\textbf{0.750} {\\scriptsize [0.60, 0.86]}"
    assert body["vote \\& verify\\_all"][0].startswith("0.625 {\\scriptsize [")
    assert body["strong"][1].startswith("\\textbf{0.500}") and body["vote \\& verify\\_all"][1].startswith(
        "\\textbf{0.500}"
    )
    assert body["best single model"][0] == "0.600 {\\scriptsize [0.45, 0.74]}"
    assert sum(cell.startswith("\\textbf") for line in body.values() for cell in line) == 3
    # gains: bold only where the paired interval lies above zero and the exact test agrees
    gain = {line[0]: line[1:] for line in _body(gains)}
    by_cell = {(r["method"], r["benchmark"]): r for r in rows}
    assert by_cell[("strong", "gsm8k")]["significant_gain"] and gain["strong"][0].startswith(
        "\\textbf{+0.150}"
    )
    assert not by_cell[(AMPERSAND, "gsm8k")]["significant_gain"] and gain["vote \\& verify\\_all"][
        0
    ].startswith("+0.025 ")
    low, high = by_cell[("strong", "math_500")]["gain_ci"]
    assert gain["strong"][1] == f"\\textbf{{+0.200}} {{\\scriptsize [{low:+.2f}, {high:+.2f}]}}"
    assert "95\\% interval over examples" in scores and "$p < 0.05$" in gains


def test_latex_escape_leaves_no_special_character_bare():
    text = latex_escape("a_b & c% $d #e {f} ~g ^h \\i | <j>")
    assert re.search(r"(?<!\\)[_&%$#]", text.replace("\\textbackslash{}", "")) is None
    assert "\\textasciitilde{}" in text and "\\textbar{}" in text and "\\textless{}" in text


def test_csv_numbers_equal_the_report_rows(rows, tmp_path):
    from moco_lit.export import write_csv

    path = write_csv(rows, tmp_path / "report.csv")
    lines = list(csv.DictReader(path.open()))
    assert len(lines) == len(rows) == 6
    header, _ = csv_rows(rows)
    assert list(lines[0]) == header and "score_ci_low" in header and "gain_ci_high" in header
    for line, row in zip(lines, rows):
        assert (line["method"], line["setting"]) == (row["method"], row["setting"])
        assert float(line["score"]) == row["score"]
        assert [float(line["score_ci_low"]), float(line["score_ci_high"])] == row["score_ci"]
        if row["gain_ci"] is None:
            assert line["gain_ci_low"] == ""
        else:
            assert float(line["gain_ci_high"]) == row["gain_ci"][1] and float(line["gain_p"]) == row["gain_p"]
        assert float(line["tokens_per_example"]) == row["tokens_per_example"] == 10.0


def test_report_format_flag_writes_the_exports_and_refuses_unknown_ones(tmp_path, monkeypatch, capsys):
    from moco_lit.cli import main
    from moco_lit.report import command as report  # write_report reads its runs there

    monkeypatch.setattr(report, "load_runs", lambda sources: _runs())
    out = tmp_path / "out"
    assert main(["report", str(tmp_path), "-o", str(out), "--format", "latex", "csv"]) == 0
    assert "report.tex, report.csv" in capsys.readouterr().out
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert (out / "report.tex").read_text() == latex_tables(rows, f"moco_lit report: {tmp_path}")
    assert len(list(csv.DictReader((out / "report.csv").open()))) == 6
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "x"), "--format", "pdf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--format 'pdf' is not an export format; choose from latex, csv" in err[0]
    assert not (tmp_path / "x").exists()  # refused before anything is written


def _visualized(path: Path) -> dict[str, str]:
    """The native W&B charts an offline run file declares: key → chart kind (wandb/bar/v0, ...)."""
    from wandb.proto import wandb_internal_pb2 as pb

    from tests.wandb_files import _payloads

    charts = {}
    for payload in _payloads(path.read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                key = item.key or "/".join(item.nested_key)
                if key.startswith("_wandb/visualize/"):
                    charts[key.removeprefix("_wandb/visualize/")] = json.loads(item.value_json)[
                        "panel_config"
                    ]["panelDefId"]
    return charts


def test_report_logs_its_tables_and_native_plots_to_wandb(tmp_path, monkeypatch, capsys):
    import wandb

    from moco_lit.cli import main
    from moco_lit.report import command as report  # write_report reads its runs there
    from tests.wandb_files import offline_runs

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(report, "load_runs", lambda sources: _runs())
    out = tmp_path / "out"
    assert (
        main(["report", str(tmp_path / "out"), "-o", str(out), "--wandb", "--title", "paper"]) == 2
    )  # no such path
    (tmp_path / "runs").mkdir()
    assert main(["report", str(tmp_path / "runs"), "-o", str(out), "--wandb", "--title", "paper"]) == 0
    assert "(job type report)" in capsys.readouterr().out
    wandb.teardown()  # the W&B service writes the run file out as the process would at exit
    (run,) = offline_runs(out)
    assert (run.name, run.job_type, run.group, run.exit_code) == ("paper", "report", "report", 0)
    assert run.summary["results/nrows"] == 6 and run.summary["significant_wins"] == 3
    assert run.summary["pairs"] == 4 and run.summary["largest_gain"] == pytest.approx(0.2)
    # the results table holds report.csv's numbers (missing ones as null)
    table = json.loads((run.path.parent / "files" / run.summary["results/path"]).read_text())
    header, lines = csv_rows(json.loads((out / "report.json").read_text())["rows"], missing=None)
    assert table["columns"] == header and table["data"] == lines
    assert _visualized(run.path) == {
        "score/gsm8k": "wandb/bar/v0",
        "score/math_500": "wandb/bar/v0",
        "gain/gsm8k": "wandb/bar/v0",
        "gain/math_500": "wandb/bar/v0",
        "cost_quality/gsm8k": "wandb/scatter/v0",
        "cost_quality/math_500": "wandb/scatter/v0",
    }
    assert {key.split("/")[1] for key in run.summary if key.startswith("figures/")} == {
        "heatmap_score",
        "heatmap_gain",
        "cost_quality",
    }


def test_latex_has_a_subset_table_where_a_benchmark_has_subsets(rows):
    from moco_lit.data.synthetic import synthetic_benchmark
    from tests.test_figures import SKILLS
    from tests.test_figures import _run as quickstart_run

    assert "tab:subsets" not in latex_tables(rows, runs=_runs())  # gsm8k, math_500 here: no subsets
    skill_of = {r["id"]: r["skill"] for r in synthetic_benchmark("quickstart").test}
    specialist = {s: {key: float(skill == s) for key, skill in skill_of.items()} for s in SKILLS}
    runs = [
        quickstart_run("single_model", specialist["multiply"], single=specialist),
        quickstart_run("vote_all", {key: float(skill != "reverse") for key, skill in skill_of.items()}),
    ]
    tex = latex_tables(compare(runs), runs=runs)
    table = tex.split("\\end{table}")[2]
    assert (
        "\\label{tab:subsets}" in table
        and "Method & overall & multiply & next\\_letter & reverse \\\\" in table
    )
    lines = table.split("\\midrule\n")
    assert len(lines) == 3  # header | the three single models | the method
    assert lines[1].splitlines()[0] == "single: multiply & 0.333 & \\textbf{1.000} & 0.000 & 0.000 \\\\"
    assert (
        lines[2].splitlines()[0]
        == "vote\\_all & \\textbf{0.667} & \\textbf{1.000} & \\textbf{1.000} & 0.000 \\\\"
    )
