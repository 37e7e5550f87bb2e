"""What a report merges: runs of one method in one setting, told apart by their settings.

A setting is a (benchmark, pool) pair, the pool being the *set* of collaborators: listing them in
another order does not make another setting. Within a setting, runs of one method whose settings
differ (``temperature``, ``data.limit``, the collaborators' order, ...) are *variants*: each keeps
its own row, its label naming what differs (``moa (temperature=0.2)``). Runs with the same
settings are *reruns*: the latest counts and the others are listed as superseded, with the
setting, so nothing is dropped without a word. Runs that differ only by their seed are folded
after this, by ``moco_lit.seeds.merge_seeds``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from moco_lit.runs import experiment_config

if TYPE_CHECKING:  # results reads the settings of each run it makes with run_settings
    from moco_lit.results import Run

ORDER = "order"
"""The settings key of the collaborators' order (their names, as the recipe lists them)."""


def run_settings(config: dict, names: tuple[str, ...]) -> dict[str, Any]:
    """The settings that decide a run's result, flat (``temperature``, ``data.limit``, ``order``).

    The same selection as the run id (moco_lit.runs.experiment_config) without the seed
    and with the collaborators reduced to their order: which collaborators ran is the setting's pool.
    """
    if not config:
        return {}
    experiment = experiment_config(config)
    init_args = dict(experiment["model"]["init_args"])
    init_args.pop("seed", None)
    init_args.pop("collaborators", None)
    flat: dict[str, Any] = {key: _plain(value) for key, value in init_args.items()}
    flat |= {f"data.{key}": _plain(value) for key, value in experiment["data"].items()}
    for key in ("ckpt_path", "scoring"):
        if experiment.get(key) is not None:
            flat[key] = _plain(experiment[key])
    flat[ORDER] = ",".join(names)
    return flat


def _plain(value: Any) -> Any:
    return (
        value
        if isinstance(value, str | int | float | bool) or value is None
        else json.dumps(value, sort_keys=True)
    )


def _fingerprint(run: Run) -> str:
    return json.dumps(run.settings, sort_keys=True, default=str)


def setting_of(run: Run) -> str:
    """How a report names ``run``'s setting: the benchmark and the pool, members in sorted order."""
    return f"{run.benchmark} | {run.pool_name or '+'.join(sorted(run.names or run.specs))}"


def separate(runs: list[Run]) -> tuple[list[Run], list[dict]]:
    """(one run per method variant, setting and seed; the superseded reruns: setting, method, run, kept run).

    Variants get their label extended with the settings in which they differ from the other
    variants of their method and setting; reruns of one variant with one seed leave the latest.
    Call it before ``merge_seeds``, which folds the seeds of each variant.
    """
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.label, setting_of(run), run.source)].append(run)  # the rows a report would merge
    kept, superseded = [], []
    for members in groups.values():
        variants: dict[str, list[Run]] = defaultdict(list)
        for run in sorted(members, key=lambda r: r.mtime):
            variants[_fingerprint(run)].append(run)
        differing = _differing_keys([same[-1].settings for same in variants.values()])
        for same in variants.values():
            suffix = ", ".join(f"{key}={_shown(same[-1].settings.get(key))}" for key in differing)
            by_seed: dict[Any, list[Run]] = defaultdict(list)
            for run in same:
                by_seed[run.seed].append(run)
            for reruns in by_seed.values():
                latest = reruns[-1]
                if suffix:
                    latest = replace(latest, label=f"{latest.label} ({suffix})")
                kept.append(latest)
                superseded += [
                    {"setting": setting_of(old), "method": latest.label, "run": old.path, "kept": latest.path}
                    for old in reruns[:-1]
                ]
    return kept, superseded


def _differing_keys(settings: list[dict]) -> list[str]:
    if len(settings) < 2:
        return []
    keys = sorted({key for entry in settings for key in entry})
    differing = [key for key in keys if len({json.dumps(s.get(key), default=str) for s in settings}) > 1]
    return sorted(differing, key=lambda key: key == ORDER)  # the order last: it makes long labels


def _shown(value: Any) -> str:
    text = "unset" if value is None else str(value)
    return text if len(text) <= 40 else text[:39] + "…"
