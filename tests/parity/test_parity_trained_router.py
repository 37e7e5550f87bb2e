"""trained_router against MoCo's ``api_trained_router``: the dev calls, the router's labels (ties
broken by a reward model), its SFT data and epochs, the routing of every test question, the
outputs and the score.

Both sides score tied dev outputs with the same scripted reward (a hash of the output text, which
is byte-identical on both sides); MoCo's reward model name must be moco_lit's default. MoCo's
router SFT only records its data and settings; moco_lit's training step records the labels it
receives. The trained router is scripted: it names one model, several, or none, and both systems
read its reply by their own rule. MoCo's random fallback takes moco_lit's seeded draws.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch import nn

from moco_lit.dev_table import question_text
from moco_lit.generation import example_seed
from tests.parity.moco_harness import (
    _ACTIVE,
    MODELS,
    Ask,
    Script,
    assert_same,
    assert_same_calls,
    boxed,
    collaborators,
    exact_match_task,
    fit_then_test,
    run_moco,
)

TASK = exact_match_task(
    dev=[
        (f"What is {a} times {b}?", str(a * b)) for a, b in ((2, 3), (4, 5), (6, 7), (8, 9), (3, 11), (5, 13))
    ]
    + [(f"What is {a} minus {b}?", str(a - b)) for a, b in ((20, 7), (31, 9), (45, 12), (50, 17))],
    test=[
        (f"What is {a} plus {b}?", str(a + b)) for a, b in ((12, 30), (23, 41), (34, 52), (45, 63), (56, 74))
    ]
    + [("What is 99 divided by 3?", "33"), ("What is 64 divided by 8?", "8")],
)
AGENTS = list(MODELS[:3])
SKYWORK = "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2"
ROUTER = "model_collaboration/logs/router_sft_parity"  # MoCo's trained router (no digits: replies are read)
ROUTER_REPLIES = ("Model 2", "Model 1 or else Model 3", "I would pick the first one", "Model 3", "Model 1")


def digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def reward(response: str) -> float:
    """The scripted reward model: a fixed score per output text."""
    return float(digest(response) % 1000)


def router_reply(example: str) -> str:
    """The scripted router's reply for test question ``t<n>``: every reading rule in turn."""
    return ROUTER_REPLIES[int(example[1:]) % len(ROUTER_REPLIES)]


def policy(ask: Ask) -> str:
    if ask.model == ROUTER:
        return router_reply(ask.example)
    return boxed(ask.record["output"] if policy_right(ask.model, ask.example) else "0")


def policy_right(model: str, example: str) -> bool:
    """Right two times in three: many dev questions tie."""
    return digest(f"{model} {example}") % 3 != 0


def run_moco_router(monkeypatch, tmp_path: Path, fallbacks: list[int]):
    recorded = SimpleNamespace(reward_models=[], trainers=[])
    module_name = "model_collaboration.method.api_trained_router"

    def load_reward_model(gpu_id, name):
        import importlib

        recorded.reward_models.append(name)
        module = importlib.import_module(module_name)
        module.rm = module.rm_tokenizer = None  # MoCo deletes them again after labelling

    class Trainer:
        def __init__(self, model, args, train_dataset, eval_dataset, peft_config):
            recorded.trainers.append(SimpleNamespace(args=args, data=list(train_dataset), lora=peft_config))
            self.args = args

        def train(self):
            pass

        def save_model(self, path):
            pass

    class Tokenizers:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            return SimpleNamespace(eos_token="</s>", save_pretrained=lambda path: None)

    draws = list(fallbacks)
    moco = run_moco(
        monkeypatch, tmp_path, "api_trained_router", TASK, AGENTS, policy, {},
        patches={
            "load_reward_model": load_reward_model,
            "reward_model_scores": lambda gpu_id, inputs, outputs: [reward(o) for o in outputs],
            "load_dataset": lambda kind, data_files, split: [
                json.loads(line) for line in Path(data_files).read_text().splitlines()
            ],
            "AutoTokenizer": Tokenizers,
            "AutoModelForCausalLM": SimpleNamespace(from_pretrained=lambda *a, **k: None),
            "SFTConfig": lambda **kwargs: SimpleNamespace(**kwargs),
            "SFTTrainer": Trainer,
            "random": SimpleNamespace(randint=lambda low, high: draws.pop(0)),
        },
    )  # fmt: skip
    assert not draws, "MoCo fell back to a random model fewer times than moco_lit"
    return moco, recorded


def run_lit_router(run_cli, tmp_path: Path, monkeypatch, *args: str):
    from moco_lit.evaluation.judges import RewardModelJudge
    from moco_lit.methods.api.trained_router import TrainedRouter

    steps: list[list[tuple[str, int]]] = []  # per training step: (dev id, label)
    reward_models: list[str] = []

    def recorded_step(self, batch, batch_idx):
        steps.append([(e["id"], self.dev_labels[row]) for e, row in zip(batch, self.dev_rows(batch))])
        return None

    @contextlib.contextmanager
    def scripted_judge(name, device=None, **kwargs):
        reward_models.append(name)
        yield SimpleNamespace(score=lambda prompts, responses: [reward(r) for r in responses])

    def scripted_replies(self, batch):
        return [_ACTIVE[-1](ROUTER, self.router_message(question_text(e["prompt"]))) for e in batch]

    monkeypatch.setattr(TrainedRouter, "training_step", recorded_step)
    monkeypatch.setattr(TrainedRouter, "_load_router_lm", lambda self: (nn.Linear(1, 1), None))
    monkeypatch.setattr(TrainedRouter, "router_replies", scripted_replies)
    monkeypatch.setattr(RewardModelJudge, "for_phase", scripted_judge)
    script = Script(TASK, policy)
    common = ["--model", "trained_router", "--model.collaborators", collaborators(AGENTS), *args]
    common += ["--model.temperature", "0", "--model.top_p", "1.0", "--model.lora", "false"]
    common += ["--data.benchmark", str(TASK.write(tmp_path)), "--data.batch_size", "4"]
    common += ["--cache", "false", "--wandb", "false"]
    run = fit_then_test(run_cli, TASK, script, common, "--trainer.max_epochs", "5")
    records = run.records
    return script, steps, reward_models, records


def lit_fallbacks() -> list[int]:
    """moco_lit's seeded draws for the test questions whose router reply names no model, in order."""
    draws = []
    for record in TASK.test:
        if not any(str(k) in router_reply(record["id"]) for k in (1, 2, 3)):
            draws.append(random.Random(example_seed(42, record["id"], "router_fallback")).randrange(3))
    return draws


def test_trained_router_matches_moco(run_cli, tmp_path, monkeypatch):
    fallbacks = lit_fallbacks()
    assert fallbacks, "the fixture should make the router name no model at least once"
    moco, moco_recorded = run_moco_router(monkeypatch, tmp_path, fallbacks)
    script, steps, reward_models, records = run_lit_router(run_cli, tmp_path, monkeypatch)

    # the dev answers of every model, the router's reply per test question, the routed answers
    assert_same_calls(moco.calls, script.calls)
    # the reward model that breaks ties is MoCo's by default
    assert moco_recorded.reward_models == reward_models == [SKYWORK]

    # the router's SFT data: question -> "Model k", each dev question once per epoch
    (trainer,) = moco_recorded.trainers
    theirs = sorted((TASK.find(row["prompt"])[1]["id"], row["completion"]) for row in trainer.data)
    per_epoch = len(TASK.dev)
    flat = [pair for step in steps for pair in step]
    assert len(flat) == per_epoch * trainer.args.num_train_epochs
    for epoch in range(trainer.args.num_train_epochs):
        ours = sorted(
            (i, f"Model {label + 1}") for i, label in flat[epoch * per_epoch : (epoch + 1) * per_epoch]
        )
        assert_same(f"router SFT data, epoch {epoch}", theirs, ours)
    # the reward model decided some labels: a tie on the dev score that did not go to model 1
    tied_to_later = [
        i for i, completion in theirs if completion != "Model 1"
        and policy_right(AGENTS[0], i) and policy_right(AGENTS[int(completion[-1]) - 1], i)
    ]  # fmt: skip
    assert tied_to_later, "the fixture should have a tie the reward model sends past model 1"

    # routing, outputs and score
    assert_same("routed models", [log["selected_model"] for log in moco.log["logs"]], [
        r["answered_by"] for r in records
    ])  # fmt: skip
    assert_same("test outputs", moco.outputs, [r["output"] for r in records])
    assert moco.score == pytest.approx(sum(r["score"] for r in records) / len(records))
    assert {r["answered_by"] for r in records} == set(AGENTS)
