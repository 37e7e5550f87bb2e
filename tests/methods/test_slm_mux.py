"""slm_mux: end to end on tiny models; the model whose samples agree most wins, ties by dev score.

Scripted collaborators receive only the rendered prompt, not the sample's seed, so the wavering
responders below count how often they have seen each prompt and answer by that count.
"""

from __future__ import annotations

from collections import Counter

from tests.conftest import collaborators_arg, run_records
from tests.scripted import solve_quickstart

_seen: Counter[tuple[str, str]] = Counter()


def _nth(name: str, rendered: str) -> int:
    _seen[name, rendered] += 1
    return _seen[name, rendered] - 1


def steady(rendered: str) -> str:
    """Right 3 times in 5, otherwise a different wrong answer each time: confidence 0.6."""
    k = _nth("steady", rendered)
    return str(solve_quickstart(rendered)) if k % 5 < 3 else f"wrong{k}"


def scattered(rendered: str) -> str:
    """A different wrong answer every time: confidence 0.2."""
    return f"guess{_nth('scattered', rendered)}"


def test_slm_mux_runs_on_tiny_models(run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "slm_mux",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.samples_per_model",
        "3",
        "--model.max_new_tokens",
        "4",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "4",
        "--data.dev_limit",
        "3",
    )
    assert code == 0 and bool(cli.model.calibrated)  # tie: dev-based calibrates first
    records = run_records(cli)
    assert len(records) == 4 and all(r["calls"] == 9 for r in records)
    for record in records:
        confidence = record["details"]["confidence"]
        assert confidence[record["answered_by"]] == max(confidence.values())


def test_the_model_whose_samples_agree_most_wins(run_cli):
    _seen.clear()
    scripted = collaborators_arg(
        ["callable:tests.methods.test_slm_mux.scattered", "callable:tests.methods.test_slm_mux.steady"]
    )
    code, cli = run_cli(
        "test",
        "--model",
        "slm_mux",
        "--model.collaborators",
        scripted,
        "--model.tie",
        "model-order",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "6",
    )
    records = run_records(cli)
    assert len(records) == 6
    for record in records:
        assert record["answered_by"] == "steady" and record["score"] == 1.0
        assert record["details"]["confidence"] == {"scattered": 0.2, "steady": 0.6}
        assert record["calls"] == 10


def test_equally_confident_models_tie_by_dev_score(run_cli):
    # both always answer the same way (confidence 1); multiplier is better on dev than wrong
    scripted = collaborators_arg(["callable:tests.scripted.wrong", "callable:tests.scripted.multiplier"])
    code, cli = run_cli(
        "test",
        "--model",
        "slm_mux",
        "--model.collaborators",
        scripted,
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
        "--data.dev_limit",
        "6",
    )
    records = run_records(cli)
    assert all(r["details"]["tie"] and r["answered_by"] == "multiplier" for r in records)
