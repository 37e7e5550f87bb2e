"""The LightningCLI behind ``fit``/``validate``/``test``/``predict``.

Before a Lightning command runs, this class fixes the run folder (``runs/<benchmark>/<method>/
<run-id>``, the id hashed from the experiment's configuration so reruns resume), writes its
``config.yaml``, hands the run-level options (cache, progress) to the method, and attaches a
W&B logger (offline when no credentials are configured; skipped when wandb is off or missing).
"""

from __future__ import annotations

import atexit
import errno
import importlib
import inspect
import logging
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from jsonargparse import ArgumentError, Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI

from moco_lit import fit_reuse, methods
from moco_lit.callbacks import DEFAULT_CALLBACKS, LAST, IterationCheckpoint, RunFolderWriter
from moco_lit.data import BenchmarkDataModule
from moco_lit.errors import UserError, did_you_mean, first_line
from moco_lit.evaluation.sandbox import allow_unsafe_code_execution
from moco_lit.methods.core.module import CollaborationModule
from moco_lit.processes import die_with_parent, usable_cores
from moco_lit.provenance import provenance
from moco_lit.runs import RunFolder, experiment_config, plain_value, run_id_for
from moco_lit.shipped import resolve as resolve_shipped
from moco_lit.tracking import RunLogger, job_type, method_arguments, wandb_run_id

log = logging.getLogger(__name__)

TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "auto",
    "devices": 1,
    "max_epochs": 1,
    "logger": False,
    "num_sanity_val_steps": 0,
    # BenchmarkDataModule shards without padding: Lightning's sampler would duplicate examples
    "use_distributed_sampler": False,
    "enable_model_summary": False,
    # fits here are a few dozen steps: Lightning's default (every 50) would log no loss curve
    "log_every_n_steps": 1,
}


class MocoCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        if _launched_worker():
            die_with_parent()
        if logging.root.level > logging.INFO:  # not --debug: no seed, device or loading chatter
            for chatty in ("lightning.pytorch", "lightning.fabric"):  # (set once Lightning is imported)
                logging.getLogger(chatty).setLevel(logging.WARNING)
        super().__init__(
            CollaborationModule,
            BenchmarkDataModule,
            subclass_mode_model=True,
            save_config_callback=None,
            trainer_defaults=TRAINER_DEFAULTS,
            auto_configure_optimizers=False,
            parser_kwargs={"exit_on_error": False, "prog": "python -m moco_lit"},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser) -> None:
        # run I/O (resume, cost, run folder, W&B table) as callbacks a config can list, replace or drop
        parser.set_defaults({"trainer.callbacks": [dict(callback) for callback in DEFAULT_CALLBACKS]})
        parser.add_argument("--cache", type=bool, default=True, help="use the generation cache")
        parser.add_argument("--cache_path", type=str | None, default=None, help="generation cache file")
        parser.add_argument(
            "--generation_backend",
            type=Literal["hf", "vllm", "llama_cpp"],
            default="hf",
            help="plain generation with transformers (hf), vLLM (needs vllm installed) or llama.cpp "
            "for GGUF models (needs the llama extra)",
        )
        parser.add_argument(
            "--finished_rows_leave",
            type=bool,
            default=False,
            help="generate with the engine's own token loop, in which ended rows leave the batch "
            "(model.generate's outputs; faster when answers end far apart)",
        )
        parser.add_argument(
            "--refit", type=bool, default=False, help="fit: train again even when a finished fit matches"
        )
        parser.add_argument("--run_dir", type=str, default="runs", help="root of the run folders")
        parser.add_argument("--run_id", type=str | None, default=None, help="default: hash of the config")
        parser.add_argument("--wandb", type=bool, default=True, help="log to Weights & Biases")
        parser.add_argument("--wandb_project", type=str, default="moco_lit")
        parser.add_argument("--wandb_group", type=str | None, default=None, help="default: the benchmark")
        parser.add_argument("--progress", type=bool, default=True, help="progress bars")
        parser.add_argument(
            "--allow_unsafe_code_execution",
            type=bool,
            default=False,
            help="coding scores without bubblewrap: run model-written code with best-effort limits only",
        )
        parser.add_argument(
            "--scoring",
            type=Literal["moco_lit", "moco"],
            default="moco_lit",
            help="moco_lit's corrected scoring, or moco: MoCo's own rules, quirks included",
        )

    def parse_arguments(self, parser, args) -> None:
        self._args = list(args or [])
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise UserError(_explain_parse_error(err, parser, args)) from err

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads the checkpoint's hyperparameters before anything else: check it first
        subcommand = str(self.config.get("subcommand"))
        subcommand_config = self.config.get(subcommand, self.config)
        _resolve_named_checkpoint(subcommand_config, subcommand)
        _check_checkpoint(subcommand_config.get("ckpt_path"))
        _check_checkpoint_method(subcommand_config)
        super()._parse_ckpt_path()

    def instantiate_classes(self) -> None:
        subcommand_config = self.config.get(str(self.config.get("subcommand")), self.config)
        if isinstance(subcommand_config.get("trainer"), Namespace):
            _cap_cpu_devices(subcommand_config["trainer"])
        try:
            super().instantiate_classes()
        except (ArgumentError, ValueError, TypeError, MisconfigurationException) as err:
            if isinstance(err, UserError):
                raise
            raise UserError(_explain_parse_error(err, self.parser, self._args)) from err

    def _run_subcommand(self, subcommand: str) -> None:
        self.reused_fit = self._finished_fit() if subcommand == "fit" else None
        if self.reused_fit is not None:
            if log.isEnabledFor(logging.INFO):
                shown = self.reused_fit.get("best") or self.reused_fit.get("last")
                print(f"fit: reusing the finished fit of this configuration ({shown}); --refit trains again")
            return
        failed = True
        try:
            super()._run_subcommand(subcommand)
            failed = False
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = err.filename or "a file of the run"
            raise UserError(f"disk full: cannot write {where}; free space and rerun (it resumes)") from err
        finally:
            if failed:  # also a failure outside the Trainer (after_fit): W&B must not say it finished
                for logger in self.trainer.loggers:
                    if isinstance(logger, RunLogger):
                        logger.finish(exit_code=1)
            folder = getattr(getattr(self.model, "runtime", None), "run_folder", None)
            if folder is not None:
                folder.unlock()

    def _fit_folder(self) -> RunFolder:
        config = self.config[self.subcommand]
        run_id = config.get("run_id") or run_id_for(experiment_config(config, "fit"))
        return RunFolder.for_experiment(
            config["run_dir"], self.datamodule.hparams.benchmark, self.model.method_name, run_id, "fit"
        )

    def _finished_fit(self) -> dict | None:
        """The record of a finished fit this one may reuse (``fit_reuse``), or None."""
        config = self.config[self.subcommand]
        if config.get("refit") or config.get("ckpt_path") or _launched_worker():
            return None
        return fit_reuse.reusable(self._fit_folder().path, plain_value(config.as_dict()))

    # -- before every Lightning command ---------------------------------------------------

    def before_fit(self) -> None:
        self._prepare("fit")

    def after_fit(self) -> None:
        """Say where the checkpoints went: the last line of a fit, on the main process."""
        if self.trainer.global_rank != 0 or self.trainer.fast_dev_run:
            return
        saver = next((c for c in self.trainer.callbacks if isinstance(c, IterationCheckpoint)), None)
        last = None if saver is None else (saver.last_path or saver.directory(self.trainer) / LAST)
        best_path = next(
            (c.best_model_path for c in self.trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)),
            "",
        )
        folder = getattr(self.model.runtime, "run_folder", None)
        if folder is not None and not self.trainer.interrupted and folder.path.is_dir():
            fit_reuse.record_finished(
                folder.path, plain_value(self.config[self.subcommand].as_dict()), last, best_path
            )
        if not log.isEnabledFor(logging.INFO):
            return  # (a caller running many fits, such as the quickstart, turns this logger down)
        if last is not None and last.is_file():
            print(f"checkpoint: {last}  (test it with --ckpt_path last and the same recipe and options)")
        best = best_path
        if best and Path(best).is_file() and (last is None or Path(best) != last):
            print(f"best checkpoint: {best}  (--ckpt_path best)")

    def before_validate(self) -> None:
        self._prepare("validate")

    def before_test(self) -> None:
        self._prepare("test")

    def before_predict(self) -> None:
        self._prepare("predict")

    def _prepare(self, stage: str) -> None:
        config = self.config[self.subcommand]
        model: CollaborationModule = self.model
        data: BenchmarkDataModule = self.datamodule
        experiment = experiment_config(config, stage)
        run_id = config.get("run_id") or run_id_for(experiment)
        folder = RunFolder.for_experiment(
            config["run_dir"], data.hparams.benchmark, model.method_name, run_id, stage
        )
        if not _launched_worker():
            # DDP workers started by this process share its folder and its lock
            folder.lock()
        if self.trainer.global_rank == 0:
            folder.write_config(plain_value(config.as_dict()))  # written with the first result
        summary = {
            "benchmark": data.hparams.benchmark,
            "run_id": run_id,
            "stage": stage,
            "scoring": config.get("scoring") or "moco_lit",
            **provenance(),  # versions and the code's git commit
        }
        model.runtime.cache = bool(config["cache"])
        model.runtime.cache_path = config.get("cache_path")
        model.runtime.generation_backend = config.get("generation_backend") or "hf"
        model.runtime.finished_rows_leave = bool(config.get("finished_rows_leave"))
        model.runtime.progress = bool(config["progress"])
        if not model.runtime.progress:  # every bar, Lightning's too
            for callback in self.trainer.callbacks:
                if isinstance(callback, ProgressBar):
                    callback.disable()
        allow_unsafe_code_execution(bool(config.get("allow_unsafe_code_execution")))
        model.runtime.scoring = summary["scoring"]
        model.runtime.run_folder = folder
        model.runtime.config = {"summary": summary, "experiment": experiment}
        if stage == "fit" and self.trainer.default_root_dir == os.getcwd():
            self.trainer._default_root_dir = str(folder.path)
        checkpointing = any(isinstance(c, ModelCheckpoint) for c in self.trainer.checkpoint_callbacks)
        if stage == "fit" and self.trainer.global_rank == 0 and folder.path.is_dir():
            fit_reuse.forget(folder.path)  # until this fit ends normally, nothing finished here
        if stage == "fit":
            # one predictable folder, whichever logger is attached: <run>-fit/checkpoints
            for callback in self.trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                    callback.dirpath = str(folder.path / "checkpoints")
        if stage == "fit" and checkpointing:
            if not any(isinstance(c, IterationCheckpoint) for c in self.trainer.callbacks):
                self.trainer.callbacks.append(IterationCheckpoint(on_first_save=folder.commit_config))
        if stage != "fit" and not any(isinstance(c, RunFolderWriter) for c in self.trainer.callbacks):
            log.warning(
                "the trainer's callbacks have no RunFolderWriter: nothing is written to %s "
                "(add -c callbacks/default.yaml, or list callbacks with `trainer.callbacks+:`)",
                folder.path,
            )
        if config["wandb"]:
            self._attach_wandb(config, folder, stage, summary, model)

    def _attach_wandb(self, config, folder: RunFolder, stage: str, summary: dict, model) -> None:
        """A W&B run per run folder (``moco_lit.tracking`` says how id, group and job type are chosen)."""
        if self.trainer.loggers:
            return  # the recipe chose its own loggers
        try:
            import wandb  # noqa: F401
        except ImportError:
            return
        if os.environ.get("WANDB_MODE") == "disabled":
            return
        benchmark = folder.path.parent.parent.name  # the benchmark's name, also for a file path
        plain = plain_value(config.as_dict())
        arguments = method_arguments(type(model), (plain.get("model") or {}).get("init_args") or {})
        logger = RunLogger(
            project=config["wandb_project"],
            group=config.get("wandb_group") or benchmark,
            job_type=job_type(stage, model.method_name, arguments),
            tags=[model.method_name, model.level],
            name=f"{model.method_name}-{benchmark}-{folder.path.name}",
            id=wandb_run_id(folder.path),
            resume="allow",
            save_dir=str(folder.path),
            offline=not wandb_credentials(),
            config={
                **plain,
                **summary,  # run_id, stage, benchmark, scoring, versions, git commit
                "run_folder": str(folder.path),
                "method": model.method_name,
                "method_arguments": arguments,
            },
        )
        self.trainer.loggers = [logger]


def _launched_worker() -> bool:
    """True in a process a DDP launcher started (its rank is in the environment and not 0)."""
    return any(os.environ.get(name, "0") not in {"", "0"} for name in ("LOCAL_RANK", "RANK", "NODE_RANK"))


def _cap_cpu_devices(trainer: Namespace) -> None:
    """CPU processes beyond the cores only slow each other down (and cost a model copy each)."""
    accelerator = str(trainer.get("accelerator") or "auto")
    if accelerator != "cpu" and not (accelerator == "auto" and not torch.cuda.is_available()):
        return
    try:
        wanted = int(trainer.get("devices"))
    except (TypeError, ValueError):
        return  # "auto", a list of ids: Lightning's own rules
    cores = usable_cores()
    if wanted > cores:
        log.warning(
            "--trainer.devices %d: this machine has %d usable CPU cores; running %d processes",
            wanted,
            cores,
            cores,
        )
        trainer["devices"] = cores


def _resolve_named_checkpoint(config: Namespace, subcommand: str) -> None:
    """``--ckpt_path last|best`` outside ``fit``: the checkpoint of the fit run of this same
    configuration (method, its arguments, data, scoring; ``--run_id`` when given), found in
    ``<run_dir>/<benchmark>/<method>/<run id>-fit/checkpoints``. Lightning would read the names
    against the callbacks of this process, which has trained nothing, and test untrained."""
    name = config.get("ckpt_path")
    if subcommand == "fit" or name not in ("last", "best"):
        return
    plain = plain_value(config.as_dict())
    class_path = (plain.get("model") or {}).get("class_path") or ""
    module_name, _, class_name = class_path.rpartition(".")
    try:
        method = getattr(importlib.import_module(module_name), class_name).method_name
    except (ImportError, AttributeError, ValueError):
        return  # the model's own error comes later, in one line
    benchmark = str((plain.get("data") or {}).get("benchmark") or "")
    run_id = plain.get("run_id") or run_id_for(experiment_config(config, "fit"))
    fit = RunFolder.for_experiment(plain.get("run_dir") or "runs", benchmark, method, run_id, "fit").path
    last = fit / "checkpoints" / LAST
    if not last.is_file():
        others = sorted(p.parent.parent.name for p in fit.parent.glob(f"*-fit/checkpoints/{LAST}"))
        hint = f"; fit runs of {method} there: {', '.join(others)}" if others else ""
        raise UserError(
            f"--ckpt_path {name}: no fit of this configuration has written {last}; run `fit` with the "
            f"same recipe and options first, or give a checkpoint file{hint}"
        )
    path = last if name == "last" else _best_checkpoint(last)
    config["ckpt_path"] = str(path)
    log.info("--ckpt_path %s: %s", name, path)


def _best_checkpoint(last: Path) -> Path:
    """The best-k file a fit's ModelCheckpoint recorded in its ``last.ckpt``."""
    try:
        state = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same bad input
        raise UserError(f"--ckpt_path best: {str(last)!r} cannot be read ({first_line(err)})") from err
    for key, value in (state.get("callbacks") or {}).items():
        best = value.get("best_model_path") if key.startswith("ModelCheckpoint") else None
        if best and Path(best).is_file():
            return Path(best)
    raise UserError(
        f"--ckpt_path best: the fit in {str(last.parent.parent)!r} kept no best checkpoint; use --ckpt_path last"
    )


def _check_checkpoint(ckpt_path: str | None) -> None:
    """A missing or non-checkpoint ``--ckpt_path`` is bad input, not a crash inside the Trainer."""
    if ckpt_path is None or ckpt_path in {"last", "best", "hpc", "registry"}:
        return
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"--ckpt_path {ckpt_path!r} does not exist; give a .ckpt file written by `fit`")
    if not zipfile.is_zipfile(path):
        raise UserError(
            f"--ckpt_path {ckpt_path!r} is not a Lightning checkpoint (expected a file written by `fit`)"
        )


def _check_checkpoint_method(config: Namespace) -> None:
    """A checkpoint answers for one method; its saved arguments win over the command line's.

    LightningCLI would silently swap in the checkpoint's method and arguments: another method's
    checkpoint is an error, and each argument whose value the checkpoint overrides is named in
    one warning line.
    """
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path or not Path(ckpt_path).is_file():
        return
    try:
        hparams = dict(
            torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters") or {}
        )
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same bad input
        raise UserError(
            f"--ckpt_path {ckpt_path!r} cannot be read as a checkpoint ({first_line(err)})"
        ) from err
    model = plain_value(config["model"].as_dict()) if isinstance(config.get("model"), Namespace) else {}
    saved_class = hparams.pop("_class_path", None)
    hparams.pop("_instantiator", None)
    wanted_class = model.get("class_path")
    if saved_class and wanted_class and saved_class != wanted_class:
        raise UserError(
            f"--ckpt_path {ckpt_path!r} was written by a fit of {saved_class.rpartition('.')[2]}, not "
            f"{wanted_class.rpartition('.')[2]}; give a checkpoint of this method's fit (or drop --ckpt_path)"
        )
    given = model.get("init_args") or {}
    overridden = [
        f"{key}={plain_value(value)!r} (not {given[key]!r})"
        for key, value in hparams.items()
        if key in given and plain_value(value) != given[key]
    ]
    if overridden:
        log.warning(
            "--ckpt_path %s: the checkpoint's values win over the recipe and command line: %s",
            ckpt_path,
            ", ".join(overridden),
        )


def wandb_credentials() -> bool:
    """Whether W&B can log online here (an API key, online mode, or a ~/.netrc login)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online":
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def finish_wandb_run() -> None:
    """Close a run's W&B run, so the next run in this process starts its own instead of reusing it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


# -- running a command -----------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """``python -m moco_lit fit|validate|test|predict ...``: one LightningCLI subcommand."""
    run_lightning(argv)
    return 0


def run_lightning(argv: list[str]) -> MocoCLI:
    """Run one LightningCLI subcommand; returns the CLI object (tests read ``cli.model``)."""
    return MocoCLI(args=expand_method_names(argv))


def expand_method_names(argv: list[str]) -> list[str]:
    """``--model majority_vote`` → the method's class path (LightningCLI wants a class); ``-c NAME``
    → the recipe or trainer preset it names (``moco_lit.shipped``)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("-c", "--config") and i + 1 < len(out):
            out[i + 1] = _expand_config_file(resolve_shipped(out[i + 1]))
        elif arg.startswith("--config="):
            out[i] = "--config=" + _expand_config_file(resolve_shipped(arg.split("=", 1)[1]))
        elif arg in ("--model", "--model.help") and i + 1 < len(out):
            out[i + 1] = _method_class_path(out[i + 1])
        elif arg.startswith("--model="):
            out[i] = "--model=" + _method_class_path(arg.split("=", 1)[1])
    return out


def _expand_config_file(path: str) -> str:
    """A recipe whose ``model`` (or ``model.class_path``) is a short method name, as a copy with the
    class path written out (LightningCLI wants a class); any other file as it is."""
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
    if value in methods.names():
        return methods.class_path(value)
    if "." not in value and not value.endswith((".yaml", ".yml", ".json")) and not value.startswith("{"):
        return methods.class_path(value)  # raises the "unknown method" error listing the names
    return value


def _explain_parse_error(err: BaseException, parser, args: list[str] | None) -> str:
    """One line for a command-line mistake: the closest known flag for a mistyped one, the flag
    to give for a missing required argument, else jsonargparse's reason."""
    text = str(err)
    unknown = re.search(r"unrecognized arguments: (\S+)", text)
    if unknown:
        flag = unknown.group(1).split("=", 1)[0]
        hint = did_you_mean(flag, _known_flags(parser, list(args or [])), cutoff=0.7)
        return f"unrecognized argument {flag}{hint}; `--help` lists the options"
    key = re.search(r'Parser key "([\w.]+)":', text)
    prefix = f"--{key.group(1)}." if key else "--"
    rejected = re.search(r"Option '(\w+)' is not accepted", text)
    if rejected:
        flag = prefix + rejected.group(1)
        hint = did_you_mean(flag, _known_flags(parser, list(args or [])), cutoff=0.7)
        return f"unrecognized argument {flag}{hint}; `--help` lists the options"
    missing = re.search(r"the following arguments are required: ([\w, ]+)", text)
    if missing:
        flags = [prefix + name.strip() for name in missing.group(1).split(",") if name.strip()]
        example = ""
        if "--model.collaborators" in flags:
            example = " (the collaborating models, e.g. --model.collaborators '[smollm2-135m-instruct, gemma3-270m]')"
        return f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} required{example}"
    return _one_line(err)


def _known_flags(parser, args: list[str]) -> list[str]:
    """The options of the subcommand in ``args``, the chosen method's arguments included."""
    flags: set[str] = set()
    subcommand = next((a for a in args if a in ("fit", "validate", "test", "predict")), None)
    action = getattr(parser, "_subcommands_action", None)
    chosen = action._name_parser_map.get(subcommand) if action is not None and subcommand else parser
    for found in getattr(chosen, "_actions", []):
        flags.update(o for o in found.option_strings if o.startswith("--"))
    if "--model" in args and args.index("--model") + 1 < len(args):
        module_name, _, class_name = args[args.index("--model") + 1].rpartition(".")
        try:
            method = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError):
            method = None
        for cls in getattr(method, "__mro__", ()):
            init = cls.__dict__.get("__init__")
            if init is not None:
                flags.update(f"--model.{p}" for p in inspect.signature(init).parameters if p != "self")
    return sorted(flags)


def _one_line(err: BaseException) -> str:
    """jsonargparse nests its reasons (union members, class paths); keep the specific ones on one line."""
    lines = [line.rstrip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    headline = lines[0].strip().rstrip(":")
    given = next((line.strip() for line in lines if line.strip().startswith("Given value:")), "")
    bullets, details = [], []
    for line in lines[1:]:
        text = line.strip()
        generic = ("Subtypes:", "Errors:", "Given value", "Does not validate", "Expected a path but")
        if text.removeprefix("- ").startswith(generic) or "NoneType" in text:
            continue
        (bullets if text.startswith("- ") else details).append(text.removeprefix("- ").rstrip(":"))
    reasons = details or bullets
    message = headline + (": " + "; ".join(dict.fromkeys(reasons)) if reasons else "")
    if given and "NestedArg" not in given:
        message += f" ({given[0].lower()}{given[1:]})"
    return re.sub(r"<class '([\w.]+)'>", r"\1", message)
