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
from moco_lit.errors import UserError


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
    from moco_lit.data import load_benchmark

    for name in tasks:
        load_benchmark(name, data_dir)


def run_tasks(argv: list[str], tasks: list[str], out=None) -> list[Path]:
    """The command of ``argv`` once per benchmark of ``tasks``; one summary line per benchmark."""
    from moco_lit.cli import run_lightning
    from moco_lit.seeds import run_test_seeds, split_seeds_flag
    from moco_lit.sweep import _finish_wandb_run

    out = out or sys.stdout
    data_dir = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--data.data_dir"), None)
    check_tasks(tasks, data_dir)
    base, seeds = split_seeds_flag(argv)
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
                _finish_wandb_run()  # each benchmark its own W&B run
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
