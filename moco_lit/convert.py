"""MoCo compatibility: MoCo JSON configs become moco_lit recipes; MoCo output logs become runs.

A MoCo config (``python -m model_collaboration.main -c config.json``) holds ``method`` (the
module name, ``text_majority_vote``), ``task``, ``task_type``, ``gpu_ids``, ``model_names`` and a
free-form ``hyperparameters`` dict. :func:`convert_config` maps the method to its moco_lit short
name, each hyperparameter to the method's ``__init__`` argument (or a data/trainer setting), and
``gpu_ids`` to the Trainer's devices; what has no counterpart is listed in the recipe's header.

A MoCo log (``logs/<task>_<models>_<score>_<method>.json``) holds ``task``, ``task_type``,
``model_names``, ``hyperparameters``, ``avg_test_score`` and ``logs``: one ``{input, output,
score}`` per test example, in the test split's order. :func:`runs_from_moco_logs` reads them as
report runs; :func:`moco_log_predictions` turns one into a ``{id, output}`` JSONL for ``score``.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import yaml

from moco_lit.errors import UserError

LEVEL_PREFIXES = ("api_", "text_", "logit_", "weight_")

# MoCo hyperparameters every method shares, and where they go in a recipe
COMMON = {
    "max_response_length": ("model", "max_new_tokens"),
    "temperature": ("model", "temperature"),
    "top_p": ("model", "top_p"),
    "seed": ("model", "seed"),
    "batch_size": ("model", "generation_batch_size"),
    "reward_model_name": ("model", "reward_model"),
}

# MoCo hyperparameter names that differ from the moco_lit method's argument names
RENAMED: dict[str, dict[str, str]] = {
    "graph_routing": {"embedding_model_name": "embedding_model"},
    "llm_blender": {"fuser_model_name": "fuser", "ranker_max_response_length": "ranker_max_new_tokens"},
}

# MoCo settings that only say where MoCo keeps files, how it spreads models over GPUs or how it
# loads them: moco_lit does these itself (run folders, Lightning strategies), so they are dropped
# quietly rather than reported as lost
MOCO_ONLY = {
    "big_model_mode",
    "load_in_8bit",
    "resume",
    "max_parallel_generation_models",
    "swarm_base_path",
    "dare_ties_base_path",
    "expo_base_path",
    "agglm_log_path",
    "ranker_gpu_id",
    "fuser_gpu_id",
    "reward_model_gpu_id",
}

CONFIG_KEYS = ("method", "task", "task_type", "gpu_ids", "model_names", "hyperparameters")


def moco_method_name(name: str) -> str:
    """MoCo's method module (``text_majority_vote``) or log suffix (``majority_vote``) → short name."""
    from moco_lit import methods

    available = methods.names()
    candidates = [name] + [name[len(p) :] for p in LEVEL_PREFIXES if name.startswith(p)]
    for candidate in candidates:
        if candidate in available:
            return candidate
    raise UserError(
        f"MoCo method {name!r} has no moco_lit counterpart; available methods: {', '.join(available)}"
    )


def read_moco_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read MoCo config {path}: {err}") from err
    missing = [key for key in ("method", "task", "model_names") if key not in (config or {})]
    if not isinstance(config, dict) or missing:
        raise UserError(
            f"{path} is not a MoCo config: missing {', '.join(missing)}; expected keys {CONFIG_KEYS}"
        )
    return config


def convert_config(config: dict) -> tuple[dict, list[str]]:
    """(recipe dict, notes) for a MoCo config dict; notes name what could not be carried over."""
    from moco_lit import methods

    name = moco_method_name(config["method"])
    method = methods.get(name)
    accepted = _init_args(method)
    init_args: dict[str, Any] = {"collaborators": list(config["model_names"])}
    data: dict[str, Any] = {"benchmark": config["task"]}
    if config.get("task_type"):
        data["task_type"] = config["task_type"]
    notes: list[str] = []
    renamed = RENAMED.get(name, {})
    for key, value in (config.get("hyperparameters") or {}).items():
        if key == "ratio":
            _apply_ratio(value, data, notes)
        elif key in renamed and renamed[key] in accepted:
            init_args[renamed[key]] = value
        elif key in accepted:
            init_args[key] = value
        elif key in COMMON:
            init_args[COMMON[key][1]] = value
        elif key not in MOCO_ONLY:
            notes.append(f"hyperparameter {key}={value!r} has no counterpart in moco_lit's {name}")
    recipe = {
        "model": {"class_path": methods.class_path(name), "init_args": init_args},
        "data": data,
        "trainer": _trainer(config.get("gpu_ids")),
    }
    return recipe, notes


def _init_args(method: type) -> set[str]:
    names: set[str] = set()
    for cls in method.__mro__:
        if "__init__" in vars(cls):
            names |= {p for p in inspect.signature(cls.__init__).parameters if p not in {"self", "kwargs"}}
    return names


def _apply_ratio(ratio: Any, data: dict, notes: list[str]) -> None:
    """MoCo's ``ratio`` keeps the first share of the test split; moco_lit's ``limit`` counts examples."""
    if ratio is None or float(ratio) >= 1.0:
        return
    try:
        from moco_lit.data import load_benchmark

        size = len(load_benchmark(data["benchmark"], task_type=data.get("task_type")).test)
    except UserError:
        notes.append(
            f"ratio={ratio}: set data.limit to {ratio} × the test split's size (benchmark not available here)"
        )
        return
    data["limit"] = max(1, int(size * float(ratio)))


def _trainer(gpu_ids: Any) -> dict:
    """MoCo places models on ``gpu_ids``; moco_lit runs data-parallel over the same devices."""
    if not gpu_ids:
        return {"accelerator": "cpu", "devices": 1}
    ids = [int(i) for i in (gpu_ids if isinstance(gpu_ids, list) else [gpu_ids])]
    return {"accelerator": "gpu", "devices": ids}


def recipe_yaml(recipe: dict, notes: list[str], source: str, target: str | None = None) -> str:
    header = [
        f"# Converted from the MoCo config {source}.",
        f"#   python -m moco_lit test -c {target or 'RECIPE.yaml'}   (`fit` first if the method trains)",
    ]
    header += [f"# not carried over: {note}" for note in notes]
    return "\n".join(header) + "\n" + yaml.safe_dump(recipe, sort_keys=False, default_flow_style=False)


def convert_file(path: str | Path, output: str | Path | None = None) -> tuple[str, list[str]]:
    """Convert a MoCo config file; writes ``output`` when given. Returns (YAML text, notes)."""
    recipe, notes = convert_config(read_moco_config(path))
    text = recipe_yaml(recipe, notes, Path(path).name, None if output is None else str(output))
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
    return text, notes


# -- MoCo output logs ---------------------------------------------------------------------------


def is_moco_log(path: str | Path) -> bool:
    path = Path(path)
    if path.suffix != ".json" or path.name in {"metrics.json", "report.json"}:
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("logs"), list) and "task" in data


def read_moco_log(path: str | Path) -> dict:
    """A MoCo log with its method name (from the file name) and outputs; a UserError if it has none."""
    path = Path(path)
    if not is_moco_log(path):
        raise UserError(f"{path} is not a MoCo log (a JSON object with 'task' and a 'logs' list)")
    data = json.loads(path.read_text())
    entries = [e for e in data["logs"] if isinstance(e, dict)]
    if not entries or not all("output" in e for e in entries):
        raise UserError(f"{path}: MoCo log entries carry no 'output'; nothing to score or compare")
    return {**data, "logs": entries, "method": _method_from_filename(path, data)}


def _method_from_filename(path: Path, data: dict) -> str:
    # <task>_<models or model>_<score>_<method>.json; the task may contain underscores
    rest = path.stem.removeprefix(f"{data['task']}_")
    match = re.search(r"_(-?\d+(?:\.\d+)?(?:e-?\d+)?)_(.+)$", rest)
    raw = match.group(2) if match else rest.rsplit("_", 1)[-1]
    try:
        return moco_method_name(raw)
    except UserError:
        return raw  # a MoCo method moco_lit lacks still shows in the report, by its MoCo name


def _test_ids(task: str, task_type: str | None, count: int) -> list[str]:
    """The ids of the first ``count`` test examples of ``task``; positions when it cannot be loaded."""
    try:
        from moco_lit.data import load_benchmark

        records = load_benchmark(task, task_type=task_type).test
        if len(records) >= count:
            return [str(r["id"]) for r in records[:count]]
    except UserError:
        pass
    return [str(i) for i in range(count)]


def runs_from_moco_logs(paths: list[Path]) -> list:
    """Report runs (``moco_lit.report.Run``) from MoCo logs; a single_model log is one model's scores."""
    from moco_lit.report import Run

    runs = []
    for path in paths:
        log = read_moco_log(path)
        ids = _test_ids(log["task"], log.get("task_type"), len(log["logs"]))
        scores = {key: entry.get("score") for key, entry in zip(ids, log["logs"])}
        specs = tuple(str(m) for m in log.get("model_names") or [])
        hyper = log.get("hyperparameters") or {}
        present = [s for s in scores.values() if s is not None]
        runs.append(
            Run(
                path=str(path),
                method=log["method"],
                label=log["method"],
                level="baseline" if log["method"] == "single_model" else "",
                benchmark=log["task"],
                specs=specs,
                names=tuple(s.split("/")[-1] for s in specs),
                score=log.get("avg_test_score", sum(present) / len(present) if present else None),
                n=len(scores),
                tokens=0.0,
                calls=0.0,
                scores=scores,
                single={specs[0]: scores} if log["method"] == "single_model" and specs else {},
                decoding=(hyper.get("max_response_length"), hyper.get("temperature"), hyper.get("top_p")),
                source="moco_log",
                mtime=path.stat().st_mtime,
            )
        )
    return runs


def moco_log_predictions(log_path: str | Path, test_records: list[dict]) -> Path:
    """Write the outputs of a MoCo log as ``<stem>.predictions.jsonl`` (ids by test-split position)."""
    log_path = Path(log_path)
    log = read_moco_log(log_path)
    if len(log["logs"]) > len(test_records):
        raise UserError(
            f"{log_path} has {len(log['logs'])} outputs but the test split has {len(test_records)} examples"
        )
    target = log_path.with_name(f"{log_path.stem}.predictions.jsonl")
    lines = [
        json.dumps({"id": record["id"], "output": entry["output"]}, ensure_ascii=False)
        for record, entry in zip(test_records, log["logs"])
    ]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def moco_log_task(path: str | Path) -> str | None:
    """The benchmark a MoCo log was made on (None for anything else): ``score`` needs no --benchmark."""
    return json.loads(Path(path).read_text()).get("task") if is_moco_log(path) else None


def main(argv: list[str]) -> int:
    """``python -m moco_lit convert moco_config.json [-o recipe.yaml]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m moco_lit convert", description="Turn a MoCo JSON config into a moco_lit recipe YAML."
    )
    parser.add_argument(
        "config", help="MoCo config file (method, task, task_type, gpu_ids, model_names, ...)"
    )
    parser.add_argument("-o", "--output", default=None, help="recipe file to write (default: print it)")
    args = parser.parse_args(argv)
    text, notes = convert_file(args.config, args.output)
    if args.output is None:
        print(text, end="")
    else:
        print(
            f"wrote {args.output}"
            + (f" ({len(notes)} setting(s) not carried over; see its header)" if notes else "")
        )
    return 0
