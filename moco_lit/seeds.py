"""Several seeds of one experiment: running them, and reading them back as one result.

A method's ``seed`` (``--model.seed``) is the base of every sampled answer, and it is part of the
run id, so each seed of an experiment gets its own run folder. ``test --seeds 0,1,2`` and a sweep's
``seeds`` run the experiment once per seed (``--model.seed N --seed_everything N``); the report
folds runs that differ only by their seed into one row.

Two kinds of uncertainty then sit side by side: the interval *over examples* (how much the score
could move on another sample of questions, computed on each example's score averaged over the
seeds) and the spread *over seeds* (how much it moves when the same questions are answered again
with other sampling seeds: the sample standard deviation of the per-seed scores, their minimum and
maximum, and the number of seeds).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from moco_lit.argv import gives, pop_flag
from moco_lit.errors import UserError
from moco_lit.lightning_cli import finish_wandb_run, run_lightning
from moco_lit.results import Run


def parse_seeds(value: str | int | list, where: str = "--seeds") -> list[int]:
    """``"0,1,2"``, ``[0, 1, 2]`` or ``3`` as a list of distinct integer seeds."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    seeds = []
    for item in items:
        text = str(item).strip()
        try:
            seed = int(text)
        except ValueError:
            raise UserError(
                f"{where}: {text!r} is not an integer seed; give integers such as 0,1,2"
            ) from None
        if isinstance(item, bool) or seed < 0:
            raise UserError(f"{where}: {text!r} is not a seed; give integers >= 0 such as 0,1,2")
        seeds.append(seed)
    if not seeds:
        raise UserError(f"{where}: give at least one seed, such as 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: seed listed twice in {seeds}; give each seed once")
    return seeds


def seed_args(seed: int) -> list[str]:
    """The CLI arguments that make a run use ``seed``: the method's sampling seed and Lightning's."""
    return ["--model.seed", str(seed), "--seed_everything", str(seed)]


@dataclass(frozen=True)
class SeedSpread:
    """Per-seed scores of one experiment and how much they spread."""

    seeds: list[int]
    scores: list[float]

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n − 1); None for one seed."""
        return statistics.stdev(self.scores) if self.n > 1 else None

    def fields(self) -> dict:
        """The spread as report fields: ``seeds``, ``seed_scores``, ``seed_std``, ``seed_min``, ``seed_max``."""
        return {
            "seeds": self.seeds,
            "seed_scores": self.scores,
            "n_seeds": self.n,
            "seed_std": self.std,
            "seed_min": min(self.scores),
            "seed_max": max(self.scores),
        }

    def text(self) -> str:
        std = "–" if self.std is None else f"{self.std:.3f}"
        return (
            f"{self.mean:.3f} ± {std} (std over {self.n} seeds; min–max {min(self.scores):.3f}–"
            f"{max(self.scores):.3f})"
        )


def seed_fields(run: Run) -> dict:
    """A report row's seed columns: the spread when the run folds several seeds, else its one seed."""
    if len(run.seed_scores) > 1:
        return SeedSpread(list(run.seeds), list(run.seed_scores)).fields()
    return {
        "seeds": list(run.seeds) or ([run.seed] if run.seed is not None else []),
        "seed_scores": None,
        "n_seeds": 1,
        "seed_std": None,
        "seed_min": None,
        "seed_max": None,
    }


def merge_seeds(runs: list[Run]) -> list[Run]:
    """Fold runs that differ only by their seed into one run per experiment.

    Per seed the most recent run counts. The folded run's score is the mean of the per-seed scores;
    each example's score (and each single model's) is its mean over the seeds that scored it, so
    the interval over examples, the paired gain and emergence are computed on seed-averaged
    examples. A ``single_model`` run follows one collaborator across the seeds: the best on the
    seed-averaged examples (the baseline the other rows are compared with). Runs without a seed
    (MoCo logs) and experiments with one seed stay as they are.
    """
    groups: dict[tuple, dict[int, Run]] = {}
    kept: list[Run] = []
    for run in sorted(runs, key=lambda r: r.mtime):
        if run.seed is None or not run.experiment:
            kept.append(run)
            continue
        groups.setdefault((run.experiment, run.label, run.pool_name), {})[run.seed] = run
    for by_seed in groups.values():
        seeds = sorted(by_seed)
        if len(seeds) == 1:
            kept.append(by_seed[seeds[0]])
        else:
            kept.append(_fold([by_seed[s] for s in seeds]))
    return kept


def _fold(runs: list[Run]) -> Run:
    latest = max(runs, key=lambda r: r.mtime)
    single = {spec: _mean_per_example([r.single.get(spec) or {} for r in runs]) for spec in latest.single}
    per_seed = [(r.seed, r.score) for r in runs]
    if latest.is_single and single:
        # one collaborator followed across seeds: the best on seed-averaged examples
        specs = list(single)
        best = max(specs, key=lambda spec: (_mean(single[spec].values(), -math.inf), -specs.index(spec)))
        per_seed = [(r.seed, _mean((r.single.get(best) or {}).values())) for r in runs]
    scored = [(seed, score) for seed, score in per_seed if score is not None]
    return replace(
        latest,
        score=statistics.fmean(score for _, score in scored) if scored else None,
        n=max(r.n for r in runs),
        tokens=statistics.fmean(r.tokens for r in runs),
        calls=statistics.fmean(r.calls for r in runs),
        scores=_mean_per_example([r.scores for r in runs]),
        single=single,
        seed=None,
        seeds=tuple(seed for seed, _ in scored),
        seed_scores=tuple(score for _, score in scored),
        seed_paths=tuple(r.path for r in runs),
    )


def _mean(values, empty: float | None = None) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(kept) if kept else empty


def _mean_per_example(per_seed: list[dict[str, float | None]]) -> dict[str, float | None]:
    keys = list(dict.fromkeys(key for scores in per_seed for key in scores))
    merged: dict[str, float | None] = {}
    for key in keys:
        values = [s[key] for s in per_seed if s.get(key) is not None and not math.isnan(s[key])]
        merged[key] = statistics.fmean(values) if values else None
    return merged


# -- test --seeds ---------------------------------------------------------------------------


def split_seeds_flag(argv: list[str]) -> tuple[list[str], list[int] | None]:
    """``argv`` without ``--seeds LIST`` (or ``--seeds=LIST``), and the seeds it gave (None if absent)."""
    rest, value = pop_flag(argv, "--seeds", "0,1,2")
    seeds = None if value is None else parse_seeds(value)
    if seeds is not None and gives(rest, "--model.seed", "--seed_everything"):
        raise UserError("--seeds sets --model.seed and --seed_everything for each run; give one or the other")
    return rest, seeds


def run_test_seeds(argv: list[str], seeds: list[int], out=None) -> list[Path]:
    """``test ... --seeds 0,1,2``: the test once per seed (each in its own run folder), then the
    mean ± std over seeds. A rerun resumes each seed's run from its predictions."""
    out = out or sys.stdout
    folders, scores = [], []
    for seed in seeds:
        try:
            cli = run_lightning([*argv, *seed_args(seed)])
        finally:
            finish_wandb_run()  # each seed its own W&B run
        folder = cli.model.runtime.run_folder.path
        metrics = json.loads((folder / "metrics.json").read_text())
        folders.append(folder)
        scores.append(metrics.get("score"))
        print(f"seed {seed}: score {_score_text(metrics.get('score'))}  {folder}", file=out, flush=True)
    scored = [(seed, score) for seed, score in zip(seeds, scores) if score is not None]
    if scored:
        spread = SeedSpread([s for s, _ in scored], [v for _, v in scored])
        print(f"over seeds {','.join(map(str, spread.seeds))}: {spread.text()}", file=out, flush=True)
    return folders


def main(argv: list[str]) -> int:
    """``test ... --seeds 0,1,2``: the command once per seed, then the mean ± std."""
    run_test_seeds(*split_seeds_flag(argv))
    return 0


def _score_text(score: float | None) -> str:
    return "–" if score is None else f"{score:.3f}"


# -- report tables ----------------------------------------------------------------------------


def has_seed_spread(rows: list[dict]) -> bool:
    return any((row.get("n_seeds") or 1) > 1 for row in rows)


def with_seed_columns(
    rows: list[dict], header: list[str], body: list[list[str]]
) -> tuple[list[str], list[list[str]]]:
    """The result table with its score interval named "over examples" and, beside it, the spread
    over seeds; unchanged when no row folds several seeds."""
    if not has_seed_spread(rows) or "score" not in header:
        return header, body
    at = header.index("score") + 2  # after the score and its interval
    header = [
        *header[: at - 1],
        f"{header[at - 1]} over examples",
        "± std over seeds [min, max] (n)",
        *header[at:],
    ]
    body = [[*cells[:at], _spread_cell(row), *cells[at:]] for row, cells in zip(rows, body)]
    return header, body


def _spread_cell(row: dict) -> str:
    if (row.get("n_seeds") or 1) < 2:
        seeds = row.get("seeds") or []
        return f"one seed ({seeds[0]})" if seeds else "one run"
    return f"± {row['seed_std']:.3f} [{row['seed_min']:.3f}, {row['seed_max']:.3f}] ({row['n_seeds']})"


def uncertainty_note(rows: list[dict]) -> str | None:
    """What each uncertainty column of the result table shows; None when no row folds seeds."""
    if not has_seed_spread(rows):
        return None
    return (
        "Two kinds of uncertainty. The interval over examples says how much a score could move on "
        "another sample of questions (rows with several seeds: computed on each example's score "
        "averaged over the seeds; the gain's paired interval and emergence are too). The spread over "
        "seeds says how much it moves when the same questions are answered again with other sampling "
        "seeds: the sample standard deviation (n − 1) of the per-seed scores, their minimum and "
        "maximum, and the number of seeds; the score is the mean of the per-seed scores."
    )
