"""distillation: a teacher run's dev outputs train the students; their likelihood of them rises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moco_lit.errors import UserError
from moco_lit.methods.distillation import read_teacher_outputs
from tests.conftest import ROOT, collaborators_arg


def _teacher_run(run_cli, dev_limit: str) -> Path:
    """An oracle majority vote validated on dev: the teacher system's outputs."""
    oracles = collaborators_arg(["callable:tests.scripted.oracle"] * 2)
    _, cli = run_cli(
        "validate", "--model", "majority_vote", "--model.collaborators", oracles,
        "--data.benchmark", "quickstart", "--data.dev_limit", dev_limit,
    )  # fmt: skip
    return cli.model.runtime.run_folder.path


def test_distillation_raises_the_students_likelihood_of_the_teacher_outputs(run_cli, tiny_models):
    teacher = _teacher_run(run_cli, "6")
    assert len(read_teacher_outputs(str(teacher))) == 6
    common = ["--model", "distillation", "--model.collaborators", collaborators_arg(tiny_models[:2])]
    common += ["--model.teacher_run", str(teacher), "--model.max_new_tokens", "4", "--model.lora_r", "8"]
    common += ["--data.benchmark", "quickstart", "--data.dev_limit", "6", "--data.batch_size", "3"]
    _, fitted = run_cli("fit", *common, "--model.learning_rate", "0.02", "--model.epochs_per_iteration", "6")
    model = fitted.model
    assert model.agents.layout == "one_by_one"  # two different tiny models: one copy each
    before, after = model.teacher_logp_before, model.teacher_logp_after
    # every student now finds the teacher's answers clearly more likely than before (> 1.6x)
    assert bool((after > before + 0.5).all()), (before, after)
    rows = (model.runtime.run_folder.path / "distillation_iter0.jsonl").read_text().splitlines()
    assert len(rows) == 12 and {json.loads(r)["agent"] for r in rows} == {"agent0", "agent1"}

    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    _, tested = run_cli("test", *common, "--data.limit", "2", "--ckpt_path", checkpoint)
    metrics = json.loads((tested.model.runtime.run_folder.path / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["cost/calls"] == 2  # only the dev-best student answers
    assert metrics["teacher_logp_after"] > metrics["teacher_logp_before"]


def test_a_missing_teacher_run_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="predictions.jsonl"):
        read_teacher_outputs(str(tmp_path))


def test_recipe_parses(run_cli):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "-c", str(ROOT / "recipes/baseline/distillation.yaml"), "--print_config")
    assert exit_info.value.code == 0
