"""llm_blender's trained form against MoCo's ``text_llm_blender`` with ``train_ranker_on_dev`` and
``train_fuser_on_dev``: the dev answers, the ranker's and the fuser's SFT data (which pairs, in
which order, with which verdict; which candidates, with which target), the calls of each phase in
order, and the test outputs and score.

MoCo's SFT step only records the data it would train on; moco_lit's training step records the
items it receives. The trained ranker and fuser are scripted (epsilon and delta): the ranker
prefers the right answer of a pair, the fuser repeats the first candidate it is shown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.parity.moco_harness import (
    ADDITIONS,
    CHOICE_QUESTIONS,
    LARGER_ADDITIONS,
    Ask,
    Call,
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

AGENTS = ["alpha", "beta", "gamma"]
RANKER, FUSER = "epsilon", "delta"  # the scripted trained ranker and fuser
LOGS = "model_collaboration/logs/text_llm_blender"
TASK = exact_match_task(dev=ADDITIONS[:4], test=LARGER_ADDITIONS[:3], name="blend")
MC_TASK = multiple_choice_task(dev=CHOICE_QUESTIONS[:3], test=CHOICE_QUESTIONS[6:8], name="blend_mc")
RIGHT = {"alpha": {"d1", "t0"}, "beta": {"d0", "d1", "d3", "t1"}, "gamma": {"d0", "d2", "t0", "t1", "t2"}}


def right(record: dict) -> str:
    return f"Answer: {record['answer']}" if "answer" in record else boxed(record["output"])


def wrong(record: dict) -> str:
    return ("Answer: D" if record["answer"] != "D" else "Answer: C") if "answer" in record else boxed("0")


def is_right(content: str, record: dict) -> bool:
    return content == right(record)


def policy(ask: Ask) -> str:
    model = {f"{LOGS}/ranker_model_{n}_3": RANKER for n in ("blend", "blend_mc")}.get(ask.model, ask.model)
    model = {f"{LOGS}/fuser_model_{n}_3": FUSER for n in ("blend", "blend_mc")}.get(model, model)
    if model == RANKER:
        first, second = (is_right(q.content, ask.record) for q in ask.in_order)
        return (
            "A" if first and not second else "B" if second and not first else "Tie"
        )  # read alike by both verdict rules
    if model == FUSER:
        return ask.in_order[0].content
    return right(ask.record) if ask.example in RIGHT[model] else wrong(ask.record)


def scripted_name(model: str) -> str:
    return RANKER if "/ranker_model_" in model else FUSER if "/fuser_model_" in model else model


def run_moco_trained(monkeypatch, tmp_path: Path, task):
    trained: list[dict] = []

    def record_sft(model_name, sft_data_path, output_model_path, **kwargs):
        rows = [json.loads(line) for line in Path(sft_data_path).read_text().splitlines()]
        trained.append({"base": model_name, "output": output_model_path, "rows": rows, **kwargs})

    class InlineProcess:  # MoCo spawns a process per SFT run: run the recorder in this one
        def __init__(self, target, kwargs):
            self.target, self.kwargs, self.exitcode = target, kwargs, 0

        def start(self):
            self.target(**self.kwargs)

        def join(self):
            pass

    hyper = {"ranker_model_name": RANKER, "top_k": 2, "train_ranker_on_dev": True, "train_fuser_on_dev": True}
    moco = run_moco(
        monkeypatch, tmp_path, "text_llm_blender", task, AGENTS, policy, hyper,
        patches={
            "distributed_sft": SimpleNamespace(single_sft=record_sft),
            "multiprocessing": SimpleNamespace(get_context=lambda kind: SimpleNamespace(Process=InlineProcess)),
        },
    )  # fmt: skip
    return moco, trained


def run_lit_trained(run_cli, tmp_path: Path, monkeypatch, task, *args: str):
    from moco_lit.methods.text.llm_blender import LlmBlender

    steps: list[tuple[int, list[dict]]] = []  # (epoch, the items of one training step)

    def recorded_step(self, batch, batch_idx):
        steps.append((self.current_epoch, [x for e in batch for x in self.items.get(e["id"], [])]))
        return None

    monkeypatch.setattr(LlmBlender, "training_step", recorded_step)
    # the scripted ranker and fuser stand in for the tuned adapters: nothing to wrap in LoRA
    monkeypatch.setattr(LlmBlender, "models_to_train", lambda self: {})
    script = Script(task, policy)
    common = ["--model", "llm_blender", "--model.collaborators", collaborators(AGENTS)]
    common += ["--model.ranker", f"callable:tests.parity.moco_harness.{RANKER}"]
    common += ["--model.fuser", f"callable:tests.parity.moco_harness.{FUSER}", "--model.top_k", "2"]
    common += ["--model.train_ranker_on_dev", "true", "--model.train_fuser_on_dev", "true", *args]
    common += ["--model.temperature", "0", "--model.top_p", "1.0", "--data.batch_size", "4"]
    common += ["--data.benchmark", str(task.write(tmp_path)), "--cache", "false", "--wandb", "false"]
    run = fit_then_test(run_cli, task, script, common)
    return script, steps, run.fitted.model, run.records


def describe(script: Script, prompt: str, completion: str) -> tuple:
    """An SFT row as both systems can be compared: its question, the replies it quotes (by tag,
    in the order shown) and its completion."""
    found = sorted((prompt.index(text), q.tag) for text, q in script.replies.items() if text in prompt)
    return (script.task.find(prompt)[1]["id"], tuple(tag for _, tag in found), completion)


def untagged(text: str) -> str:
    return re.sub(r" \[[^\]]*\]$", "", text)


def phases(calls: list[Call]) -> list[tuple[str, str]]:
    """The order of the calls: (split, model) with repeats collapsed."""
    order: list[tuple[str, str]] = []
    for call in calls:
        if not order or order[-1] != (call.split, call.model):
            order.append((call.split, call.model))
    return order


@pytest.mark.parametrize("task", [TASK, MC_TASK], ids=["exact-match", "multiple-choice"])
def test_trained_llm_blender_matches_moco(run_cli, tmp_path, monkeypatch, task):
    moco, trained = run_moco_trained(monkeypatch, tmp_path, task)
    script, steps, lit, records = run_lit_trained(run_cli, tmp_path, monkeypatch, task)

    renamed = [Call(c.split, scripted_name(c.model), c.example, c.quoted) for c in moco.calls]
    assert_same_calls(renamed, script.calls)
    # dev answers of every collaborator, then the test answers, the ranker's pairs, the fusions
    assert_same("phases", phases(renamed), phases(script.calls))
    assert phases(script.calls)[-2:] == [("test", RANKER), ("test", FUSER)]

    # MoCo trains the ranker, then the fuser, each for 3 epochs
    assert [(t["base"], t["epoch"]) for t in trained] == [(RANKER, 3), ("alpha", 3)]
    epochs = {}
    for epoch, step in steps:
        epochs.setdefault(epoch, []).extend(step)
    assert sorted(epochs) == [0, 1, 2] and epochs[0] == epochs[1] == epochs[2]
    items = epochs[0]
    for role, moco_rows in (("ranker", trained[0]["rows"]), ("fuser", trained[1]["rows"])):
        theirs = sorted(describe(moco.script, r["prompt"], r["completion"]) for r in moco_rows)
        ours = sorted(describe(script, x["prompt"], x["completion"]) for x in items if x["agent"] == role)
        assert_same(f"{role} SFT data", theirs, ours)
    ranker_rows = [x for x in items if x["agent"] == "ranker"]
    assert {x["completion"] for x in ranker_rows} == {"A", "B"}
    assert all("weight" not in x or x["weight"] == 1.0 for x in items)
    if task is MC_TASK:  # the fuser learns the option text
        assert {x["completion"] for x in items if x["agent"] == "fuser"} == {"green", "four", "dog"}

    assert_same("test outputs", [untagged(o) for o in moco.outputs], [untagged(r["output"]) for r in records])
    assert moco.score == pytest.approx(sum(r["score"] for r in records) / len(records))


def test_both_orders_and_answer_lines_are_moco_lit_s_options(run_cli, tmp_path, monkeypatch):
    moco, trained = run_moco_trained(monkeypatch, tmp_path, TASK)
    options = ("--model.ranker_pair_orders", "both", "--model.fuser_target", "answer_line")
    script, steps, _, _ = run_lit_trained(run_cli, tmp_path, monkeypatch, TASK, *options)
    items = [x for epoch, step in steps if epoch == 0 for x in step]
    ranker = [describe(script, x["prompt"], x["completion"]) for x in items if x["agent"] == "ranker"]
    assert len(ranker) == 2 * len(trained[0]["rows"])  # each of MoCo's pairs, also swapped
    swapped = {(q, tags[::-1], "A" if verdict == "B" else "B") for q, tags, verdict in ranker}
    assert swapped == set(ranker)
    fuser = {x["completion"] for x in items if x["agent"] == "fuser"}
    assert fuser == {f"Final Answer: {boxed(r['output'])}" for r in TASK.dev}
