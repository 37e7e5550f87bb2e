"""Finished runs as the report reads them: one reader of a run folder, and the best-single baseline.

A ``Run`` is one finished test run (a moco_lit run folder, or a MoCo log read by ``convert``).
``run_from_folder`` is the one place that reads a run folder back; ``best_single`` finds a run's
baseline, the best single model of its own pool on the same examples (from ``single_model`` runs);
``compare_with_best_single`` pairs the two per example. ``summary_path`` is where a sweep keeps
its summary. The report (``moco_lit.report``), its figures, seeds and variants and the W&B summary of a
run all build on these.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moco_lit import methods
from moco_lit.evaluation.stats import CONFIDENCE, PairedComparison, paired_comparison
from moco_lit.runs import RunFolder, experiment_config, run_id_for
from moco_lit.variants import run_settings


def method_label(config: dict, metrics: dict) -> str:
    """A run's name in tables: the method, then what its class declares worth telling apart.

    A method class names its variant-defining arguments in ``report_label_args`` (shown as
    ``majority_vote (tie=dev-based)``) and, where it has a zero-shot and a trained form, the
    flags that switch to the trained one in ``report_trained_flags`` (any true adds ``(trained)``).
    """
    init_args = (config.get("model") or {}).get("init_args") or {}
    label = metrics["method"]
    method = _method_class((config.get("model") or {}).get("class_path"), label)
    for key in getattr(method, "report_label_args", ()):
        if init_args.get(key) is not None:
            label += f" ({key}={init_args[key]})"
    if any(init_args.get(key) for key in getattr(method, "report_trained_flags", ())):
        label += " (trained)"
    return label


def _method_class(class_path: str | None, name: str) -> type | None:
    """The class that made a run: its configured class path, else the method registered as ``name``."""
    if class_path:
        module_name, _, class_name = class_path.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError):
            pass  # a class this installation lacks: the registered one of that name, if any
    if name in methods.REGISTRY:
        return methods.get(name)
    return None


@dataclass
class Run:
    """One finished test run (a moco_lit run folder or a MoCo log), as the report reads it."""

    path: str
    method: str
    label: str
    level: str
    benchmark: str
    specs: tuple[str, ...]
    names: tuple[str, ...]
    score: float | None
    n: int
    tokens: float
    calls: float
    scores: dict[str, float | None]
    single: dict[str, dict[str, float | None]] = field(default_factory=dict)
    decoding: tuple = ()
    pool_name: str | None = None
    source: str = "run"
    mtime: float = 0.0
    scoring: str = "moco_lit"
    seed: int | None = None  # the method's seed (``--model.seed``); None for MoCo logs
    experiment: str = ""  # id of the experiment without its seed: runs sharing it differ by seed only
    seeds: tuple[int, ...] = ()  # set on a run folding several seeds (moco_lit.seeds.merge_seeds)
    seed_scores: tuple[float, ...] = ()
    seed_paths: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)
    """What decides the result besides the pool and seed (moco_lit.variants.run_settings)."""

    @property
    def pool(self) -> tuple[str, ...]:
        return tuple(sorted(self.specs))

    @property
    def is_single(self) -> bool:
        return self.method == "single_model"

    def per_example(self, total: float) -> float:
        return total / max(self.n or len(self.scores), 1)


def spec_key(entry: Any) -> str:
    """A collaborator entry of a recipe as a comparable string (dict entries as sorted JSON)."""
    return entry if isinstance(entry, str) else json.dumps(entry, sort_keys=True)


def run_from_folder(path: str | Path) -> Run | None:
    """The Run of a finished test-split run folder; None for unfinished or non-test folders."""
    path = Path(path)
    folder = RunFolder(path)
    metrics = folder.read_metrics()
    if metrics is None or metrics.get("split", "test") != "test":
        return None
    config = folder.read_config()
    init_args = (config.get("model") or {}).get("init_args") or {}
    names = tuple(metrics.get("collaborators") or [])
    specs = tuple(spec_key(e) for e in init_args.get("collaborators") or names)
    records = folder.load_predictions()
    single = {}
    if metrics["method"] == "single_model":
        # the collaborators that ran (all, or the one chosen by `model`), in the recipe's order
        chosen = [init_args["model"]] if init_args.get("model") is not None else range(len(specs))
        for index in chosen:
            if index < len(names):
                single[specs[index]] = {
                    key: ((r.get("details") or {}).get("scores") or {}).get(names[index])
                    for key, r in records.items()
                }
    return Run(
        path=str(path),
        method=metrics["method"],
        label=method_label(config, metrics),
        level=metrics.get("level", ""),
        benchmark=metrics["benchmark"],
        specs=specs,
        names=names,
        score=metrics.get("score"),
        n=int(metrics.get("n") or len(records)),
        tokens=float(metrics.get("cost/tokens") or 0.0),
        calls=float(metrics.get("cost/calls") or 0.0),
        scores={key: r.get("score") for key, r in records.items()},
        single=single,
        decoding=tuple(init_args.get(k) for k in ("max_new_tokens", "temperature", "top_p")),
        mtime=(path / "metrics.json").stat().st_mtime,
        scoring=metrics.get("scoring") or "moco_lit",
        seed=init_args.get("seed"),
        experiment=_experiment_without_seed(config),
        settings=run_settings(config, names),
    )


def _experiment_without_seed(config: dict) -> str:
    """The run id the run's configuration would have without the method's seed."""
    if not config:
        return ""
    experiment = experiment_config(config)
    experiment["model"]["init_args"].pop("seed", None)
    return run_id_for(experiment)


def find_run_folders(root: str | Path) -> list[Path]:
    """Every finished run folder under ``root`` (``root`` itself if it is one)."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob("metrics.json") if "wandb" not in p.parts)


@dataclass
class Baseline:
    """The best single model of a run's pool, scored on the run's own examples."""

    name: str
    score: float
    per_model: list[dict[str, float | None]]
    scores: dict[str, float | None] = field(default_factory=dict)
    """The best single model's per-example scores, by example id: what a run is paired with."""


def best_single(run: Run, singles: list[Run]) -> Baseline | None:
    """``run``'s baseline from ``singles`` (single_model runs); None unless every pool member has one."""
    ids = [key for key, value in run.scores.items() if value is not None] or list(run.scores)
    per_model, means, sources = [], {}, {}
    for spec, name in zip(run.specs, run.names or run.specs):
        source = _single_scores_for(spec, run, singles, ids)
        if source is None:
            return None
        values = [source[key] for key in ids if source.get(key) is not None]
        means[name] = sum(values) / len(values) if values else 0.0
        per_model.append(source)
        sources.setdefault(name, source)
    if not means:
        return None
    best = max(means, key=lambda name: (means[name], -list(means).index(name)))
    return Baseline(best, means[best], per_model, sources[best])


def _single_scores_for(spec: str, run: Run, singles: list[Run], ids: list[str]) -> dict | None:
    candidates = [
        s
        for s in singles
        if s.benchmark == run.benchmark and spec in s.single and set(ids) <= set(s.single[spec])
    ]
    if not candidates:
        return None
    # the same decoding settings as the run first, then the most recent
    chosen = max(candidates, key=lambda s: (s.decoding == run.decoding, s.mtime))
    return chosen.single[spec]


def gain_over_best_single(run_path: str | Path) -> float | None:
    """A run folder's score minus its pool's best single model (single_model runs of the same root)."""
    comparison = compare_with_best_single(run_path)
    return None if comparison is None else comparison["gain"]


def compare_with_best_single(run_path: str | Path, confidence: float = CONFIDENCE) -> dict | None:
    """``gain`` over the pool's best single model with its paired ``gain_ci`` and ``gain_p``; None without one."""
    run = run_from_folder(run_path)
    if run is None or run.score is None:
        return None
    benchmark_dir = Path(run_path).parent.parent
    singles = [r for r in map(run_from_folder, find_run_folders(benchmark_dir / "single_model")) if r]
    baseline = best_single(run, singles + ([run] if run.is_single else []))
    if baseline is None:
        return None
    paired = paired_or_none(own_scores(run), baseline.scores, confidence)
    return {"gain": run.score - baseline.score, **gain_fields(paired)}


def own_scores(run: Run) -> dict[str, float | None]:
    """The per-example scores behind ``run.score``: a single_model run's are its best collaborator's."""
    if not run.is_single or not run.single:
        return run.scores

    def mean(scores: dict[str, float | None]) -> float:
        values = [v for v in scores.values() if v is not None]
        return sum(values) / len(values) if values else -math.inf

    specs = list(run.single)
    best = max(specs, key=lambda spec: (mean(run.single[spec]), -specs.index(spec)))
    return run.single[best]


def paired_or_none(
    scores: dict[str, float | None], baseline: dict[str, float | None], confidence: float
) -> PairedComparison | None:
    def scored(value: float | None) -> bool:
        return value is not None and not math.isnan(value)

    if not any(scored(scores.get(key)) and scored(value) for key, value in baseline.items()):
        return None  # no example scored by both: no paired statistic
    return paired_comparison(scores, baseline, confidence)


def gain_fields(paired: PairedComparison | None) -> dict:
    if paired is None:
        return {
            "gain_ci": None,
            "gain_p": None,
            "gain_test": None,
            "paired_n": None,
            "significant_gain": None,
        }
    return {
        "gain_ci": [paired.low, paired.high],
        "gain_p": paired.p_value,
        "gain_test": paired.test,
        "paired_n": paired.n,
        "significant_gain": paired.better,
    }


def summary_path(run_dir: str | Path, name: str) -> Path:
    """The summary file of the sweep called ``name`` under the run root ``run_dir``."""
    return Path(run_dir) / "sweeps" / f"{name}.json"
