"""Sweeps: a grid of methods × benchmarks × model pools, run one after another in one process.

``python -m moco_lit sweep -c sweeps/<name>.yaml`` (or ``--methods … --benchmarks …
--collaborators …``) turns the grid into cells, each one ``python -m moco_lit test`` command run
in this process, so pooled collaborators and the generation cache serve every cell. The
``single_model`` baseline of every (pool, benchmark) setting is always a cell, and runs first.

A cell whose run folder (the config hash decides it) already holds ``metrics.json`` for the same
experiment is skipped, so a killed sweep restarts where it stopped; a failing cell is recorded
with its error and the sweep goes on. ``<run_dir>/sweeps/<name>.json`` holds every cell's status,
run folder and score after each cell; ``python -m moco_lit report <name>`` compares them.

Sweep file::

    name: text_methods              # W&B group and summary name
    run_dir: runs
    pools:                          # or `collaborators: [...]` for one pool called "pool"
      small: [smollm2-135m-instruct, gemma3-270m]
    benchmarks: [gsm8k, mmlu_redux]
    methods:
      - majority_vote                               # a short name
      - {method: majority_vote, label: mv-dev, args: {tie: dev-based}}
      - {recipe: recipes/text/moa.yaml}             # a recipe (collaborators and benchmark replaced)
    model: {max_new_tokens: 256}    # --model.* for every cell, the baseline included
    data: {limit: 100}              # --data.* for every cell
    args: ["--trainer.devices", "1"]   # any other CLI arguments for every cell
    scoring: moco                   # MoCo's own scoring rules (default: moco_lit's)
    seeds: [0, 1, 2]                # every cell once per seed (--model.seed, --seed_everything)
    wandb: true

With ``seeds`` (or ``--seeds 0,1,2``) each cell runs once per seed, each seed in its own run folder
(the seed is part of the run id); the report folds the seeds of a cell into one row.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moco_lit.argv import CommandParser
from moco_lit.errors import UserError
from moco_lit.evaluation.metrics import SCORINGS
from moco_lit.lightning_cli import MocoCLI, expand_method_names, finish_wandb_run, run_lightning
from moco_lit.quiet import quiet_runs
from moco_lit.results import summary_path
from moco_lit.runs import RunFolder, experiment_config, run_id_for
from moco_lit.seeds import SeedSpread, parse_seeds, seed_args
from moco_lit.shipped import resolve_sweep

log = logging.getLogger(__name__)

BASELINE = "single_model"
SWEEP_KEYS = {"name", "run_dir", "pools", "collaborators", "benchmarks", "methods", "model", "data", "args"}
SWEEP_KEYS |= {"wandb", "wandb_project", "progress", "scoring", "seeds"}


@dataclass
class Cell:
    """One experiment of the grid: a method (short name or recipe) on one benchmark with one pool."""

    label: str
    method: str | None
    recipe: str | None
    benchmark: str
    pool: str
    collaborators: list[str]
    method_args: list[str] = field(default_factory=list)
    seed: int | None = None  # None: the method's own seed (no `seeds` in the sweep)


@dataclass
class CellResult:
    index: int
    label: str
    benchmark: str
    pool: str
    status: str = "pending"  # pending | done | cached | failed
    run_folder: str | None = None
    score: float | None = None
    seconds: float = 0.0
    error: str | None = None
    score_ci: list[float] | None = None  # the score's interval over examples, from metrics.json
    seed: int | None = None


@dataclass
class Sweep:
    name: str
    pools: dict[str, list[str]]
    benchmarks: list[str]
    methods: list[dict]
    run_dir: str = "runs"
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    wandb: bool = True
    wandb_project: str | None = None
    progress: bool = False
    scoring: str = "moco_lit"
    seeds: list[int] = field(default_factory=list)

    @property
    def summary_path(self) -> Path:
        return summary_path(self.run_dir, self.name)

    def cells(self) -> list[Cell]:
        """The grid, setting by setting; the single-model baseline first in each setting; the
        seeds of a cell one after another."""
        entries = [_method_entry(m) for m in self.methods]
        if not any(e.get("method") == BASELINE for e in entries):
            entries.insert(0, {"method": BASELINE})
        entries.sort(key=lambda e: e.get("method") != BASELINE)  # stable: the rest keep their order
        cells = []
        for pool, collaborators in self.pools.items():
            for benchmark in self.benchmarks:
                for entry in entries:
                    for seed in self.seeds or [None]:
                        cells.append(
                            Cell(
                                label=entry.get("label") or _default_label(entry),
                                method=entry.get("method"),
                                recipe=entry.get("recipe"),
                                benchmark=benchmark,
                                pool=pool,
                                collaborators=list(collaborators),
                                method_args=_overrides("model", entry.get("args") or {}),
                                seed=seed,
                            )
                        )
        return cells

    def argv(self, cell: Cell, extra: list[str] = ()) -> list[str]:
        """The ``test`` command of a cell (what ``python -m moco_lit`` would be given)."""
        argv = ["test"]
        if cell.recipe:
            argv += ["-c", cell.recipe]
        if cell.method:
            argv += ["--model", cell.method]
        argv += ["--model.collaborators", _yaml_value(cell.collaborators)]
        argv += ["--data.benchmark", cell.benchmark]
        argv += _overrides("model", self.model) + cell.method_args + _overrides("data", self.data)
        if cell.seed is not None:
            argv += seed_args(cell.seed)
        argv += ["--run_dir", self.run_dir, "--wandb", _yaml_value(self.wandb), "--wandb_group", self.name]
        if self.scoring != "moco_lit":
            argv += ["--scoring", self.scoring]
        if self.wandb_project:
            argv += ["--wandb_project", self.wandb_project]
        if not self.progress:
            argv += ["--progress", "false", "--trainer.enable_progress_bar", "false", "--verbose", "false"]
        return argv + list(self.args) + list(extra)


def _method_entry(entry: Any) -> dict:
    if isinstance(entry, str):
        return {"recipe": entry} if entry.endswith((".yaml", ".yml")) else {"method": entry}
    if isinstance(entry, dict) and ("method" in entry or "recipe" in entry):
        unknown = set(entry) - {"method", "recipe", "label", "args"}
        if not unknown:
            return dict(entry)
    raise UserError(
        f"sweep method entry {entry!r}: expected a method name, a recipe path, or "
        "{method: NAME | recipe: PATH, label: TEXT, args: {argument: value}}"
    )


def _default_label(entry: dict) -> str:
    base = entry.get("method") or Path(entry["recipe"]).stem
    args = entry.get("args") or {}
    return base + (" (" + ", ".join(f"{k}={v}" for k, v in args.items()) + ")" if args else "")


def _yaml_value(value: Any) -> str:
    """A value as the CLI parses it (YAML): strings as they are, the rest in flow style."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...")


def _overrides(prefix: str, values: dict[str, Any]) -> list[str]:
    argv = []
    for key, value in values.items():
        argv += [f"--{prefix}.{key}", _yaml_value(value)]
    return argv


def _read_spec(path: Path) -> Any:
    """The YAML of a sweep file; unreadable text or bad YAML is one error line naming the file."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        reason = " ".join(str(err).split())
        raise UserError(f"cannot read the sweep file {path}: {reason}") from err


def load_sweep(path: str | Path) -> Sweep:
    """A sweep file by path, or by name (``scripted_demo``: ``sweeps/scripted_demo.yaml``)."""
    path = Path(resolve_sweep(str(path)))
    spec = _read_spec(path)
    if not isinstance(spec, dict):
        raise UserError(f"{path}: a sweep file is a mapping with {', '.join(sorted(SWEEP_KEYS))}")
    spec.setdefault("name", path.stem)
    return sweep_from_spec(spec, str(path))


def sweep_from_spec(spec: dict, where: str = "sweep") -> Sweep:
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise UserError(
            f"{where}: unknown keys {sorted(unknown)}; a sweep has {', '.join(sorted(SWEEP_KEYS))}"
        )
    pools = spec.get("pools") or ({"pool": spec["collaborators"]} if spec.get("collaborators") else None)
    if not pools or not isinstance(pools, dict) or not all(isinstance(v, list) and v for v in pools.values()):
        raise UserError(f"{where}: give `collaborators: [model, ...]` or `pools: {{name: [model, ...]}}`")
    for key in ("benchmarks", "methods"):
        if not isinstance(spec.get(key), list) or not spec[key]:
            raise UserError(f"{where}: `{key}` must be a non-empty list")
    if not spec.get("name"):
        raise UserError(f"{where}: the sweep needs a `name` (the W&B group and summary file)")
    return Sweep(
        name=str(spec["name"]),
        pools={str(k): [str(m) for m in v] for k, v in pools.items()},
        benchmarks=[str(b) for b in spec["benchmarks"]],
        methods=list(spec["methods"]),
        run_dir=str(spec.get("run_dir") or "runs"),
        model=dict(spec.get("model") or {}),
        data=dict(spec.get("data") or {}),
        args=[str(a) for a in spec.get("args") or []],
        wandb=bool(spec.get("wandb", True)),
        wandb_project=spec.get("wandb_project"),
        progress=bool(spec.get("progress", False)),
        scoring=_scoring(spec.get("scoring"), where),
        seeds=_seeds(spec, where),
    )


def _seeds(spec: dict, where: str) -> list[int]:
    if spec.get("seeds") is None:
        return []
    seeds = parse_seeds(spec["seeds"], f"{where}: seeds")
    method_seeds = [
        str(m.get("label") or m.get("method") or m.get("recipe"))
        for m in spec["methods"]
        if isinstance(m, dict) and "seed" in (m.get("args") or {})
    ]
    if "seed" in (spec.get("model") or {}) or method_seeds:
        where_seed = "model: {seed}" if "seed" in (spec.get("model") or {}) else f"args of {method_seeds[0]}"
        raise UserError(
            f"{where}: `seeds` sets every cell's --model.seed, and {where_seed} sets it too; keep one"
        )
    return seeds


def _scoring(value: Any, where: str) -> str:
    scoring = "moco_lit" if value is None else str(value)
    if scoring not in SCORINGS:
        raise UserError(f"{where}: unknown scoring {scoring!r}; expected one of: {', '.join(SCORINGS)}")
    return scoring


# -- finding a cell's run folder without running it ----------------------------------------------


def planned_run_folder(argv: list[str]) -> Path:
    """The run folder ``python -m moco_lit <argv>`` would use (parses the config, builds nothing)."""

    class ConfigOnly(MocoCLI):
        def instantiate_classes(self) -> None:  # parse only: no model, data or trainer
            pass

        def after_instantiate_classes(self) -> None:
            pass

        def _run_subcommand(self, subcommand: str) -> None:
            pass

    cli = ConfigOnly(args=expand_method_names(argv))
    config = cli.config[cli.subcommand]
    run_id = config.get("run_id") or run_id_for(experiment_config(config))
    class_path = config["model"]["class_path"]
    module_name, _, class_name = class_path.rpartition(".")
    method = getattr(__import__(module_name, fromlist=[class_name]), class_name).method_name
    return RunFolder.for_experiment(
        config["run_dir"], config["data"]["benchmark"], method, run_id, "test"
    ).path


def finished(folder: Path) -> bool:
    """The folder holds a finished test run of the experiment its name (the config hash) stands for."""
    if not (folder / "metrics.json").exists() or not (folder / "config.yaml").exists():
        return False
    config = RunFolder(folder).read_config()
    if config.get("run_id"):
        return True  # an explicit id: the folder is the experiment by definition
    return run_id_for(experiment_config(config)) == folder.name


# -- running -------------------------------------------------------------------------------------


def run_sweep(sweep: Sweep, extra: list[str] = (), out=None, verbose: bool = False) -> list[CellResult]:
    """Run every cell not finished yet; returns the results (also written to the summary file).
    ``verbose``: every cell's own log lines between the table's rows (by default warnings only)."""
    out = out or sys.stdout

    cells = sweep.cells()
    results = [CellResult(i + 1, c.label, c.benchmark, c.pool, seed=c.seed) for i, c in enumerate(cells)]
    table = ProgressTable(out, len(cells), seeds=bool(sweep.seeds))
    print(f"sweep {sweep.name}: {len(cells)} cells → {sweep.summary_path}", file=out, flush=True)
    table.header()
    for cell, result in zip(cells, results):
        started = time.perf_counter()
        try:
            argv = sweep.argv(cell, extra)
            folder = planned_run_folder(argv)
            result.run_folder = str(folder)
            if finished(folder):
                result.status = "cached"
            else:
                with quiet_runs(not verbose):
                    cli = run_lightning(argv)
                result.run_folder = str(cli.model.runtime.run_folder.path)
                result.status = "done"
            metrics = json.loads((Path(result.run_folder) / "metrics.json").read_text())
            result.score = metrics.get("score")
            result.score_ci = metrics.get("score_ci")
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # noqa: BLE001 - a failed cell must not stop the sweep (SystemExit too)
            result.status = "failed"
            result.error = f"{type(err).__name__}: {err}".strip()
            log.debug("cell %s failed", cell.label, exc_info=True)
        finally:
            finish_wandb_run()  # each cell its own W&B run
        result.seconds = round(time.perf_counter() - started, 2)
        table.row(result)
        write_summary(sweep, results)
    table.footer(results, sweep.summary_path)
    return results


def write_summary(sweep: Sweep, results: list[CellResult]) -> Path:
    path = sweep.summary_path
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "sweep": sweep.name,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "spec": asdict(sweep),
        "cells": [asdict(r) for r in results],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(path)
    return path


class ProgressTable:
    """Prints one row per cell as it finishes, then the totals."""

    COLUMNS = (
        ("#", 5),
        ("method", 28),
        ("benchmark", 22),
        ("pool", 12),
        ("status", 7),
        ("score", 7),
        ("95% CI", 12),
        ("s", 7),
    )

    def __init__(self, out, total: int, seeds: bool = False) -> None:
        self.out = out
        self.total = total
        self.seeds = seeds
        at = [name for name, _ in self.COLUMNS].index("status")
        self.columns = self.COLUMNS[:at] + (("seed", 4),) + self.COLUMNS[at:] if seeds else self.COLUMNS

    def _line(self, cells: list[str]) -> str:
        return "  ".join(str(c)[:w].ljust(w) for c, (_, w) in zip(cells, self.columns)).rstrip()

    def header(self) -> None:
        print(self._line([name for name, _ in self.columns]), file=self.out)
        print(self._line(["-" * w for _, w in self.columns]), file=self.out, flush=True)

    def row(self, r: CellResult) -> None:
        score = "-" if r.score is None else f"{r.score:.3f}"
        interval = "-" if not r.score_ci else f"[{r.score_ci[0]:.2f}, {r.score_ci[1]:.2f}]"
        seed = [str(r.seed)] if self.seeds else []
        cells = [
            f"{r.index}/{self.total}",
            r.label,
            r.benchmark,
            r.pool,
            *seed,
            r.status,
            score,
            interval,
            f"{r.seconds:.1f}",
        ]
        print(self._line(cells), file=self.out, flush=True)
        if r.error:
            print(f"      error: {r.error.splitlines()[0][:200]}", file=self.out, flush=True)

    def footer(self, results: list[CellResult], path: Path) -> None:
        counts = {s: sum(r.status == s for r in results) for s in ("done", "cached", "failed")}
        if self.seeds:
            self.seed_spreads(results)
        print(
            f"\n{counts['done']} run, {counts['cached']} already finished, {counts['failed']} failed; "
            f"summary in {path}",
            file=self.out,
            flush=True,
        )

    def seed_spreads(self, results: list[CellResult]) -> None:
        """One line per cell run with several seeds: the mean score ± its spread over seeds."""
        by_cell: dict[tuple[str, str, str], list[CellResult]] = {}
        for r in results:
            if r.score is not None and r.seed is not None:
                by_cell.setdefault((r.label, r.benchmark, r.pool), []).append(r)
        if by_cell:
            print("\nover seeds (the score's spread between seeds, not over examples):", file=self.out)
        for (label, benchmark, pool), cell in by_cell.items():
            spread = SeedSpread([r.seed for r in cell], [r.score for r in cell])
            print(f"  {label}  {benchmark}  {pool}: {spread.text()}", file=self.out, flush=True)


def main(argv: list[str]) -> int:
    """``python -m moco_lit sweep``: exit code 0 when every cell finished, 1 when one failed."""
    parser = CommandParser(
        prog="python -m moco_lit sweep",
        description="Run methods × benchmarks × pools one after another in one process; finished cells "
        "are skipped. Other --model.* / --data.* / --trainer.* arguments go to every cell.",
    )
    parser.add_argument("-c", "--config", default=None, help="sweep file (sweeps/<name>.yaml)")
    parser.add_argument("--name", default=None, help="sweep name (W&B group, summary file)")
    parser.add_argument("--methods", nargs="+", default=None, help="method short names or recipe files")
    parser.add_argument("--benchmarks", nargs="+", default=None)
    parser.add_argument("--collaborators", nargs="+", default=None, help="one pool of models")
    parser.add_argument("--run_dir", default=None, help="root of the run folders (default: runs)")
    parser.add_argument("--wandb", default=None, choices=["true", "false"], help="log every cell to W&B")
    parser.add_argument(
        "--scoring", default=None, choices=["moco_lit", "moco"], help="moco: MoCo's own rules"
    )
    parser.add_argument("--seeds", default=None, help="run every cell once per seed, e.g. 0,1,2")
    parser.add_argument("--verbose", action="store_true", help="every cell's log lines between the rows")
    args, extra = parser.parse_known_args(argv)
    spec: dict[str, Any] = {}
    if args.config:
        path = Path(resolve_sweep(args.config))
        spec = _read_spec(path)
        if not isinstance(spec, dict):
            raise UserError(f"{path}: a sweep file is a mapping with {', '.join(sorted(SWEEP_KEYS))}")
        spec.setdefault("name", path.stem)
    for key in ("name", "methods", "benchmarks", "collaborators", "run_dir", "scoring", "seeds"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if args.collaborators:
        spec.pop("pools", None)
    if args.wandb is not None:
        spec["wandb"] = args.wandb == "true"
    if not spec.get("name"):
        spec["name"] = "sweep-" + time.strftime("%Y%m%d-%H%M%S")
    sweep = sweep_from_spec(spec, args.config or "the command line")
    if sweep.seeds and any(a.split("=", 1)[0] in ("--model.seed", "--seed_everything") for a in extra):
        raise UserError("seeds set every cell's --model.seed and --seed_everything; give one or the other")
    results = run_sweep(sweep, extra, verbose=args.verbose)
    print(f"compare them: python -m moco_lit report {sweep.name} --run_dir {sweep.run_dir}")
    return 1 if any(r.status == "failed" for r in results) else 0
