"""W&B logging without network: an offline run holds the config, tags and summary metrics."""

from __future__ import annotations

import json

import pytest

from tests.conftest import collaborators_arg

wandb = pytest.importorskip("wandb")


@pytest.mark.slow
def test_offline_wandb_run_records_the_experiment(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    pool = collaborators_arg(["callable:tests.scripted.oracle", "callable:tests.scripted.wrong"])
    _, cli = run_cli(
        "test",
        "--model",
        "majority_vote",
        "--model.collaborators",
        pool,
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
    )
    logger = cli.trainer.loggers[0]
    run = logger.experiment
    assert run.group == "quickstart" and set(run.tags) == {"majority_vote", "text"}
    metrics = json.loads((cli.model.runtime.run_folder.path / "metrics.json").read_text())
    assert run.summary["test/score"] == pytest.approx(metrics["score"], abs=1e-6)
    low, high = metrics["score_ci"]
    assert (run.summary["test/score_ci_low"], run.summary["test/score_ci_high"]) == (low, high)
    assert low <= metrics["score"] <= high
    assert "cost/tokens" in run.summary.keys()
    config = dict(run.config)
    assert (
        config["model"]["class_path"].endswith("MajorityVote") and config["data"]["benchmark"] == "quickstart"
    )
    run.finish()
    files = list((cli.model.runtime.run_folder.path / "wandb").rglob("*.wandb"))
    assert files, "an offline run file is written for `wandb sync`"
    summary = next((cli.model.runtime.run_folder.path / "wandb").rglob("wandb-summary.json"), None)
    if summary is not None:
        assert json.loads(summary.read_text())["test/score"] == pytest.approx(metrics["score"], abs=1e-6)


@pytest.mark.slow
def test_with_wandb_a_fit_keeps_its_checkpoints_in_the_run_folder(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    pool = collaborators_arg(["callable:tests.scripted.oracle", "callable:tests.scripted.wrong"])
    _, cli = run_cli(
        "fit", "--model", "majority_vote", "--model.tie", "dev-based", "--model.collaborators", pool,
        "--data.benchmark", "quickstart", "--data.dev_limit", "4",
    )  # fmt: skip
    assert cli.trainer.loggers, "the offline W&B logger is attached"
    folder = cli.model.runtime.run_folder.path
    cli.trainer.loggers[0].experiment.finish()
    # not under the logger's <project>/<run id>/checkpoints
    assert sorted(p.relative_to(folder).parts[0] for p in folder.rglob("*.ckpt")) == ["checkpoints"] * 2
    assert (folder / "checkpoints" / "last.ckpt").is_file()
