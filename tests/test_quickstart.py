"""The quickstart end to end with a tiny training budget: specialists, methods, leaderboard."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import yaml

from moco_lit.data.synthetic import SKILLS, synthetic_benchmark
from moco_lit.quickstart import (
    QUICKSTART_RUNS,
    TRAINED_ROUTER,
    QuickstartRun,
    QuickstartRunner,
    SpecialistTraining,
    ensure_specialists,
    run_quickstart,
)

TRAINED_LABELS = {
    "trained_router (router=encoder)",
    "sparta",
    "agglm",
    "distillation",
    "multiagent_finetuning",
    "llm_blender (trained)",
}


def test_synthetic_benchmark_is_deterministic_and_mixed():
    first, second = synthetic_benchmark("quickstart"), synthetic_benchmark("quickstart")
    assert first.test == second.test and first.dev == second.dev
    assert {r["skill"] for r in first.test} == set(SKILLS)
    assert len({r["id"] for r in first.test}) == len(first.test)
    assert synthetic_benchmark("quickstart_reverse").task_type == "exact_match"
    assert synthetic_benchmark("not_a_synthetic_name") is None


def test_quickstart_trains_caches_and_prints_a_leaderboard(tmp_path, capsys):
    training = SpecialistTraining(max_steps=20, seconds=60, train_examples=200)
    rows = run_quickstart(run_dir=str(tmp_path / "runs"), limit=6, training=training)
    out = capsys.readouterr().out
    assert "quickstart leaderboard" in out
    labels = {row["method"] for row in rows}
    assert {f"single: {skill}" for skill in SKILLS} <= labels
    assert any(label.startswith("majority_vote") for label in labels)
    for row in rows:
        assert set(row["groups"]) <= set(SKILLS) and 0.0 <= row["score"] <= 1.0
        metrics = json.loads((Path(row["run"]) / "metrics.json").read_text())
        assert metrics["n"] == 6
    # every trained entry was fitted, then tested from its own fit's checkpoint
    by_label = {row["method"]: Path(row["run"]) for row in rows}
    assert TRAINED_LABELS <= set(by_label) and "llm_blender" in by_label  # zero-shot and trained apart
    for label in TRAINED_LABELS:
        config = yaml.safe_load((by_label[label] / "config.yaml").read_text())
        checkpoint = Path(config["ckpt_path"])
        assert checkpoint.is_file() and checkpoint.parents[1].name.endswith("-fit")
        assert checkpoint.parents[2] == by_label[label].parent  # the same method's fit
    # distillation learnt from the trained router's outputs on the dev questions
    config = yaml.safe_load((by_label["distillation"] / "config.yaml").read_text())
    teacher = Path(config["model"]["init_args"]["teacher_run"])
    assert teacher.parent.name == "trained_router" and teacher.name.endswith("-validate")
    teacher_ids = [
        json.loads(line)["id"] for line in (teacher / "predictions.jsonl").read_text().splitlines()
    ]
    assert teacher_ids == [record["id"] for record in synthetic_benchmark("quickstart").dev[:6]]
    report = tmp_path / "runs" / "reports" / "quickstart"
    cells = json.loads((report / "runs.json").read_text())["cells"]
    assert {Path(cell["run_folder"]) for cell in cells} == {Path(row["run"]) for row in rows}
    assert "llm_blender (trained)" in next(report.glob("*.md")).read_text()
    # the specialists are cached: asking again trains nothing and returns the same folders
    folders = ensure_specialists(training)
    assert [Path(f).name for f in folders] == list(SKILLS)
    assert all((Path(f) / "config.json").exists() for f in folders)


def _fake_cli(folder: Path) -> SimpleNamespace:
    """What the runner reads of a finished LightningCLI: the checkpoint and the run folder."""
    checkpoint = SimpleNamespace(best_model_path=str(folder / "last.ckpt"))
    runtime = SimpleNamespace(run_folder=SimpleNamespace(path=folder))
    return SimpleNamespace(
        trainer=SimpleNamespace(checkpoint_callback=checkpoint), model=SimpleNamespace(runtime=runtime)
    )


def test_runner_fits_each_entry_once_and_passes_the_teachers_dev_run(tmp_path, monkeypatch):
    calls: list[list[str]] = []

    def fake_lightning(args: list[str]) -> SimpleNamespace:
        calls.append(args)
        return _fake_cli(tmp_path / f"{args[0]}-{args[2]}-{len(calls)}")

    monkeypatch.setattr(QuickstartRunner, "_lightning", staticmethod(fake_lightning))
    teacher = QuickstartRun("trained_router", ("--model.router_base_model", "{specialist}"), fit_first=True)
    student = QuickstartRun(
        "distillation", ("--model.teacher_run", "{teacher}"), fit_first=True, teacher=teacher
    )
    runner = QuickstartRunner(["--data.benchmark", "quickstart"], "/specialists/multiply")
    runner.test(teacher)
    runner.test(student)
    stages = [(args[0], args[2]) for args in calls]
    # the router is fitted once: its test and its dev run for the student share the checkpoint
    assert stages == [
        ("fit", "trained_router"),
        ("test", "trained_router"),
        ("validate", "trained_router"),
        ("fit", "distillation"),
        ("test", "distillation"),
    ]
    router_ckpt = str(tmp_path / "fit-trained_router-1" / "last.ckpt")
    assert calls[0][-2:] == ["--model.router_base_model", "/specialists/multiply"]
    assert calls[1][-2:] == calls[2][-2:] == ["--ckpt_path", router_ckpt]
    teacher_dev = str(tmp_path / "validate-trained_router-3")
    assert calls[3][-2:] == ["--model.teacher_run", teacher_dev]
    assert calls[4][-4:] == [
        "--model.teacher_run",
        teacher_dev,
        "--ckpt_path",
        str(tmp_path / "fit-distillation-4" / "last.ckpt"),
    ]


def test_every_trained_method_is_on_the_quickstart_list():
    trained = {run.method for run in QUICKSTART_RUNS if run.fit_first}
    assert trained == {
        "trained_router",
        "sparta",
        "agglm",
        "distillation",
        "multiagent_finetuning",
        "llm_blender",
    }
    (distillation,) = [run for run in QUICKSTART_RUNS if run.method == "distillation"]
    assert distillation.teacher is TRAINED_ROUTER and "{teacher}" in distillation.args
