"""agglm against MoCo's ``text_agglm``: the sampled answer sets per dev question, the hard/easy
split and the easy sets kept, the GRPO training data (prompts, group size, reward), and the
aggregation calls, outputs and score at test.

MoCo's GRPO step only records its trainer's data and settings; moco_lit's training step records
the items it receives. The easy sets kept are drawn by the same rule on both sides (shuffle with
``random.Random(42)``, keep as many as there are hard sets). The trained aggregator is scripted:
it repeats the second solution it is shown.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import random
import re
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from moco_lit.collaborators import load_collaborator
from tests.parity.moco_harness import (
    CHOICE_QUESTIONS,
    MODELS,
    Ask,
    Script,
    assert_same,
    assert_same_calls,
    boxed,
    collaborators,
    exact_match_task,
    fit_then_test,
    multiple_choice_task,
    run_moco,
)

TASK = exact_match_task(
    dev=[
        (f"What is {a} times {b}?", str(a * b)) for a, b in ((2, 3), (4, 5), (6, 7), (8, 9), (3, 11), (5, 13))
    ],
    test=[(f"What is {a} plus {b}?", str(a + b)) for a, b in ((12, 30), (23, 41), (34, 52), (45, 63))],
)
MC_TASK = multiple_choice_task(dev=CHOICE_QUESTIONS[:6], test=CHOICE_QUESTIONS[6:9])
TASKS = {"exact-match": TASK, "multiple-choice": MC_TASK}
AGENTS = list(MODELS[:3])
AGGREGATOR = "delta"  # moco_lit's scripted stand-in for the trained aggregator
MOCO_AGGREGATOR = "model_collaboration/logs/agglm/alpha_beta_gamma_2"  # MoCo's adapter folder
UNREADABLE = "I am not sure."


def digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def policy(ask: Ask) -> str:
    if ask.model in (AGGREGATOR, MOCO_AGGREGATOR):
        return ask.in_order[1].content
    # right half the time, else a wrong answer or (a third of the time) none: some sets' most
    # common "answer" is none
    pick = digest(f"{ask.model} {ask.example} {ask.repeat}") % 6
    right, wrong = right_answer(ask.record), wrong_answer(ask.record)
    return (right, right, right, wrong, UNREADABLE, UNREADABLE)[pick]


def right_answer(record: dict) -> str:
    return f"Answer: {record['answer']}" if "answer" in record else boxed(record["output"])


def wrong_answer(record: dict) -> str:
    if "answer" in record:
        return "Answer: B" if record["answer"] != "B" else "Answer: C"
    return boxed("0")


def keep_easy(population: list, k: int) -> list:
    """The easy sets kept: shuffled by ``random.Random(42)``, the first ``k`` (moco_lit's rule)."""
    shuffled = list(population)
    random.Random(42).shuffle(shuffled)
    return shuffled[:k]


def describe(script: Script, prompt) -> tuple:
    """A training prompt as both systems can be compared: its question and the replies it quotes
    (by tag, in the order shown)."""
    if not isinstance(prompt, str):
        prompt = "\n\n".join(m["content"] for m in prompt if m.get("role") == "user")
    found = sorted((prompt.index(text), q.tag) for text, q in script.replies.items() if text in prompt)
    return (script.task.find(prompt)[1]["id"], tuple(tag for _, tag in found))


def run_moco_agglm(monkeypatch, tmp_path: Path, task):
    trainers = []

    class Trainer:
        def __init__(self, model, args, reward_funcs, train_dataset, peft_config):
            trainers.append(
                SimpleNamespace(args=args, reward=reward_funcs, data=list(train_dataset), lora=peft_config)
            )
            self.args = args
            self.accelerator = SimpleNamespace(is_main_process=True, wait_for_everyone=lambda: None)

        def train(self):
            pass

        def save_model(self, path):
            pass

    if importlib.util.find_spec("trl") is None:  # MoCo subclasses trl's GRPOTrainer on import
        stub = types.ModuleType("trl")
        stub.GRPOTrainer = type("GRPOTrainer", (), {})
        stub.GRPOConfig = type("GRPOConfig", (), {})
        monkeypatch.setitem(sys.modules, "trl", stub)
    module = importlib.import_module("model_collaboration.method.text_agglm")
    # the harness replaces the transformers classes a method loads itself; agglm imports no tokenizer
    monkeypatch.setattr(module, "AutoTokenizer", None, raising=False)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        moco = run_moco(
            monkeypatch, tmp_path, "text_agglm", task, AGENTS, policy, {},
            patches={
                "_make_grpo_config": lambda **kwargs: SimpleNamespace(**kwargs),
                "GRPOTrainer": Trainer,
                "random": SimpleNamespace(seed=lambda value: None, sample=keep_easy),
            },
        )  # fmt: skip
    finally:  # MoCo pins and restores the visible GPUs itself
        if visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
    (trainer,) = trainers
    return moco, trainer


def run_lit_agglm(run_cli, tmp_path: Path, monkeypatch, task, agg_model: str):
    from moco_lit.methods.text.agglm import AggLM

    steps: list[list[tuple[str, dict]]] = []
    scripted = load_collaborator(f"callable:tests.parity.moco_harness.{AGGREGATOR}", "cpu")

    def recorded_step(self, batch, batch_idx):
        steps.append([(e["id"], item) for e in batch for item in self.items.get(e["id"], [])])
        return None

    monkeypatch.setattr(AggLM, "training_step", recorded_step)
    monkeypatch.setattr(AggLM, "aggregator", property(lambda self: scripted))
    script = Script(task, policy)
    common = [
        "--model",
        "agglm",
        "--model.collaborators",
        collaborators(AGENTS),
        "--model.agg_model",
        agg_model,
    ]
    common += ["--model.temperature", "0", "--model.top_p", "1.0", "--model.lora_r", "4"]
    common += ["--data.benchmark", str(task.write(tmp_path)), "--data.batch_size", "3"]
    common += ["--cache", "false", "--wandb", "false"]
    run = fit_then_test(run_cli, task, script, common)
    fitted, records = run.fitted, run.records
    return script, steps, fitted.model, records


@pytest.mark.parametrize("case", list(TASKS))
def test_agglm_matches_moco(run_cli, tmp_path, monkeypatch, tiny_models, case):
    task = TASKS[case]
    moco, trainer = run_moco_agglm(monkeypatch, tmp_path, task)
    script, steps, lit, records = run_lit_agglm(run_cli, tmp_path, monkeypatch, task, tiny_models[0])

    # the sampled sets on dev, the collaborators' test answers and the aggregator's calls
    renamed = [c if c.model != MOCO_AGGREGATOR else c.__class__(c.split, AGGREGATOR, c.example, c.quoted)
               for c in moco.calls]  # fmt: skip
    assert_same_calls(renamed, script.calls)

    # GRPO data: every hard set and as many easy ones, each set's solutions in the same order
    theirs = sorted(describe(moco.script, row["prompt"]) + (row["id"],) for row in trainer.data)
    items = {(i, item["prompt"]): item for step in steps for i, item in step}
    ours = sorted(describe(script, prompt) + (i,) for i, prompt in items)
    assert_same("GRPO sets", theirs, ours)
    hard = [item["hard"] for item in items.values()]
    assert 0 < hard.count(False) <= hard.count(True)
    # the group size, sampling temperature, LoRA rank and learning rate MoCo trains with
    assert trainer.args.num_generations == lit.group_size == 4
    assert trainer.args.temperature == lit.hparams.grpo_temperature == 1.0
    assert trainer.args.learning_rate == lit.hparams.learning_rate
    assert trainer.lora.r == 64 and trainer.lora.lora_alpha == 16
    # the reward: 1 for a right aggregation, else 0, on the same completions
    dev = {e["id"]: e for e in lit.dev_examples()}
    completions, ids = [], []
    for record in task.dev:
        for text in (right_answer(record), wrong_answer(record), UNREADABLE):
            completions.append(text)
            ids.append(record["id"])
    theirs_reward = trainer.reward(None, [[{"content": c}] for c in completions], id=ids)
    ours_reward = [float(s or 0.0) for s in lit.score(completions, [dev[i] for i in ids])]
    assert theirs_reward == ours_reward and sum(ours_reward) == len(task.dev)

    # test: the aggregator's outputs and the score
    # (the reply's tag names its author, MoCo's adapter folder or moco_lit's stand-in: compare the rest)
    untagged = [re.sub(r" \[[^\]]*\]$", "", text) for text in moco.outputs]
    assert_same("test outputs", untagged, [re.sub(r" \[delta \w+\]$", "", r["output"]) for r in records])
    assert all(r["output"].endswith("]") for r in records)
    assert moco.score == pytest.approx(sum(r["score"] for r in records) / len(records))
    assert all(r["answered_by"] == AGGREGATOR for r in records)


def test_an_unreadable_plurality_makes_a_hard_set_as_in_moco():
    from moco_lit.methods.text.agglm import AggLM

    module = AggLM.__new__(AggLM)
    module.majority_of = "all"
    module.answer_of = lambda text, example: (re.findall(r"\\boxed\{(\w+)\}", text) or [None])[0]
    module.score = lambda texts, examples: [float(module.answer_of(t, None) == "6") for t in texts]
    assert module.majority_wrong({}, [UNREADABLE, UNREADABLE, boxed("6")])
    assert not module.majority_wrong({}, [UNREADABLE, boxed("6"), boxed("6")])
    assert not module.majority_wrong({}, [boxed("6"), boxed("5"), UNREADABLE])  # first to the top count
    module.majority_of = "readable"  # moco_lit's variant: only readable answers vote
    assert not module.majority_wrong({}, [UNREADABLE, UNREADABLE, boxed("6")])
    assert module.majority_wrong({}, [UNREADABLE, UNREADABLE, UNREADABLE])
