"""``test --tasks gsm8k,mmlu_redux``: one command over several benchmarks, as lm-evaluation-harness
takes ``--tasks``.

Each benchmark gets its own run, exactly as ``--data.benchmark NAME`` would make it (its own run
folder, resumable), one after another; then one line per benchmark with its score. Every name is
resolved before the first run starts, so a typo in the last one costs nothing. ``--seeds`` combines
with it (every benchmark, once per seed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from moco_lit.argv import gives, pop_flag
from moco_lit.data import load_benchmark
from moco_lit.errors import UserError
from moco_lit.lightning_cli import MocoCLI, expand_method_names, finish_wandb_run, run_lightning
from moco_lit.seeds import run_test_seeds, split_seeds_flag


def split_tasks_flag(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``argv`` without ``--tasks LIST`` (or ``--tasks=LIST``), and the benchmarks it named."""
    rest, value = pop_flag(argv, "--tasks", "gsm8k,mmlu_redux")
    tasks = None if value is None else [name.strip() for name in value.split(",") if name.strip()]
    if tasks is not None and not tasks:
        raise UserError("--tasks needs benchmark names, such as --tasks gsm8k,mmlu_redux")
    if tasks is not None and gives(rest, "--data.benchmark"):
        raise UserError("--tasks names the benchmarks; give it or --data.benchmark, not both")
    return rest, tasks


def check_tasks(tasks: list[str], data_dir: str | None = None) -> None:
    """Every benchmark resolves (and its file validates) before anything runs."""
    for name in tasks:
        load_benchmark(name, data_dir)


def configured_data_dir(argv: list[str]) -> str | None:
    """The ``data.data_dir`` a Lightning command ``argv`` would run with: parsed as the run parses
    it (``--data.data_dir DIR``, ``--data.data_dir=DIR``, a recipe's ``data.data_dir``, the last
    one winning), without loading anything."""

    class ParseOnly(MocoCLI):
        def _parse_ckpt_path(self) -> None:
            pass

        def _set_seed(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

        def _run_subcommand(self, subcommand: str) -> None:
            pass

    config = ParseOnly(args=expand_method_names(argv)).config
    data = config.get(str(config.get("subcommand")), config).get("data")
    data_dir = data.get("data_dir") if data is not None else None
    return None if data_dir is None else str(data_dir)


def run_tasks(argv: list[str], tasks: list[str], out=None) -> list[Path]:
    """The command of ``argv`` once per benchmark of ``tasks``; one summary line per benchmark."""
    out = out or sys.stdout
    base, seeds = split_seeds_flag(argv)
    check_tasks(tasks, configured_data_dir(base))
    folders: list[Path] = []
    lines = []
    for task in tasks:
        command = [*base, "--data.benchmark", task]
        if seeds is not None:
            found = run_test_seeds(command, seeds, out=out)
        else:
            try:
                found = [run_lightning(command).model.runtime.run_folder.path]
            finally:
                finish_wandb_run()  # each benchmark its own W&B run
        folders += found
        for folder in found:
            metrics_file = folder / "metrics.json"
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
            score = metrics.get("score")
            low, high = (metrics.get("score_ci") or [None, None])[:2]
            interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
            shown = "–" if score is None else f"{score:.3f}{interval}"
            lines.append(f"{task:<24} {shown:<24} n={metrics.get('n', '–')}  {folder}")
    print("\nbenchmark                score                    examples / run folder", file=out)
    for line in lines:
        print(line, file=out)
    return folders


def main(argv: list[str]) -> int:
    """A Lightning command ``argv`` (``test ... --tasks a,b``) once per benchmark it names."""
    run_tasks(*split_tasks_flag(argv))
    return 0
