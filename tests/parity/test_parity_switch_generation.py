"""switch_generation against MoCo's ``api_switch_generation``: the selector's training (every
prefix and rollout call, the rewards asked for, the SFT rows and their labels, the LoRA recipe)
and the test answers (every selector and writer call, the outputs and the score).

MoCo's selector SFT only records its model, data and settings; moco_lit's training steps record
the rows they receive instead of taking gradient steps, and its tuned selector answers from the
script as MoCo's does. The reward model is a stand-in on both sides that scores a response by
the replies it quotes. MoCo's random draws (dev questions, prefix lengths, random writers) come
from moco_lit's seeded stream; the writers drawn for selector replies that name no model are the
same scripted integers on both sides.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from moco_lit.collaborators import load_collaborator
from moco_lit.evaluation.judges import RewardModelJudge
from moco_lit.methods.api import switch_generation as lit_method
from tests.parity.moco_harness import (
    ADDITIONS,
    LARGER_ADDITIONS,
    Ask,
    Script,
    _dispatch,
    assert_same,
    assert_same_calls,
    collaborators,
    exact_match_task,
    fit_then_test,
    run_moco,
)

TASK = exact_match_task(dev=ADDITIONS[:5], test=LARGER_ADDITIONS[:3])
MODELS = ["alpha", "beta", "gamma"]
SEED = 42
FALLBACKS = [2, 0, 1, 1, 0, 2, 2, 1]
"""Writers for selector replies that name no model, in the order asked (then again)."""

selector = _dispatch("selector")  # the tuned selector of both systems, answering from the script


def digest(*parts) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest(), 16)


def policy(ask: Ask) -> str:
    d = digest(ask.model, ask.example, tuple(q.tag for q in ask.in_order), ask.repeat)
    if ask.model == "selector":  # MoCo's reading: the highest model number anywhere in the reply
        return ("no idea", f"model {d % 3}", "between 0 and 2, say 2", "model 1, not 0")[d % 4]
    if d % 3 == 0:  # shorter than patch_size characters: the writer stopped
        return "so"
    if d % 3 == 1:
        return f"and so the sum comes to {ask.record['output']}"
    return "let me add the two numbers step by step"


def reward(script: Script, response: str) -> float:
    """The stand-in reward model: a score from the replies the response quotes."""
    return float(sum(digest(q.tag) % 11 for text, q in script.replies.items() if text in response))


def quoted(script: Script, text: str) -> tuple[str, ...]:
    found = sorted((text.index(t), q.tag) for t, q in script.replies.items() if t in text)
    return tuple(tag for _, tag in found)


class Draws:
    """MoCo's ``random``: moco_lit's rollout stream while the selector's data are drawn, then the
    scripted fallback writers."""

    def __init__(self) -> None:
        self.stream = lit_method.rollout_draws(SEED)
        self.testing = False
        self.fallbacks = 0

    def sample(self, population, k):
        return self.stream.sample(population, k)

    def randint(self, low, high):
        if not self.testing:
            return self.stream.randint(low, high)
        self.fallbacks += 1
        return FALLBACKS[(self.fallbacks - 1) % len(FALLBACKS)]


def run_moco_switch(monkeypatch, tmp_path: Path, hyperparameters: dict):
    from model_collaboration.method import distributed_generation as generation

    draws, trained, rewarded = Draws(), [], []
    sft_path = "model_collaboration/logs/selector_sft_parity"

    def renamed(names, inputs, gpus, *args, **kwargs):
        names = ["selector" if n == sft_path else n for n in names]
        return generation.distributed_generation(names, inputs, gpus, *args, **kwargs)

    class Trainer:
        def __init__(self, model, args, train_dataset, eval_dataset, peft_config):
            self.args = args
            trained.append(
                {"model": model.name, "args": vars(args), "rows": train_dataset, "lora": peft_config}
            )

        def train(self):
            draws.testing = True

        def save_model(self, path):
            pass

    class Tokenizers:
        @staticmethod
        def from_pretrained(name, **kwargs):
            return SimpleNamespace(eos_token="</s>", save_pretrained=lambda path: None)

    def scores(gpu, inputs, outputs):
        script = _moco_script[0]
        rewarded.append((quoted(script, inputs[0]), quoted(script, outputs[0])))
        return [reward(script, outputs[0])]

    def load_dataset(kind, data_files, split):
        return [json.loads(line) for line in Path(data_files).read_text().splitlines()]

    # MoCo imports `datasets` and `trl` at the top; neither is needed once its training is recorded
    for name in ("datasets", "trl"):
        if name not in sys.modules:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setattr(sys.modules["datasets"], "load_dataset", load_dataset, raising=False)
    monkeypatch.setattr(sys.modules["trl"], "SFTTrainer", Trainer, raising=False)
    monkeypatch.setattr(sys.modules["trl"], "SFTConfig", SimpleNamespace, raising=False)
    _moco_script.clear()
    original = Script.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        _moco_script.append(self)

    monkeypatch.setattr(Script, "__init__", remember)
    # MoCo finds the dev split by listing its data folder (the task itself is read from the test)
    data = tmp_path / "moco" / "model_collaboration" / "data"
    data.mkdir(parents=True)
    TASK.write(data)
    moco = run_moco(
        monkeypatch, tmp_path, "api_switch_generation", TASK, MODELS, policy, hyperparameters,
        patches={
            "random": draws,
            "distributed_generation": SimpleNamespace(distributed_generation=renamed),
            "load_reward_model": lambda gpu, name: None,
            "reward_model_scores": scores,
            "load_dataset": load_dataset,
            "SFTTrainer": Trainer,
            "SFTConfig": SimpleNamespace,
            "AutoTokenizer": Tokenizers,
        },
    )  # fmt: skip
    monkeypatch.setattr(Script, "__init__", original)
    return moco, trained, rewarded, draws.fallbacks


_moco_script: list[Script] = []


def run_lit_switch(run_cli, tmp_path: Path, monkeypatch, *args: str):
    script = Script(TASK, policy)
    steps: list[list[dict]] = []
    rewarded: list[tuple] = []
    fallbacks = iter(FALLBACKS * 10)
    drawn: list[int] = []

    def record(self, rows):
        steps.append([self.sft_rows[r] for r in rows])
        return None

    class StandIn:
        def score(self, prompts, responses):
            rewarded.extend((quoted(script, p), quoted(script, r)) for p, r in zip(prompts, responses))
            return [reward(script, r) for r in responses]

    spec = "callable:tests.parity.test_parity_switch_generation.selector"
    monkeypatch.setattr(lit_method.SwitchGeneration, "selector_loss", record)
    monkeypatch.setattr(
        lit_method.SwitchGeneration, "load_selector_lm", lambda self: (torch.nn.Linear(1, 1), None)
    )
    monkeypatch.setattr(
        lit_method.SwitchGeneration, "trained_selector", lambda self: load_collaborator(spec, "cpu")
    )
    monkeypatch.setattr(
        lit_method,
        "fallback_writer",
        lambda seed, example, round_index, count: drawn.append(next(fallbacks)) or drawn[-1],
    )
    monkeypatch.setattr(
        RewardModelJudge, "for_phase", classmethod(lambda cls, *a, **k: contextlib.nullcontext(StandIn()))
    )
    common = ["--model", "switch_generation", "--model.collaborators", collaborators(MODELS), *args]
    common += ["--model.seed", str(SEED), "--data.batch_size", "8", "--trainer.max_epochs", "1"]
    common += ["--data.benchmark", str(TASK.write(tmp_path)), "--cache", "false", "--wandb", "false"]
    run = fit_then_test(run_cli, TASK, script, common)
    tested, records, folder = run.tested, run.records, run.folder
    metrics = json.loads((folder / "metrics.json").read_text())
    return script, steps, rewarded, tested.model, records, metrics, len(drawn)


def describe(script: Script, prompt: str, completion: str) -> tuple:
    """An SFT row as both systems can be compared: its question, the replies its prompt quotes
    (by tag, in the order shown) and its label."""
    return (script.task.find(prompt)[1]["id"], quoted(script, prompt), completion)


CASES = {
    "ends-early": {"patch_size": 25, "max_response_length": 125, "batch_size": 2, "training_instance_num": 4,
                   "rollout_per_instance": 3},
    "wait-and-objective": {"patch_size": 20, "max_response_length": 120, "batch_size": 3,
                           "training_instance_num": 3, "rollout_per_instance": 4, "wait_flag": True,
                           "objective_flag": True},
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_switch_generation_matches_moco(run_cli, tmp_path, monkeypatch, case):
    hyper = CASES[case]
    moco, moco_trained, moco_rewarded, moco_fallbacks = run_moco_switch(monkeypatch, tmp_path, hyper)
    options = ["--model.max_new_tokens", str(hyper["max_response_length"])]
    options += ["--model.generation_batch_size", str(hyper["batch_size"])]
    for name in (
        "patch_size",
        "training_instance_num",
        "rollout_per_instance",
        "wait_flag",
        "objective_flag",
    ):
        if name in hyper:
            options += [f"--model.{name}", str(hyper[name]).lower()]
    script, steps, lit_rewarded, lit, records, metrics, lit_fallbacks = run_lit_switch(
        run_cli, tmp_path, monkeypatch, *options
    )

    # every call: the prefixes and rollouts on dev, the selector and the writers at test
    assert_same_calls(moco.calls, script.calls)
    # selector replies that name no model: as many on both sides, each given the same writer
    assert moco_fallbacks == lit_fallbacks > 0
    assert any(c.model == "selector" for c in script.calls) and any(c.split == "dev" for c in script.calls)
    # the rewards asked for: which replies the state and the scored answer quote (MoCo asks them
    # grouped by the rollout's first writer, moco_lit in rollout order)
    assert_same("rewarded rollouts", sorted(moco_rewarded), sorted(lit_rewarded))
    # the selector's SFT rows: the state it reads and the label (MoCo trains once on all of them)
    (run,) = moco_trained
    assert run["model"] == "Qwen/Qwen2.5-7B-Instruct" == lit.hparams.selector_base_model
    theirs = [describe(moco.script, r["prompt"], r["completion"]) for r in run["rows"]]
    ours = [describe(script, r["prompt"], r["completion"]) for step in steps for r in step]
    assert_same("selector SFT rows", theirs, ours)
    assert len({row[2] for row in ours}) > 1  # the labels are not all one model
    # the LoRA recipe
    lora, args = run["lora"], run["args"]
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (
        lit.hparams.lora_r,
        lit.hparams.lora_alpha,
        lit.hparams.lora_dropout,
    )
    assert set(lora.target_modules) == set(lit.hparams.lora_target_modules)
    assert args["learning_rate"] == lit.learning_rate and args["lr_scheduler_type"] == lit.lr_schedule
    assert (
        args["per_device_train_batch_size"] * args["gradient_accumulation_steps"]
        == lit.hparams.sft_batch_size
    )
    assert args["max_length"] == lit.hparams.sft_max_length
    # the test answers and the score
    assert_same("test outputs", moco.outputs, [r["output"] for r in records])
    assert moco.score == pytest.approx(metrics["score"])
    segments = [[[MODELS.index(n) for n, _ in r["details"]["segments"]]] for r in records]
    assert segments == [[entry["segment_model_index"]] for entry in moco.log["logs"]]
