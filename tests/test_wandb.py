"""W&B logging without network: an offline run holds the config, tags and summary metrics."""

from __future__ import annotations

import json

import pytest
import yaml

from moco_lit.provenance import code_commit, provenance
from tests.conftest import ROOT, collaborators_arg
from tests.wandb_files import offline_runs

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


# -- what a dashboard reads back: the offline run files, as `wandb sync` would upload them -----------


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    yield lambda: offline_runs(tmp_path)
    wandb.finish()


def broken(rendered: str) -> str:
    """A collaborator whose server went away mid-run."""
    raise RuntimeError("connection reset by the model server")


SINGLE = [
    "--model", "single_model", "--model.model", "1",
    "--model.collaborators", collaborators_arg(["callable:tests.scripted.oracle", "callable:tests.scripted.wrong"]),
    "--data.benchmark", "quickstart", "--data.limit", "4",
]  # fmt: skip


@pytest.mark.slow
def test_a_rerun_resumes_its_run_and_the_config_says_what_ran(run_cli, offline_wandb):
    _, cli = run_cli("test", *SINGLE)
    folder = cli.model.runtime.run_folder.path
    metrics = json.loads((folder / "metrics.json").read_text())
    wandb.finish()  # the process ends
    run_cli("test", *SINGLE)  # the same command again: finds its folder and resumes it
    wandb.finish()
    first, again = offline_wandb()
    assert first.id == again.id and first.name == again.name and again.exit_code == first.exit_code == 0
    config = first.config
    # the recipe's `model` is not replaced by single_model's own `model` argument (index 1)
    assert config["model"]["class_path"].endswith("SingleModel") and config["hparams"]["model"] == 1
    assert config["run_id"] == metrics["run_id"] == folder.name and config["stage"] == "test"
    assert config["method_arguments"] == {"model": 1} and first.job_type == "test/single_model[model=1]"
    assert first.group == "quickstart"
    # versions and the code's commit, the same in the W&B config and in metrics.json
    assert config["versions"] == metrics["versions"] == provenance()["versions"]
    assert set(metrics["versions"]) == {"python", "torch", "transformers", "lightning", "moco_lit"}
    assert config["git_commit"] == metrics["git_commit"] == code_commit()["git_commit"]
    if (ROOT / ".git").exists():
        assert len(metrics["git_commit"]) == 40 and isinstance(metrics["git_dirty"], bool)
    # cost per example beside the totals: runs of different sizes compare
    assert metrics["n"] == 4 and first.summary["cost/calls"] == 4
    assert first.summary["cost/calls_per_example"] == 1.0
    assert first.summary["cost/tokens_per_example"] == pytest.approx(metrics["cost/tokens"] / 4)


@pytest.mark.slow
def test_fit_and_test_of_a_variant_are_apart_and_a_sweep_names_the_group(run_cli, offline_wandb):
    args = [
        "--model", "majority_vote", "--model.tie", "dev-based",
        "--model.collaborators", collaborators_arg(["callable:tests.scripted.oracle", "callable:tests.scripted.wrong"]),
        "--data.benchmark", "quickstart", "--data.dev_limit", "3", "--data.limit", "3",
    ]  # fmt: skip
    run_cli("fit", *args)
    run_cli("test", *args, "--wandb_group", "my-sweep")  # a sweep passes its name as the group
    run_cli("test", *args[:2], *args[4:])  # the default tie: another variant
    wandb.finish()
    fit, test, plain = offline_wandb()
    assert fit.job_type == "fit/majority_vote[tie=dev-based]" and fit.group == "quickstart"
    assert test.job_type == "test/majority_vote[tie=dev-based]" and test.group == "my-sweep"
    assert plain.job_type == "test/majority_vote" and plain.group == "quickstart"
    assert len({fit.id, test.id, plain.id}) == 3
    assert fit.exit_code == 0, "the next command's run closes the fit's run as finished"


@pytest.mark.slow
def test_bad_input_starts_no_run_and_a_failed_run_is_marked_failed(run_cli, offline_wandb, tmp_path):
    from moco_lit.cli import main

    missing = [
        "--model.collaborators",
        "[callable:tests.scripted.oracle, callable:tests.no_such_module.answer]",
    ]
    argv = ["test", "--model", "majority_vote", *missing, "--data.benchmark", "quickstart"]
    assert main([*argv, "--run_dir", str(tmp_path / "runs")]) == 2
    assert offline_wandb() == [], "the models are checked before W&B starts"
    failing = collaborators_arg(["callable:tests.scripted.oracle", "callable:tests.test_wandb.broken"])
    with pytest.raises(RuntimeError, match="connection reset"):
        run_cli(
            "test",
            "--model",
            "majority_vote",
            "--model.collaborators",
            failing,
            "--data.benchmark",
            "quickstart",
        )
    (failed,) = offline_wandb()
    assert failed.exit_code == 1 and failed.job_type == "test/majority_vote"


@pytest.mark.slow
def test_a_short_fit_logs_a_loss_curve(run_cli, offline_wandb, tiny_models):
    specialists = collaborators_arg(
        ["callable:tests.scripted.multiplier", "callable:tests.scripted.reverser"]
    )
    run_cli(
        "fit", "--model", "trained_router", "--model.collaborators", specialists, "--model.router", "encoder",
        "--model.router_base_model", tiny_models[0], "--data.benchmark", "quickstart",
        "--data.dev_limit", "6", "--data.batch_size", "3", "--trainer.max_epochs", "2",
    )  # fmt: skip
    wandb.finish()
    (fit,) = offline_wandb()
    assert len(fit.series("train/loss")) == 4, "one point per step: 2 batches x 2 epochs"


@pytest.mark.slow
def test_a_sweep_groups_its_cells_seeds_share_a_job_type_and_a_failed_cell_is_failed(tmp_path, offline_wandb):
    from moco_lit.sweep import main

    oracle, broken_model = "callable:tests.scripted.oracle", "callable:tests.test_wandb.broken"
    spec = {
        "name": "grid",
        "run_dir": str(tmp_path / "runs"),
        "collaborators": [oracle, "callable:tests.scripted.wrong"],
        "benchmarks": ["quickstart_multiply"],
        "methods": [
            {"method": "majority_vote", "label": "down", "args": {"collaborators": [oracle, broken_model]}}
        ],
        "data": {"limit": 2},
        "seeds": [0, 1],
        "wandb": True,
        "progress": False,
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    assert main(["-c", str(tmp_path / "grid.yaml")]) == 1  # a cell failed
    runs = offline_wandb()
    assert {run.group for run in runs} == {"grid"} and len({run.id for run in runs}) == 4
    by_job = {}
    for run in runs:
        by_job.setdefault(run.job_type, []).append(run)
    # the seeds of one cell are replicates: one job type, the seed in the config
    assert sorted(by_job) == ["test/majority_vote", "test/single_model"]
    assert sorted(run.config["model"]["init_args"]["seed"] for run in by_job["test/single_model"]) == [0, 1]
    assert [run.exit_code for run in by_job["test/single_model"]] == [0, 0]
    assert [run.exit_code for run in by_job["test/majority_vote"]] == [1, 1]
