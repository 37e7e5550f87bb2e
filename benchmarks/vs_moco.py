"""End to end against MoCo on real models: the same experiment through MoCo's ``run_method`` and moco_lit.

For each method named in ``--methods``, one MoCo config is written (method, the pool's model folders,
``--max_new_tokens``, the temperature, rounds, samples) and run three ways, one process each, timed
on the wall clock from process start to exit (imports, model loads, scoring included):

1. MoCo: ``model_collaboration.method.<method>.run_method``, driven as MoCo's ``main.py`` drives it
   (spawn start method, ``update_generation_hyperparameters``), with two redirections only: its
   data folder is the run's folder (the first ``--limit`` dev and test examples of MoCo's task file,
   written there), and its ``chdir`` into site-packages stays in the run's folder so its log lands
   there. Its generation code is untouched: a spawned process per model and step, bfloat16 weights.
2. moco_lit with a fresh generation cache: the recipe is ``python -m moco_lit convert``'s mapping of
   the same config (so the settings are the same by construction), on CPU, collaborators in
   bfloat16 as MoCo loads them, MoCo's scoring rules (``--scoring moco``).
3. moco_lit with the cache off (``--cache false``).

moco_lit runs from the repository this script sits in (``python -m moco_lit`` with that folder as
the working directory), so running the script from a ``git archive`` export measures that commit
whatever the working tree holds.

Prints one JSON line per run, then a table: both times, both scores, MoCo ÷ moco_lit. Differences
that remain (see RESULTS.md): sampled draws come from different random streams (MoCo: transformers'
sampler; moco_lit: its seeded Gumbel-max), so sampled methods agree in distribution only; greedy
outputs can differ where bfloat16 rounding differs with batch composition and padding.

    OMP_NUM_THREADS=1 python benchmarks/vs_moco.py --pool smollm2 --limit 8 --max_new_tokens 64
    python benchmarks/vs_moco.py --methods moa --pool mixed --limit 4 --runs moco_lit_fresh
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from moco_lit import paths  # noqa: E402
from moco_lit.convert import convert_config  # noqa: E402

POOLS = {
    "smollm2": ["smollm2-135m-instruct", "smollm2-135m-instruct"],
    "mixed": ["smollm2-135m-instruct", "gemma3-270m"],
}

DESCRIPTIONS = {
    "smollm2-135m-instruct": "a small instruction-tuned chat model, good at short everyday answers",
    "gemma3-270m": "a small base model, good at continuing text",
}

# MoCo method module -> (moco_lit short name, hyperparameters beyond the shared ones)
METHODS = {
    "multiagent_refine": ("text_multiagent_refine", {"round": 2}),
    "multiagent_feedback": ("text_multiagent_feedback", {"round": 2, "feedback_count": 1}),
    "moa": ("text_moa", {"round": 1}),
    "majority_vote": ("text_majority_vote", {"tie": "random"}),
    "prompt_routing": ("api_prompt_routing", {}),
}
SAMPLED = {"majority_vote"}  # decoded at --sample_temperature, the pool repeated --samples times
RUNS = ("moco", "moco_lit_fresh", "moco_lit_nocache")

# MoCo's main.py, less its argument parsing, plus the two redirections the docstring names
MOCO_DRIVER = """\
import importlib, json, os, sys

def main():
    args = json.loads(sys.argv[1])
    import torch
    torch.multiprocessing.set_start_method("spawn")
    torch.set_float32_matmul_precision("high")
    from model_collaboration.data import eval as moco_eval
    from model_collaboration.method import distributed_generation
    moco_eval.DATA_DIR = args["data_dir"]
    hp = args["hyperparameters"]
    distributed_generation.update_generation_hyperparameters(
        hp.get("max_response_length", 512), hp.get("temperature", 0.7), hp.get("top_p", 0.9),
        hp.get("batch_size", 32), False, False)
    module = importlib.import_module("model_collaboration.method." + args["method"])
    real_chdir, workdir = os.chdir, args["workdir"]
    os.makedirs(os.path.join(workdir, "model_collaboration", "logs"), exist_ok=True)
    real_chdir(workdir)
    os.chdir = lambda path: real_chdir(workdir)
    module.run_method(args["task"], args["task_type"], args["gpu_ids"], args["model_names"], hp)

if __name__ == "__main__":
    main()
"""


def model_folder(name: str) -> str:
    folder = paths.home() / "models" / name
    if not (folder / "config.json").exists():
        raise SystemExit(f"{name} is not fetched: python -m moco_lit models fetch {name}")
    return str(folder)


def write_task(task: str, limit: int, dev_limit: int, folder: Path) -> tuple[Path, str]:
    """The first ``dev_limit`` dev and ``limit`` test examples of MoCo's task file, as ``<task>.json``."""
    source = paths.home() / "data" / "modelco-1.1.2" / f"{task}.json"
    if not source.exists():
        raise SystemExit(f"{source} is missing: python -m moco_lit data fetch modelco")
    data = json.loads(source.read_text())
    data["dev"], data["test"] = data["dev"][:dev_limit], data["test"][:limit]
    path = folder / f"{task}.json"
    path.write_text(json.dumps(data))
    return path, data["task_type"]


def moco_config(method: str, pool: list[str], task: str, task_type: str, args: argparse.Namespace) -> dict:
    module, extra = METHODS[method]
    names = pool * args.samples if method in SAMPLED else pool
    hyper = {
        "max_response_length": args.max_new_tokens,
        "temperature": args.sample_temperature if method in SAMPLED else args.temperature,
        "top_p": 0.9,
        "batch_size": args.batch_size,
        **extra,
    }
    if method == "prompt_routing":
        hyper["model_descriptions"] = [DESCRIPTIONS[n] for n in names]
    return {
        "method": module,
        "task": task,
        "task_type": task_type,
        "gpu_ids": [0],
        "model_names": [model_folder(n) for n in names],
        "hyperparameters": hyper,
    }


def moco_lit_recipe(config: dict, folder: Path) -> Path:
    recipe, notes = convert_config(config)
    if notes:
        raise SystemExit(f"convert lists settings it cannot express: {notes}")
    args = recipe["model"]["init_args"]
    # MoCo loads every model in bfloat16 whatever the device; so does moco_lit here
    args["collaborators"] = [{"path": p, "dtype": "bfloat16"} for p in args["collaborators"]]
    recipe["trainer"] = {"accelerator": "cpu", "devices": 1}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def timed_process(command: list[str], log: Path, env: dict) -> dict:
    """Wall seconds, and CPU seconds of the process and every process it waited for (MoCo's
    spawned generation workers included): on a shared machine the CPU time is the steadier figure."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({done.returncode}); log {log}:\n{tail}")
    return {"seconds": seconds, "cpu_s": cpu}


def run_moco(config: dict, folder: Path, env: dict) -> dict:
    driver = folder / "moco_driver.py"
    driver.write_text(MOCO_DRIVER)
    work = folder / "moco"
    payload = {**config, "data_dir": str(folder / "data"), "workdir": str(work)}
    times = timed_process([sys.executable, str(driver), json.dumps(payload)], folder / "moco.log", env)
    logs = sorted((work / "model_collaboration" / "logs").glob("*.json"), key=os.path.getmtime)
    log = json.loads(logs[-1].read_text())
    return {**times, "score": log["avg_test_score"], "outputs": len(log["logs"])}


def run_moco_lit(recipe: Path, task_file: Path, folder: Path, name: str, cache: bool, env: dict) -> dict:
    run_dir = folder / name
    command = [
        sys.executable,
        "-m",
        "moco_lit",
        "test",
        "-c",
        str(recipe),
        "--data.benchmark",
        str(task_file),
    ]
    command += ["--run_dir", str(run_dir), "--scoring", "moco", "--progress", "false", "--wandb", "false"]
    command += ["--cache_path", str(folder / "generations.sqlite")] if cache else ["--cache", "false"]
    times = timed_process(command, folder / f"{name}.log", env)
    metrics = json.loads(next(run_dir.rglob("metrics.json")).read_text())
    # "test_s": the test stage alone, as the run folder records it (calibration on dev included)
    counts = {"calls": metrics["cost/calls"], "new_tokens": metrics["cost/new_tokens"]}
    return {**times, "score": metrics["score"], "test_s": metrics["seconds"], **counts}


def measure(method: str, args: argparse.Namespace, root: Path, env: dict) -> dict:
    folder = root / method
    (folder / "data").mkdir(parents=True)
    task_file, task_type = write_task(args.task, args.limit, args.dev_limit or args.limit, folder / "data")
    config = moco_config(method, POOLS[args.pool], args.task, task_type, args)
    (folder / "moco_config.json").write_text(json.dumps(config, indent=2))
    recipe = moco_lit_recipe(config, folder)
    row = {"method": method, "pool": args.pool, "task": args.task, "limit": args.limit}
    row |= {"max_new_tokens": args.max_new_tokens, "models": len(config["model_names"])}
    settings = dict(row)
    for run in args.runs:
        if run == "moco":
            result = run_moco(config, folder, env)
        else:
            result = run_moco_lit(recipe, task_file, folder, run, run == "moco_lit_fresh", env)
        print(json.dumps({**settings, "run": run, **result}), flush=True)
        row[run] = result
    return row


def _cell(run: dict, key: str, digits: int = 1) -> str:
    return f"{run[key]:.{digits}f}" if key in run else "-"


def _ratio(moco: dict, run: dict, key: str = "seconds") -> str:
    return f"{moco[key] / run[key]:.2f}" if moco and run else "-"


def summary(rows: list[dict]) -> None:
    """Wall (and CPU) seconds per run, the scores, and MoCo ÷ moco_lit for wall and CPU time."""
    head = "| method | MoCo s (CPU) | fresh cache s (CPU) | cache off s (CPU) | scores MoCo / fresh / off "
    head += "| MoCo ÷ fresh, wall (CPU) | MoCo ÷ off, wall (CPU) |"
    print("\n" + head + "\n" + "|---" * 7 + "|")
    for row in rows:
        runs = [row.get(r, {}) for r in RUNS]
        moco, fresh, off = runs
        line = [row["method"], *(f"{_cell(r, 'seconds')} ({_cell(r, 'cpu_s')})" for r in runs)]
        line.append(" / ".join(_cell(r, "score", 3) for r in runs))
        line += [f"{_ratio(moco, r)} ({_ratio(moco, r, 'cpu_s')})" for r in (fresh, off)]
        print("| " + " | ".join(line) + " |")
        ratios = {
            f"{name}_{key}": _ratio(moco, r, key)
            for name, r in (("fresh", fresh), ("off", off))
            for key in ("seconds", "cpu_s")
        }
        print(json.dumps({"method": row["method"], "ratio_moco_over_moco_lit": ratios}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="multiagent_refine,moa,majority_vote,prompt_routing")
    parser.add_argument("--pool", choices=sorted(POOLS), default="smollm2")
    parser.add_argument("--task", default="gsm8k", help="a MoCo task file (exact_match or multiple_choice)")
    parser.add_argument("--limit", type=int, default=8, help="test examples (and dev, unless --dev_limit)")
    parser.add_argument("--dev_limit", type=int, default=None)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="for every method but majority_vote")
    parser.add_argument("--sample_temperature", type=float, default=0.7, help="majority_vote's samples")
    parser.add_argument("--samples", type=int, default=3, help="majority_vote: the pool repeated this often")
    parser.add_argument("--batch_size", type=int, default=32, help="prompts per generate call (MoCo's 32)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for every process")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"a subset of {','.join(RUNS)}")
    parser.add_argument("--keep", default=None, help="keep the run folders here (default: a temporary one)")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    args.runs = [r for r in args.runs.split(",") if r]
    if unknown or set(args.runs) - set(RUNS):
        raise SystemExit(f"unknown methods or runs: {unknown or args.runs}; methods: {', '.join(METHODS)}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env |= {"TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    print(json.dumps({"load_average": os.getloadavg(), "threads": args.threads, "argv": sys.argv[1:]}))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.keep or scratch)
        rows = [measure(method, args, root, env) for method in methods]
    summary(rows)
    print(json.dumps({"load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
