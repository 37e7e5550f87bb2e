"""A report ``Run`` built from per-example scores, for the report, figure and export tests."""

from __future__ import annotations

from moco_lit.report import Run


def make_run(
    method: str,
    scores: dict,
    *,
    single: dict | None = None,
    benchmark: str = "b",
    specs: tuple = ("m1", "m2"),
    label: str | None = None,
    level: str = "",
    tokens_per_example: float = 0.0,
    calls_per_example: float = 0.0,
    path: str | None = None,
) -> Run:
    """A run whose score is the mean of its non-null ``scores`` and whose cost totals are per
    example values times the number of examples."""
    values = [v for v in scores.values() if v is not None]
    return Run(
        path=path or f"/{benchmark}/{label or method}",
        method=method,
        label=label or method,
        level=level,
        benchmark=benchmark,
        specs=specs,
        names=specs,
        score=sum(values) / len(values),
        n=len(scores),
        tokens=tokens_per_example * len(scores),
        calls=calls_per_example * len(scores),
        scores=scores,
        single=single or {},
    )
