"""Weights & Biases runs a dashboard can trust: one W&B run per run folder, started once the inputs
are checked, marked failed when the command fails.

- **id**: derived from the run folder's absolute path (``wandb_run_id``) and opened with
  ``resume="allow"``, so rerunning or resuming a command logs into the same W&B run, not a second
  run of the same name.
- **group**: the benchmark, or the sweep's name inside a sweep (``--wandb_group``).
- **job type**: the stage and the method variant, ``test/majority_vote[tie=dev-based]``: the
  method's arguments that differ from its defaults (pool, seed and batch sizes aside), so fits,
  tests and variants of one method are never averaged together, and seeds of one variant are.
- **start**: Lightning asks for the experiment before the datamodule's and module's ``setup``
  (which load the benchmark and the models and check the options); ``RunLogger`` answers with a
  placeholder and starts the run on the first thing logged after it, so bad input leaves no run.
- **failure**: a command that fails after the run started finishes it with exit code 1.
- **hyperparameters**: Lightning's autolog writes the module's ``__init__`` arguments into the
  config, where ``single_model``'s ``model`` argument would replace the recipe's ``model``; they go
  under ``hparams`` instead.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

JOB_TYPE_LIMIT = 64  # W&B refuses longer job types
# the pool, the seed (seeds are replicates of one variant: a dashboard averages over them) and
# what does not change results
NOT_A_VARIANT = {"collaborators", "seed", "generation_batch_size"}


def wandb_run_id(folder: Path) -> str:
    """A W&B run id for a run folder: its name (readable) and a hash of its absolute path (unique)."""
    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', Path(folder).name)[:48]}-{digest}"


def method_arguments(method_class: type, init_args: dict[str, Any]) -> dict[str, Any]:
    """The arguments of ``init_args`` that differ from ``method_class``'s defaults (``NOT_A_VARIANT`` aside)."""
    defaults: dict[str, Any] = {}
    for klass in reversed(method_class.__mro__):
        if "__init__" not in vars(klass):
            continue
        for name, parameter in inspect.signature(klass.__init__).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                defaults[name] = parameter.default
    return {
        name: value
        for name, value in init_args.items()
        if name not in NOT_A_VARIANT and (name not in defaults or not _same(value, defaults[name]))
    }


def _same(value: Any, default: Any) -> bool:
    """Equal as configured: a config holds a default tuple as a list, a float default 0 as 0.0."""
    if value == default:
        return True
    return json.dumps(value, sort_keys=True, default=str) == json.dumps(default, sort_keys=True, default=str)


def job_type(stage: str, method: str, arguments: dict[str, Any]) -> str:
    """``<stage>/<method>[name=value,...]``, shortened with a hash of the whole to W&B's limit."""
    variant = ",".join(f"{k}={_short(v)}" for k, v in arguments.items())
    text = f"{stage}/{method}" + (f"[{variant}]" if variant else "")
    if len(text) <= JOB_TYPE_LIMIT:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{text[: JOB_TYPE_LIMIT - 8]}~{digest}]"


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)


class _NotStarted:
    """What ``RunLogger.experiment`` is before setup: Lightning only asks for it to create it early."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the W&B run starts after setup, once the benchmark and models are checked")


class RunLogger(WandbLogger):
    """A ``WandbLogger`` that starts its run after setup, nests hyperparameters, and records failure."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._held = True
        self._finished = False

    @property
    def experiment(self):
        if self._held:
            return _NotStarted()
        if self._experiment is None:
            self._close_earlier_run()
        return WandbLogger.experiment.fget(self)

    def start(self) -> None:
        """Let the run start (on the next use of ``experiment``)."""
        self._held = False

    def _close_earlier_run(self) -> None:
        """One W&B run per command: a run an earlier command of this process left open is finished
        (Lightning would otherwise log this command into it)."""
        import wandb

        if wandb.run is not None and wandb.run.id != self._wandb_init.get("id"):
            wandb.run.finish()

    def log_hyperparams(self, params: Any) -> None:
        self.start()
        params = params if isinstance(params, dict) else vars(params)
        # (LightningCLI's own bookkeeping, such as `_instantiator`, left out)
        super().log_hyperparams({"hparams": {k: v for k, v in params.items() if not k.startswith("_")}})

    def log_metrics(self, metrics, step=None) -> None:
        self.start()
        super().log_metrics(metrics, step)

    def save(self) -> None:
        self.start()
        super().save()

    def finalize(self, status: str) -> None:
        super().finalize(status)
        if status == "failed":
            self.finish(exit_code=1)

    def finish(self, exit_code: int) -> None:
        """End the run with ``exit_code`` (W&B shows a nonzero one as failed); once."""
        if self._experiment is None or self._finished or not hasattr(self._experiment, "finish"):
            return
        self._finished = True
        self._experiment.finish(exit_code=exit_code)
