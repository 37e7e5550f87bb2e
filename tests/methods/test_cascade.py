"""cascade: logit mode on tiny models (thresholds = dev quantiles, first confident model answers),
just_ask mode on scripted collaborators that admit doubt."""

from __future__ import annotations

import json

import pytest
import torch

from moco_lit.collaborators import load_collaborator
from moco_lit.generation import GenerationEngine
from tests.conftest import collaborators_arg, run_records
from tests.scripted import solve_quickstart


def _unsure_unless(rendered: str, skill_word: str) -> str:
    answer = solve_quickstart(rendered)
    if skill_word in rendered:
        return str(answer)
    return "7, but I am unconfident" if "unconfident" in rendered else "7"


def unsure_multiplier(rendered: str) -> str:
    """Right on multiplication; admits doubt on anything else when asked to."""
    return _unsure_unless(rendered, "times")


def unsure_reverser(rendered: str) -> str:
    """Right on reversal; admits doubt on anything else when asked to."""
    return _unsure_unless(rendered, "Reverse")


def test_logit_cascade_on_tiny_models_uses_dev_quantile_thresholds(run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "cascade",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.max_new_tokens",
        "6",
        "--model.scored_max_new_tokens",
        "6",
        "--model.temperature",
        "0",  # greedy: the thresholds are recomputed below without the method's seeds
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "9",
        "--data.dev_limit",
        "9",
    )
    assert code == 0
    model = cli.model
    dev_prompts = [e["prompt"] for e in cli.datamodule.examples("dev")]
    engine = GenerationEngine(cache=None, progress=False)
    for index in range(2):  # the last model has no threshold: it always answers
        outputs = engine.generate(load_collaborator(tiny_models[index]), dev_prompts, model.scored_decoding)
        # MoCo's measure by default: the top-5 step confidence, not the token probability
        confidences = [o.top5_confidence for o in outputs]
        assert confidences != pytest.approx([o.confidence for o in outputs])
        expected = torch.quantile(torch.tensor(confidences, dtype=torch.float64), 0.5)
        assert float(model.thresholds[index]) == pytest.approx(float(expected), rel=1e-6)
    names = model.collaborator_names
    records = run_records(cli)
    assert len(records) == 9
    last = len(names) - 1
    for record in records:
        trail = record["details"]["trail"]
        for level, step in enumerate(trail):
            if level < last:  # accepted exactly when the confidence reaches the model's dev threshold
                assert step["accepted"] == (step["confidence"] >= float(model.thresholds[level]))
        # the cascade stops at the first accepted answer (the last model always answers)
        assert not any(step["accepted"] for step in trail[:-1])
        assert trail[-1]["accepted"] or len(trail) - 1 == last
        assert record["answered_by"] == names[len(trail) - 1] and record["calls"] == len(trail)


def test_just_ask_passes_doubtful_questions_on(run_cli):
    scripted = collaborators_arg(
        [
            "callable:tests.methods.test_cascade.unsure_multiplier",
            "callable:tests.methods.test_cascade.unsure_reverser",
            "callable:tests.scripted.oracle",
        ]
    )
    code, cli = run_cli(
        "test",
        "--model",
        "cascade",
        "--model.mode",
        "just_ask",
        "--model.collaborators",
        scripted,
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "9",
    )
    assert not bool(cli.model.calibrated)  # just_ask needs no dev calibration
    records = {r["id"]: r for r in run_records(cli)}
    expected = {"multiply": "unsure_multiplier", "reverse": "unsure_reverser", "next_letter": "oracle"}
    for record_id, record in records.items():
        assert record["answered_by"] == expected[record_id.split("-")[0]]
        assert record["score"] == 1.0
    metrics = json.loads((cli.model.runtime.run_folder.path / "metrics.json").read_text())
    assert metrics["score"] == 1.0 and metrics["cost/calls"] == 3 * 1 + 3 * 2 + 3 * 3


def test_marker_as_written_and_scored_budget():
    from types import SimpleNamespace

    from moco_lit.methods.api.cascade import Cascade

    specs = ["callable:tests.scripted.oracle"] * 3
    just_ask = Cascade(specs, mode="just_ask")
    assert just_ask.is_confident(0, SimpleNamespace(text="42, but unconfident"))[0] is False
    assert just_ask.is_confident(0, SimpleNamespace(text="42. Unconfident? No."))[0] is True  # as MoCo
    assert Cascade(specs).scored_decoding.max_new_tokens == 256
    assert Cascade(specs, scored_max_new_tokens=None, max_new_tokens=64).scored_decoding.max_new_tokens == 64
