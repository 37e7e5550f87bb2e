"""Every number README.md and the recipe headers quote, where it is and the run that gives it.

    python benchmarks/quoted_numbers.py --check          # rerun the quick sources, list what differs
    python benchmarks/quoted_numbers.py --check --all    # also the real-model runs (minutes each)
    python benchmarks/quoted_numbers.py --write [--all]  # rewrite the quoted values in place
    python benchmarks/quoted_numbers.py --lint           # every quoted-looking number is registered
    python benchmarks/quoted_numbers.py --list           # the registry: quote, source, command

A ``Quote`` is a regular expression that matches once in its file (for a recipe, in its comment
header); each named group is one quoted value, named by the key its ``Source`` produces. A
*result* (score, interval, gain, count) must equal the regenerated value as written; a
*measurement* (seconds, minutes, GB) only has to be there, and ``--write`` puts the new one in. A
key a source cannot regenerate is named in its ``by_hand`` set: ``--check`` lists those as read
off that run by hand, so nothing is left unchecked without saying so.

The quick sources reuse what is already there where they can: the quickstart's sources read the
report that ``python -m moco_lit quickstart`` (CI runs it first) wrote under ``runs/``, and run
the quickstart only when there is none. ``--lint`` (and tests/test_quoted_numbers.py) fails on a
number that looks like a result, an interval or a timing and that no quote and no ``NOT_QUOTED``
entry covers, so a new number cannot go in unregistered.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
README = "README.md"
USER_HOME = Path(os.environ.get("MOCO_LIT_HOME", Path.home() / ".cache" / "moco_lit")).expanduser()

Kind = Literal["result", "measurement"]


@dataclass(frozen=True)
class Source:
    """A run that regenerates quoted values: ``produce(workdir)`` returns them by key, formatted
    as quoted. ``quick`` sources run under ``--check``; the others only with ``--all``."""

    name: str
    commands: tuple[str, ...]
    produce: Callable[[Path], dict[str, str]]
    quick: bool = False
    provides: frozenset[str] = frozenset()
    by_hand: frozenset[str] = frozenset()
    missing: Callable[[], str | None] = lambda: None  # why it cannot run here (None: it can)


@dataclass(frozen=True)
class Quote:
    file: str
    pattern: str
    source: str
    kind: Kind

    @property
    def keys(self) -> list[str]:
        return list(re.compile(self.pattern, re.S).groupindex)


@dataclass
class Finding:
    quote: Quote
    key: str
    quoted: str
    regenerated: str | None
    status: Literal["same", "differs", "refreshed", "by hand", "not run"]
    why: str = ""


# -- reading the files ----------------------------------------------------------------------------


def header(text: str) -> str:
    """A recipe's comment header: its lines up to the first that is not a comment."""
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line)
    return "".join(lines)


def scanned_text(file: str) -> str:
    text = (ROOT / file).read_text(encoding="utf-8")
    return header(text) if file.startswith("recipes/") else text


def find(quote: Quote) -> re.Match:
    text = scanned_text(quote.file)
    matches = list(re.finditer(quote.pattern, text, re.S))
    if len(matches) != 1:
        raise LookupError(f"{quote.file}: {len(matches)} matches of {quote.pattern!r} (one expected)")
    return matches[0]


def readme_block(marker: str) -> list[list[str]]:
    """The commands of README's ```bash block between ``<!-- marker -->`` and ``<!-- /marker -->``."""
    text = (ROOT / README).read_text(encoding="utf-8")
    block = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)```\s*<!-- /{marker} -->", text, re.S)
    if block is None:
        raise LookupError(f"README has no block marked {marker}")
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line]


# -- running ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def moco_lit(argv: list[str]) -> str:
    """``python -m moco_lit ARGV`` in this process; its standard output (an error stops here)."""
    from moco_lit.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    if code != 0:
        raise RuntimeError(f"python -m moco_lit {shlex.join(argv)} exited with {code}")
    return out.getvalue()


@dataclass
class Timed:
    seconds: float
    cpu_seconds: float
    peak_gb: float
    stdout: str = field(repr=False)


def timed(command: str, cwd: Path, threads: str | None = "1") -> Timed:
    """A shell command in its own process: wall and CPU time, peak resident memory, stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads is not None:  # None: as the command runs by default (the quickstart sets its own)
        env["OMP_NUM_THREADS"] = threads
    started = time.perf_counter()
    process = subprocess.Popen(command, shell=True, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    stdout = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{command!r} exited with {process.returncode}")
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 1e9
    return Timed(seconds, usage.ru_utime + usage.ru_stime, peak, stdout)


def three(value: float) -> str:
    return f"{value:.3f}"


def signed(value: float) -> str:
    return f"{value:+.3f}"


# -- the quick sources --------------------------------------------------------------------------------


def first_experiment(workdir: Path) -> dict[str, str]:
    """README's marked first experiment, as written, into ``workdir``; its scores."""
    commands = readme_block("first-experiment")
    runs = workdir / "runs"
    with environment(MOCO_LIT_HOME=str(USER_HOME)):  # the quickstart's specialists and their cache
        for command in commands:
            if command[:3] != ["python", "-m", "moco_lit"]:
                raise ValueError(f"not a moco_lit command in the first experiment: {shlex.join(command)}")
            moco_lit([*command[3:], "--run_dir", str(runs), "--wandb", "false"])
    single = json.loads(next((runs / "quickstart" / "single_model").glob("*/metrics.json")).read_text())
    (routed,) = [
        json.loads(path.read_text())
        for path in (runs / "quickstart" / "trained_router").glob("*/metrics.json")
        if not path.parent.name.endswith("-fit")
    ]
    low, high = routed["score_ci"]
    return {
        "best_single": three(max(v for k, v in single.items() if k.startswith("score/"))),
        "routed": three(routed["score"]),
        "routed_low": three(low),
        "routed_high": three(high),
        "n": str(routed["n"]),
    }


def quickstart_specialists_missing() -> str | None:
    if list((USER_HOME / "quickstart").glob("specialists-*/next_letter/config.json")):
        return None
    return "the quickstart's specialists are not trained here: run `python -m moco_lit quickstart`"


# where `python -m moco_lit quickstart`, run in the repository, writes its report
QUICKSTART_RUNS = Path(os.environ.get("MOCO_LIT_QUICKSTART_RUNS", ROOT / "runs"))


def quickstart_report() -> Path:
    return QUICKSTART_RUNS / "reports" / "quickstart"


def quickstart(workdir: Path) -> dict[str, str]:
    """The quickstart's leaderboard and report, from its last run (run now when there is none)."""
    from moco_lit.report import format_leaderboard, leaderboard_rows

    report = quickstart_report()
    if not (report / "runs.json").is_file():
        command = [sys.executable, "-m", "moco_lit", "quickstart", "--run_dir", str(QUICKSTART_RUNS)]
        subprocess.run(command, cwd=ROOT, check=True)
    cells = json.loads((report / "runs.json").read_text())["cells"]
    # run folders are written as the quickstart was given them: relative to where it ran
    folders = [QUICKSTART_RUNS.parent / cell["run_folder"] for cell in cells]
    rows = leaderboard_rows(folders, group_field="skill")
    table = format_leaderboard(rows, title="")
    start = table.index("method ")
    values = {"leaderboard": table[start:].rstrip("\n")}
    by_method = {row["method"]: row for row in json.loads((report / "report.json").read_text())["rows"]}
    for key, method in (("router", "trained_router (router=encoder)"), ("cascade", "cascade (mode=logit)")):
        row = by_method[method]
        values |= {f"{key}_gain": signed(row["gain"])}
        values |= {f"{key}_low": signed(row["gain_ci"][0]), f"{key}_high": signed(row["gain_ci"][1])}
    distillation = by_method["distillation"]
    values["distillation_gain"] = signed(distillation["gain"])
    values["distillation_low"] = signed(distillation["gain_ci"][0]).replace("-", "−")
    values["distillation_high"] = signed(distillation["gain_ci"][1])
    values["distillation_p"] = f"{distillation['gain_p']:.2f}"
    headline = re.search(r"single model of their pool in (.*?)\.\n", (report / "report.md").read_text())
    values["headline"] = headline.group(1) if headline else "(no headline)"
    cascade = next(row for row in rows if row["method"] == "cascade (mode=logit)")
    values["cascade_calls"] = f"{cascade['calls_per_example']:.1f}"
    return values


def results_md(workdir: Path) -> dict[str, str]:
    """Figures the README takes from benchmarks/RESULTS.md."""
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    two = re.search(r"\| tiny Llama, torch's default 2 threads \| [\d,]+ \| ([\d.]+) \|", text)
    one = re.search(r"\| tiny Llama, `OMP_NUM_THREADS=1` \| [\d,]+ \| ([\d.]+) \|", text)
    if not (two and one):
        return {}
    return {"stress_slowdown": f"{float(two.group(1)) / float(one.group(1)):.0f}"}


def quickstart_timing(workdir: Path) -> dict[str, str]:
    """The quickstart from nothing (a fresh cache and run folder), then again."""
    home, cwd = workdir / "home", workdir / "cwd"
    cwd.mkdir(parents=True)
    with environment(MOCO_LIT_HOME=str(home)):
        first = timed(f"{shlex.quote(sys.executable)} -m moco_lit quickstart", cwd, threads=None)
        again = timed(f"{shlex.quote(sys.executable)} -m moco_lit quickstart", cwd, threads=None)
    minutes, seconds = divmod(round(first.seconds), 60)
    return {"first_min": str(minutes), "first_s": str(seconds), "rerun_s": f"{again.seconds:.0f}"}


# -- the real-model sources -------------------------------------------------------------------------

REAL_MODELS = ("smollm2-135m-instruct", "gemma3-270m")


def real_missing() -> str | None:
    for name in REAL_MODELS:
        if not (USER_HOME / "models" / name / "config.json").is_file():
            return f"needs `python -m moco_lit models fetch {name}`"
    if not list((USER_HOME / "data").glob("modelco-*/gsm8k.json")):
        return "needs `python -m moco_lit data fetch modelco`"
    return None


def metrics_of(runs: Path, benchmark: str, method: str) -> dict:
    """The metrics of the newest test run of ``method`` on ``benchmark`` under ``runs``."""
    folders = [p for p in (runs / benchmark / method).glob("*/metrics.json") if "-fit" not in p.parent.name]
    return json.loads(max(folders, key=lambda p: p.stat().st_mtime).read_text())


def real_readme(workdir: Path, threads: str = "1") -> dict[str, str]:
    """README's "Real models in a few minutes" runs, one thread each, then `report runs`."""
    python = shlex.quote(sys.executable)
    runs = workdir / "runs"
    common = f"--run_dir {runs} --cache_path {workdir / 'cache.sqlite'} --wandb false"
    single = timed(
        f"{python} -m moco_lit test -c recipes/real/single_model.yaml --data.limit 20 {common}", ROOT, threads
    )
    vote = timed(
        f"{python} -m moco_lit test -c recipes/real/majority_vote.yaml --data.limit 20 {common}",
        ROOT,
        threads,
    )
    gsm8k = timed(
        f"{python} -m moco_lit test -c recipes/real/single_model.yaml --data.limit 20 "
        f"--data.benchmark gsm8k --model.max_new_tokens 256 {common}",
        ROOT,
        threads,
    )
    if threads != "1":
        return {
            "single_s_2": f"{single.seconds:.0f}",
            "vote_s_2": f"{vote.seconds:.0f}",
            "gsm8k_min_2": f"{gsm8k.seconds / 60:.1f}",
        }
    table = re.search(r"(┏.*┘)", single.stdout, re.S)
    timed(f"{python} -m moco_lit report {runs} --output {workdir / 'report'}", ROOT)
    report = (workdir / "report" / "report.md").read_text()
    rows = [
        line
        for line in report.splitlines()
        if line.startswith("| gsm8k |") or line.startswith("| mmlu_redux |")
    ]
    header_rows = re.search(r"(\| setting \| method .*?\n\|---.*?\n)", report)
    mmlu = metrics_of(runs, "mmlu_redux", "single_model")
    low, high = mmlu["score_ci"]
    return {
        "single_s": f"{single.seconds:.0f}",
        "vote_s": f"{vote.seconds:.0f}",
        "gsm8k_s": f"{gsm8k.seconds:.0f}",
        "metrics_table": table.group(1) if table else "(no metrics table)",
        "leaderboard": (header_rows.group(1) if header_rows else "") + "\n".join(rows),
        "score_2": f"{mmlu['score']:.2f}",
        "low_2": f"{low:.2f}",
        "high_2": f"{high:.2f}",
    }


def real_recipe(name: str) -> Callable[[Path], dict[str, str]]:
    """The commands of ``recipes/real/NAME.yaml``'s header that run it (fetches, variants with
    other options and the exporting ``predict`` left out), timed one by one."""

    def produce(workdir: Path) -> dict[str, str]:
        python = shlex.quote(sys.executable)
        values: dict[str, float] = {"fit_s": 0.0, "test_s": 0.0, "teacher_s": 0.0, "peak_gb": 0.0}
        cpu = {"fit": 0.0, "test": 0.0, "teacher": 0.0}
        runs = workdir / "runs"  # a fresh run folder and cache: no reused fit, no cached answer
        fresh = f"--run_dir {runs} --cache_path {workdir / 'cache.sqlite'} --wandb false"
        for command in recipe_commands(name):
            stage = command.split()[0]
            if "<id>" in command:
                teachers = [p for p in (runs / "mmlu_redux" / "majority_vote").iterdir() if p.is_dir()]
                teacher = max(teachers, key=lambda p: p.stat().st_mtime)
                command = command.replace("runs/mmlu_redux/majority_vote/<id>", str(teacher))
            run = timed(f"{python} -m moco_lit {command} {fresh}", ROOT)
            key = "teacher" if stage == "validate" else "fit" if stage == "fit" else "test"
            values[f"{key}_s"] += run.seconds
            cpu[key] += run.cpu_seconds
            values["peak_gb"] = max(values["peak_gb"], run.peak_gb)
        total = values["fit_s"] + values["test_s"]
        metrics = metrics_of(runs, recipe_benchmark(name), recipe_method(name))
        hits = round(metrics["score"] * metrics["n"])
        return {
            "fit_min": fmt_minutes(values["fit_s"]),
            "test_min": fmt_minutes(values["test_s"]),
            "teacher_min": fmt_minutes(values["teacher_s"]),
            "total_min": fmt_minutes(total),
            "total_s": f"{total:.0f}",
            "fit_s": f"{values['fit_s']:.0f}",
            "test_s": f"{values['test_s']:.0f}",
            "fit_clock": f"{int(values['fit_s'] // 60)} min {values['fit_s'] % 60:.0f} s",
            "test_clock": f"{int(values['test_s'] // 60)} min {values['test_s'] % 60:.0f} s",
            "cpu_s": f"{cpu['fit'] + cpu['test']:.0f}",
            "cpu_min": fmt_minutes(cpu["fit"] + cpu["test"]),
            "fit_cpu_s": f"{cpu['fit']:.0f}",
            "test_cpu_s": f"{cpu['test']:.0f}",
            "fit_cpu_min": f"{cpu['fit'] / 60:.1f}",
            "test_cpu_min": fmt_minutes(cpu["test"]),
            "peak_gb": f"{values['peak_gb']:.1f}",
            "score": f"{metrics['score']:.2f}",
            "hits": f"{hits}/{metrics['n']}",
            "n": str(metrics["n"]),
        }

    return produce


def fmt_minutes(seconds: float) -> str:
    """Minutes as the headers write them: halves below 5 min, whole minutes above."""
    minutes = seconds / 60
    rounded = round(minutes * 2) / 2 if minutes < 5 else round(minutes)
    return f"{rounded:g}"


def recipe_commands(name: str) -> list[str]:
    """The header's commands that run recipes/real/NAME.yaml (continuations joined), with
    ``python -m moco_lit`` taken off."""
    text = header((ROOT / "recipes" / "real" / f"{name}.yaml").read_text())
    joined = re.sub(r"\\\n#\s*", " ", text)
    out = []
    for line in joined.splitlines():
        found = re.match(r"#\s+(?:\d\.\s+)?(?:the teacher, on dev:\s+)?python -m moco_lit (.*)", line)
        if not found:
            continue
        command = re.split(r"\s+(?:#|\()", found.group(1))[0].strip()
        words = command.split()
        if words[0] not in {"fit", "validate", "test"}:
            continue  # fetches, predict --model.export_dir
        extra = [w for w in words[3:] if w not in {"--ckpt_path", "last"} and not w.startswith("runs/")]
        extra = [w for w in extra if w not in {"--model.teacher_run", "--data.dev_limit", "16", "..."}]
        if extra:
            continue  # a variant with options of its own
        if f"recipes/real/{name}.yaml" not in command and not (
            name == "distillation" and words[0] == "validate"
        ):
            continue  # another recipe's step (the distillation that makes the adapters)
        out.append(command)
    return out


def recipe_benchmark(name: str) -> str:
    import yaml

    data = yaml.safe_load((ROOT / "recipes" / "real" / f"{name}.yaml").read_text())
    return data.get("data", {}).get("benchmark", "quickstart")


def recipe_method(name: str) -> str:
    import yaml

    data = yaml.safe_load((ROOT / "recipes" / "real" / f"{name}.yaml").read_text())
    model = data["model"]
    path = model if isinstance(model, str) else model["class_path"]
    return path.rsplit(".", 2)[-2] if "." in path else path


# -- the registry ---------------------------------------------------------------------------------------

RECIPE_KEYS = frozenset(
    "fit_min test_min teacher_min total_min total_s fit_s test_s fit_clock test_clock cpu_s cpu_min "
    "fit_cpu_s test_cpu_s fit_cpu_min test_cpu_min peak_gb score hits n".split()
)

# what a recipe header quotes that no generic reader gives (a model's dev score, a count in the
# records): read off the measured run by hand
RECIPE_BY_HAND = {
    "bbmas": {"dev_gemma", "dev_smollm2"},
    "collm": {"mentor_tokens"},
    "graph_routing": {"dev_gemma", "dev_smollm2", "answering_min"},
    "heterogeneous_swarms": {"dev_best"},
}

# per recipe of recipes/real/: (pattern over its header, kind); named groups are the keys above
RECIPE_QUOTES: dict[str, list[tuple[str, Kind]]] = {
    "agglm": [(r"About (?P<fit_min>[\d.]+) min \(fit\) \+ (?P<test_min>[\d.]+) min \(test\)", "measurement")],
    "bbmas": [
        (
            r"About (?P<total_min>[\d.]+) min on a 2-core CPU \(OMP_NUM_THREADS=1; (?P<cpu_s>\d+) s of CPU",
            "measurement",
        ),
        (r"wins on dev \((?P<dev_gemma>[\d.]+) vs (?P<dev_smollm2>[\d.]+)\)", "result"),
    ],
    "cascade": [(r"About (?P<total_min>[\d.]+) min on a 2-core CPU", "measurement")],
    "collm": [
        (r"About (?P<fit_min>[\d.]+) min \(fit\) \+ (?P<test_min>[\d.]+) min \(test\)", "measurement"),
        (r"(?P<fit_cpu_min>[\d.]+) min of CPU, (?P<peak_gb>[\d.]+) GB peak", "measurement"),
        (r"the test scored (?P<hits>\d+/\d+)", "result"),
        (r"with (?P<mentor_tokens>[\d.]+) tokens a question", "result"),
    ],
    "graph_routing": [
        (r"About (?P<fit_min>[\d.]+) min \(fit\) \+ (?P<test_min>[\d.]+) min \(test\)", "measurement"),
        (r"the fit is (?P<answering_min>\d+) min answering dev", "measurement"),
        (
            r"Test score (?P<score>[\d.]+): every question routed to Gemma \(the dev-best, (?P<dev_gemma>[\d.]+) "
            r"against (?P<dev_smollm2>[\d.]+)\)",
            "result",
        ),
    ],
    "heterogeneous_swarms": [
        (
            r"About (?P<fit_min>[\d.]+) min \(fit\) \+ (?P<test_min>[\d.]+) min \(test\) on a 2-core CPU "
            r"\(OMP_NUM_THREADS=1; (?P<fit_cpu_s>\d+) s and (?P<test_cpu_s>\d+) s of CPU",
            "measurement",
        ),
        (r"scored (?P<dev_best>[\d.]+) on the 8 dev", "result"),
    ],
    "mentor_collab": [
        (
            r"About (?P<total_min>[\d.]+) min on a 2-core CPU \(OMP_NUM_THREADS=1; measured (?P<cpu_s>\d+) s of CPU",
            "measurement",
        ),
    ],
    "sparta": [
        (
            r"About (?P<cpu_min>[\d.]+) min on a 2-core CPU \(OMP_NUM_THREADS=1, CPU time: fit (?P<fit_cpu_min>[\d.]+) "
            r"min, test (?P<test_cpu_min>[\d.]+) min\)",
            "measurement",
        ),
        (
            r"fit (?P<fit_min>[\d.]+) min wall, test (?P<test_min>[\d.]+) min wall, peak memory (?P<peak_gb>[\d.]+) GB",
            "measurement",
        ),
        (r"test score (?P<score>[\d.]+) on 20 questions", "result"),
    ],
    "stackelberg": [
        (
            r"About (?P<total_min>[\d.]+) min on a 2-core CPU \(OMP_NUM_THREADS=1, shared: fit (?P<fit_clock>\d+ min \d+ s), "
            r"test (?P<test_clock>\d+ min \d+ s)\), peak memory\n# (?P<peak_gb>[\d.]+) GB",
            "measurement",
        ),
        (r"test score (?P<score>[\d.]+) on 20 questions", "result"),
    ],
    "distillation": [
        (r"About (?P<teacher_min>[\d.]+) min \(teacher\) \+ (?P<fit_min>[\d.]+) min \(fit\)", "measurement")
    ],
    "graph_routing_": [],
}
for _name in "dare_ties expo greedy_soup lorahub model_swarms multiagent_finetuning trained_router switch_generation".split():
    RECIPE_QUOTES[_name] = [
        (r"About (?P<fit_min>[\d.]+) min \(fit\) \+ (?P<test_min>[\d.]+) min \(test\)", "measurement")
    ]
for _name in (
    "knowledge_card llm_blender logit_contrastive logit_fusion majority_vote moa multiagent_feedback "
    "multiagent_refine nudging prompt_routing single_model slm_mux structure".split()
):
    RECIPE_QUOTES[_name] = [
        (r"About (?P<total_min>[\d.]+) min (?:for the 50 [^\n]*?)?on a 2-core CPU", "measurement")
    ]
del RECIPE_QUOTES["graph_routing_"]

QUICKSTART_KEYS = frozenset(
    "leaderboard router_gain router_low router_high cascade_gain cascade_low cascade_high distillation_gain "
    "distillation_low distillation_high distillation_p headline cascade_calls".split()
)
QUICKSTART_COMMAND = "python -m moco_lit quickstart"

SOURCES: dict[str, Source] = {
    "first_experiment": Source(
        "first_experiment",
        tuple(shlex.join(c) for c in readme_block("first-experiment")),
        first_experiment,
        quick=True,
        provides=frozenset({"best_single", "routed", "routed_low", "routed_high", "n"}),
        missing=quickstart_specialists_missing,
    ),
    "quickstart": Source(
        "quickstart",
        (QUICKSTART_COMMAND,),
        quickstart,
        quick=True,
        provides=QUICKSTART_KEYS,
        missing=quickstart_specialists_missing,
    ),
    "results_md": Source(
        "results_md",
        ("(benchmarks/RESULTS.md, the stress table)",),
        results_md,
        quick=True,
        provides=frozenset({"stress_slowdown"}),
    ),
    "quickstart_timing": Source(
        "quickstart_timing",
        (f"MOCO_LIT_HOME=<empty> {QUICKSTART_COMMAND}", f"{QUICKSTART_COMMAND}   (again)"),
        quickstart_timing,
        provides=frozenset({"first_min", "first_s", "rerun_s"}),
        by_hand=frozenset({"specialist_min_s", "specialist_max_s", "specialist_s", "retrain_s"}),
    ),
    "real_readme": Source(
        "real_readme",
        (
            "python -m moco_lit test -c recipes/real/single_model.yaml --data.limit 20",
            "python -m moco_lit test -c recipes/real/majority_vote.yaml --data.limit 20",
            "python -m moco_lit test -c recipes/real/single_model.yaml --data.limit 20 --data.benchmark gsm8k "
            "--model.max_new_tokens 256",
            "python -m moco_lit report runs",
        ),
        real_readme,
        provides=frozenset(
            {"single_s", "vote_s", "gsm8k_s", "metrics_table", "leaderboard", "score_2", "low_2", "high_2"}
        ),
        by_hand=frozenset({"vote_low", "vote_high"}),
        missing=real_missing,
    ),
    "real_readme_two_threads": Source(
        "real_readme_two_threads",
        ("the three real_readme runs without OMP_NUM_THREADS=1 (torch's two threads)",),
        lambda workdir: real_readme(workdir, threads="2"),
        provides=frozenset({"single_s_2", "vote_s_2", "gsm8k_min_2"}),
        missing=real_missing,
    ),
    "real_nudging": Source(
        "real_nudging",
        (
            "python -m moco_lit test --model nudging --model.collaborators '[gemma3-270m, smollm2-135m-instruct]' "
            "--data.benchmark mmlu_redux --data.limit 20 --model.max_new_tokens 32",
        ),
        lambda workdir: nudging_readme(workdir),
        provides=frozenset({"total_s", "score"}),
        by_hand=frozenset({"nudger_tokens"}),
        missing=real_missing,
    ),
}


def nudging_readme(workdir: Path) -> dict[str, str]:
    python = shlex.quote(sys.executable)
    run = timed(
        f"{python} -m moco_lit test --model nudging --model.collaborators '[gemma3-270m, smollm2-135m-instruct]' "
        f"--data.benchmark mmlu_redux --data.limit 20 --model.max_new_tokens 32 --run_dir {workdir / 'runs'} "
        "--wandb false",
        ROOT,
    )
    metrics = metrics_of(workdir / "runs", "mmlu_redux", "nudging")
    return {"total_s": f"{run.seconds:.0f}", "score": f"{metrics['score']:.2f}"}


for _name, _quotes in RECIPE_QUOTES.items():
    SOURCES[f"recipe:{_name}"] = Source(
        f"recipe:{_name}",
        tuple(f"python -m moco_lit {c}" for c in recipe_commands(_name)),
        real_recipe(_name),
        provides=RECIPE_KEYS,
        by_hand=frozenset(RECIPE_BY_HAND.get(_name, ())),
        missing=real_missing,
    )

QUOTES: list[Quote] = [
    # the quickstart (CI runs it before the tests)
    Quote(README, r"```\n(?P<leaderboard>method +multiply.*?)\n```", "quickstart", "result"),
    Quote(
        README,
        r"the trained router \((?P<router_gain>[+\-]\d\.\d{3}), paired 95% CI\n\[(?P<router_low>[+\-]\d\.\d{3}), "
        r"(?P<router_high>[+\-]\d\.\d{3})\]\) and the cascade \((?P<cascade_gain>[+\-]\d\.\d{3}), "
        r"\[(?P<cascade_low>[+\-]\d\.\d{3}), (?P<cascade_high>[+\-]\d\.\d{3})\]\)",
        "quickstart",
        "result",
    ),
    Quote(
        README,
        r"distillation's (?P<distillation_gain>[+\-]\d\.\d{3}) has\n\[(?P<distillation_low>[+\-−]\d\.\d{3}), "
        r"(?P<distillation_high>[+\-]\d\.\d{3})\] \(McNemar p = (?P<distillation_p>\d\.\d\d)\)",
        "quickstart",
        "result",
    ),
    Quote(README, r'its headline reads "(?P<headline>[^"]+)"', "quickstart", "result"),
    Quote(
        README,
        r"gets most of the way at (?P<cascade_calls>[\d.]+) calls per question",
        "quickstart",
        "result",
    ),
    Quote(
        README,
        r"`time python -m moco_lit quickstart` took (?P<first_min>\d+) min (?P<first_s>\d+) s the first time\n"
        r"\(the three specialists trained in (?P<specialist_min_s>\d+)–(?P<specialist_max_s>\d+) s each\) and "
        r"(?P<rerun_s>\d+) s afterwards",
        "quickstart_timing",
        "measurement",
    ),
    Quote(
        README,
        r"rerun trains nothing \(about (?P<rerun_s>\d+) s here, where training every time took (?P<retrain_s>\d+) s\)",
        "quickstart_timing",
        "measurement",
    ),
    # the first experiment
    Quote(
        README,
        r"alone scores (?P<best_single>\d\.\d{3}) \(each knows one of the three skills\), the routed\n"
        r"collaboration (?P<routed>\d\.\d{3}) \(95% CI \[(?P<routed_low>\d\.\d{3}), (?P<routed_high>\d\.\d{3})\]\) "
        r"on the (?P<n>\d+) test questions",
        "first_experiment",
        "result",
    ),
    # benchmarks/RESULTS.md
    Quote(
        README,
        r"\((?P<stress_slowdown>\d+)×\s+slower\s+on\s+the\s+10,000-example\s+stress\s+run\s+in\s+`benchmarks/RESULTS.md`\)",
        "results_md",
        "result",
    ),
    # real models (python benchmarks/quoted_numbers.py --check --all)
    Quote(
        README,
        r"(?P<single_s>\d+) s for `single_model` on mmlu_redux, (?P<vote_s>\d+) s for\n`majority_vote` "
        r"\(100 sampled answers\), (?P<gsm8k_s>\d+) s for gsm8k",
        "real_readme",
        "measurement",
    ),
    Quote(
        README,
        r"the\s+same\s+runs\s+took (?P<single_s_2>\d+) s, (?P<vote_s_2>\d+) s and (?P<gsm8k_min_2>[\d.]+) min",
        "real_readme_two_threads",
        "measurement",
    ),
    Quote(README, r"```\n(?P<metrics_table>┏.*?┘)\n```", "real_readme", "result"),
    Quote(README, r"leaderboard:\n\n(?P<leaderboard>\| setting \| method .*?)\n\n", "real_readme", "result"),
    Quote(
        README,
        r"On 20 questions a score of (?P<score_2>[\d.]+) could be anything from (?P<low_2>[\d.]+) to (?P<high_2>[\d.]+), "
        r"and the vote's gain anything\nfrom (?P<vote_low>−[\d.]+) to (?P<vote_high>\+[\d.]+)",
        "real_readme",
        "result",
    ),
    Quote(README, r"answer with \"A\)\" \((?P<score_2>[\d.]+) on these 20", "real_readme", "result"),
    Quote(
        README,
        r"Here \(one thread\) that took (?P<total_s>\d+) s and",
        "real_nudging",
        "measurement",
    ),
    Quote(
        README,
        r"that took \d+ s and scored (?P<score>[\d.]+): SmolLM2 wrote about (?P<nudger_tokens>\d+) tokens per answer",
        "real_nudging",
        "result",
    ),
    Quote(README, r"\(`moa.yaml`: (?P<total_s>\d+) s,", "recipe:moa", "measurement"),
    Quote(README, r"`moa.yaml`: \d+ s, (?P<score>[\d.]+) on its 20 questions", "recipe:moa", "result"),
    Quote(README, r"where SmolLM2 alone scored (?P<score_2>[\d.]+)\nabove", "real_readme", "result"),
]
for _name in ("single_model", "trained_router"):
    QUOTES.append(
        Quote(
            f"recipes/quickstart/{_name}.yaml",
            r"trained on first use, ~(?P<specialist_s>\d+) s each",
            "quickstart_timing",
            "measurement",
        )
    )
for _name, _quotes in RECIPE_QUOTES.items():
    QUOTES += [
        Quote(f"recipes/real/{_name}.yaml", pattern, f"recipe:{_name}", kind) for pattern, kind in _quotes
    ]

# numbers that look like results but are settings, constants or names (each with why)
NOT_QUOTED: list[tuple[str, str, str]] = [
    (README, r"arXiv 2601\.21257", "the paper's arXiv id"),
    (README, r"95% (?:CI|confidence)|95% CI|paired 95%|\(95% CI", "the confidence level of every interval"),
    (README, r"p < 0\.05", "the significance level"),
    (README, r"--data\.limit 0\.1", "an option value"),
    (README, r"temperature 0\.7, top_p 0\.9|dropout 0\.1", "MoCo's defaults"),
    (README, r"chance is 0\.25", "one in four choices"),
    (README, r"a 93 MB wheel", "the size of the models wheel on the package index"),
    (README, r"Most take\n1–5 minutes here", "the range of the recipes/real/ headers' times"),
    ("recipes/", r"24% of steps", "MoCo's rule (an integer drawn in 1..100 below 25)"),
    ("recipes/", r"80/10/10", "MoCo's split of dev"),
    ("recipes/", r"temperature 0\.7, top_p 0\.9", "MoCo's defaults"),
    ("recipes/", r"samples at 1\.0|temperature 1\.0", "MoCo's temperature"),
]

CANDIDATE = re.compile(
    r"""(?x)
    (?<![\w.=/\-+−])
    (?:
        [+\-−]?\d+(?:\.\d+)?\s?(?:%|×|x\b|s\b|min(?:utes?)?\b|h\b|GB\b|MB\b|GiB\b|MiB\b|tokens/s\b)
      | [+\-−]?\d*\.\d+
      | \d+/\d+\b
      | \d+\ of\ \d+\b
    )"""
)


def lint_files() -> list[str]:
    return [README, *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "recipes").rglob("*.yaml"))]


def unregistered() -> list[str]:
    """Every number in README.md or a recipe header that looks like a result or a timing and that no
    quote or NOT_QUOTED entry covers: ``file:line: number``."""
    covered: dict[str, list[tuple[int, int]]] = {}
    for quote in QUOTES:
        match = find(quote)
        covered.setdefault(quote.file, []).append(match.span())
    problems = []
    for file in lint_files():
        text = scanned_text(file)
        spans = list(covered.get(file, []))
        for prefix, pattern, _ in NOT_QUOTED:
            if file == prefix or (prefix.endswith("/") and file.startswith(prefix)):
                spans += [m.span() for m in re.finditer(pattern, text)]
        for number in CANDIDATE.finditer(text):
            if not any(start <= number.start() and number.end() <= end for start, end in spans):
                line = text.count("\n", 0, number.start()) + 1
                problems.append(f"{file}:{line}: {number.group(0).strip()}")
    return problems


# -- checking and writing -------------------------------------------------------------------------------


def regenerate(source: Source) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix=f"quoted-{source.name.replace(':', '-')}-") as folder:
        return source.produce(Path(folder))


def check(
    sources: list[str], write: bool = False, produced: dict[str, dict[str, str]] | None = None
) -> list[Finding]:
    """Regenerate ``sources`` (or take ``produced``) and compare every quote of theirs; with
    ``write``, put the new values in the files."""
    produced = dict(produced or {})
    findings: list[Finding] = []
    for name in sources:
        source = SOURCES[name]
        why = source.missing()
        if name not in produced and why is None:
            produced[name] = regenerate(source)
        values = produced.get(name)
        edits: dict[str, list[tuple[int, int, str]]] = {}
        for quote in [q for q in QUOTES if q.source == name]:
            match = find(quote)
            for key in quote.keys:
                quoted = match.group(key)
                if values is None:
                    findings.append(Finding(quote, key, quoted, None, "not run", why or ""))
                elif key in source.by_hand:
                    findings.append(Finding(quote, key, quoted, None, "by hand", f"read off the {name} run"))
                elif key not in values:
                    findings.append(Finding(quote, key, quoted, None, "not run", f"{name} gave no {key}"))
                elif quote.kind == "measurement":
                    findings.append(Finding(quote, key, quoted, values[key], "refreshed"))
                    edits.setdefault(quote.file, []).append((*match.span(key), values[key]))
                else:
                    same = equal(values[key], quoted)
                    findings.append(Finding(quote, key, quoted, values[key], "same" if same else "differs"))
                    if not same:
                        edits.setdefault(quote.file, []).append((*match.span(key), values[key]))
        if write:
            for file, changes in edits.items():
                text = (ROOT / file).read_text(encoding="utf-8")
                for start, end, value in sorted(changes, reverse=True):
                    text = text[:start] + value + text[end:]
                (ROOT / file).write_text(text, encoding="utf-8")
    return findings


def equal(regenerated: str, quoted: str) -> bool:
    """A block (a table) as it is; a phrase up to how its lines wrap."""
    if "\n" in regenerated:
        return regenerated == quoted
    return " ".join(regenerated.split()) == " ".join(quoted.split())


def differences(findings: list[Finding]) -> list[str]:
    return [
        f"{f.quote.file}: {f.key} ({f.quote.source}) quotes {f.quoted!r}, the run gives {f.regenerated!r}"
        for f in findings
        if f.status == "differs"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="rerun the sources, list what differs")
    action.add_argument("--write", action="store_true", help="rewrite the quoted values in place")
    action.add_argument("--lint", action="store_true", help="every quoted-looking number is registered")
    action.add_argument("--list", action="store_true", help="every quote with its source and commands")
    parser.add_argument("--all", action="store_true", help="the real-model sources too (minutes each)")
    parser.add_argument("--source", action="append", help="only this source (repeatable)")
    args = parser.parse_args(argv)
    if args.lint:
        problems = unregistered()
        for problem in problems:
            print(f"{problem}  (register it in benchmarks/quoted_numbers.py QUOTES or NOT_QUOTED)")
        return 1 if problems else 0
    if args.list:
        for name, source in SOURCES.items():
            quotes = [q for q in QUOTES if q.source == name]
            keys = ", ".join(k for q in quotes for k in q.keys)
            print(f"{name} ({'quick' if source.quick else '--all'}): {keys}")
            for command in source.commands:
                print(f"    {command}")
        return 0
    chosen = args.source or [n for n, s in SOURCES.items() if s.quick or args.all]
    findings = check(chosen, write=args.write)
    for finding in findings:
        if finding.status in {"not run", "by hand"}:
            print(
                f"{finding.status}: {finding.quote.file} {finding.key} = {finding.quoted!r} ({finding.why})"
            )
        elif finding.status == "refreshed" and finding.quoted != finding.regenerated:
            print(f"measured: {finding.quote.file} {finding.key}: {finding.quoted} -> {finding.regenerated}")
    problems = differences(findings)
    for problem in problems:
        print(("rewritten: " if args.write else "differs: ") + problem)
    checked = sum(f.status == "same" for f in findings)
    print(f"{checked} quoted results regenerated and equal, {len(problems)} differ")
    return 1 if problems and not args.write else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
