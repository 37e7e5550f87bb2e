"""multiagent_finetuning against MoCo's ``text_multiagent_finetuning``: the debate calls of every
iteration, the consensus, each generation and critic agent's SFT data, and the test outputs.

MoCo's SFT step only records which model it would train on which data (the trained model's name
then answers as its base model); moco_lit's training steps record the items they receive instead
of taking gradient steps. MoCo's random draws (the training subset, the critic data) are taken
from moco_lit's seeded streams. The scripted models answer from a hash of what they are asked, so
some questions end in a unanimous consensus, some in a majority, some in a three-way tie.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from moco_lit.generation import example_seed
from tests.parity.moco_harness import (
    ADDITIONS,
    CHOICE_QUESTIONS,
    LARGER_ADDITIONS,
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

TASK = exact_match_task(dev=ADDITIONS, test=LARGER_ADDITIONS[:3])
MC_TASK = multiple_choice_task(dev=CHOICE_QUESTIONS[:6], test=CHOICE_QUESTIONS[6:9])
AGENTS = ["alpha", "beta", "gamma"]
UNPARSED = "I cannot tell."


def answer_in(content: str) -> str:
    return re.search(r"\\boxed\{([^}]*)\}", content).group(1)


def draw(ask: Ask) -> int:
    return hashlib.sha256(f"{ask.model} {ask.example} {ask.repeat}".encode()).digest()[0]


def critic(ask: Ask, answer_in) -> str | None:
    """The most common answer a critic is shown, its own answer winning a tie (None: none)."""
    (own,) = ask.own
    votes = Counter(a for a in (answer_in(q.content) for q in ask.quotes) if a is not None)
    if not votes:
        return None
    top = max(votes.values())
    mine = answer_in(own.content)
    return mine if votes[mine] == top else min(a for a in votes if votes[a] == top)


def policy(ask: Ask) -> str:
    if not ask.quotes:  # a first answer: right two times in three, else one of two wrong answers
        return boxed(ask.record["output"] if draw(ask) % 3 else str(draw(ask) % 2))
    return boxed(critic(ask, answer_in))


def letter_in(content: str) -> str | None:
    return None if content == UNPARSED else content.removeprefix("Answer: ")


def mc_policy(ask: Ask) -> str:
    """Multiple choice: right half the time, else D, B or no readable answer."""
    if not ask.quotes:
        pick = draw(ask) % 6
        return (
            f"Answer: {ask.record['answer']}" if pick < 3 else ("Answer: D", "Answer: B", UNPARSED)[pick - 3]
        )
    letter = critic(ask, letter_in)
    return UNPARSED if letter is None else f"Answer: {letter}"


ADAPTERS: dict[str, str] = {}  # MoCo's name for a trained model (its output folder) -> the base


def base_name(path: str) -> str:
    return ADAPTERS.get(path, path)


def the_same_draws(agents: int) -> SimpleNamespace:
    """MoCo's ``random`` seeded and drawing as moco_lit's streams: the training subset (MoCo's seed
    42), then each iteration's critic data per agent (MoCo reseeds 0 before each agent's draws)."""
    state = SimpleNamespace(rng=None, critics=0)

    def seed(value):
        if value == 42:
            state.rng = random.Random(example_seed(42, "multiagent_finetuning", "training_ratio"))
            return
        iteration, agent = divmod(state.critics, agents)
        state.critics += 1
        state.rng = random.Random(example_seed(42, "multiagent_finetuning", "critic_data", iteration, agent))

    return SimpleNamespace(seed=seed, sample=lambda population, k: state.rng.sample(population, k))


def run_moco_finetuning(monkeypatch, tmp_path: Path, task, policy, hyperparameters: dict):
    from model_collaboration.method import distributed_generation as generation

    by_base_name = SimpleNamespace(
        distributed_generation=lambda names, inputs, gpus, *a, **k: generation.distributed_generation(
            [base_name(n) for n in names], inputs, gpus
        ),
    )
    trained: list[tuple[int, str, list[dict]]] = []  # (iteration, agent key, SFT data)

    def record_sft(models, data_paths, gpu_ids, output_paths, **kwargs):
        for model, data, output in zip(models, data_paths, output_paths):
            ADAPTERS[output] = base_name(model)
            iteration = int(re.search(r"iteration_(\d+)", output).group(1)) - 1
            kind, index = re.search(r"(gen|critic)_model_agent_(\d+)", output).groups()
            rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
            trained.append((iteration, f"{'agent' if kind == 'gen' else 'critic'}{index}", rows))

    moco = run_moco(
        monkeypatch, tmp_path, "text_multiagent_finetuning", task, AGENTS, policy, hyperparameters,
        patches={
            "random": the_same_draws(len(AGENTS)),
            "distributed_generation": by_base_name,
            "distributed_sft": SimpleNamespace(distributed_sft=record_sft),
        },
    )  # fmt: skip
    return moco, trained


def run_lit_finetuning(run_cli, tmp_path: Path, monkeypatch, task, policy, *args: str):
    from moco_lit.methods.text.multiagent_finetuning import MultiagentFinetuning

    steps: list[tuple[int, list[dict]]] = []  # (iteration, the items of one training step)

    def recorded_step(self, batch, batch_idx):
        steps.append((self.built_iteration, [x for e in batch for x in self.items.get(e["id"], [])]))
        return None

    monkeypatch.setattr(MultiagentFinetuning, "training_step", recorded_step)
    script = Script(task, policy)
    common = ["--model", "multiagent_finetuning", "--model.collaborators", collaborators(AGENTS), *args]
    common += ["--model.temperature", "0", "--model.top_p", "1.0", "--data.batch_size", "3"]
    common += ["--data.benchmark", str(task.write(tmp_path)), "--cache", "false", "--wandb", "false"]
    run = fit_then_test(run_cli, task, script, common)
    tested, records = run.tested, run.records
    return script, steps, tested.model, records


def describe(script: Script, prompt, completion: str) -> tuple:
    """An SFT row as both systems can be compared: its question, the replies its prompt quotes
    (by tag, in the order shown) and its completion."""
    if not isinstance(prompt, str):  # a chat prompt: its user turns
        prompt = "\n\n".join(m["content"] for m in prompt if m.get("role") == "user")
    found = sorted(
        (prompt.index(text), quote.tag) for text, quote in script.replies.items() if text in prompt
    )
    return (script.task.find(prompt)[1]["id"], tuple(tag for _, tag in found), completion)


CASES = {
    "two-iterations": (TASK, policy, {"iterations": 2}),
    "three-rounds-subset": (TASK, policy, {"rounds": 3, "w": 0.25, "training_ratio": 0.75}),
    "multiple-choice": (MC_TASK, mc_policy, {"w": 0.75}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_multiagent_finetuning_matches_moco(run_cli, tmp_path, monkeypatch, case):
    task, policy, hyperparameters = CASES[case]
    # MoCo's hyperparameter names are moco_lit's option names
    options = [arg for name, value in hyperparameters.items() for arg in (f"--model.{name}", str(value))]
    moco, moco_trained = run_moco_finetuning(monkeypatch, tmp_path, task, policy, hyperparameters)
    script, steps, lit, records = run_lit_finetuning(run_cli, tmp_path, monkeypatch, task, policy, *options)

    # every debate call of every iteration and of the test: who, on which question, quoting what
    assert_same_calls(moco.calls, script.calls)
    # each agent's SFT data per iteration (MoCo skips an agent with none; so does a training step)
    theirs = {(k, agent): sorted(describe(moco.script, r["prompt"], r["completion"]) for r in rows)
              for k, agent, rows in moco_trained}  # fmt: skip
    ours: dict[tuple, list] = {}
    for k, items in steps:
        for x in items:
            ours.setdefault((k, x["agent"]), []).append(describe(script, x["prompt"], x["completion"]))
    ours = {key: sorted(rows) for key, rows in ours.items()}
    assert_same("trained agents", sorted(theirs), sorted(ours))
    for key in theirs:
        assert_same(f"SFT data of {key}", theirs[key], ours[key])
    assert all(x["weight"] == 1.0 for _, items in steps for x in items)
    # a critic learns the shared consensus text, often another agent's answer
    assert any(row[2].split("[")[1].split()[0] != AGENTS[int(key[1][-1])]
               for key, rows in ours.items() if key[1].startswith("critic") for row in rows)  # fmt: skip
    # the test outputs (MoCo logs the voted answer, "" for none) and the score
    assert_same("test outputs", moco.outputs, [r["details"]["winner"] or "" for r in records])
    assert [r["answer"] or "" for r in records] == moco.outputs
    assert moco.score == pytest.approx(lit_score(records))


def lit_score(records: list[dict]) -> float:
    return sum(r["score"] for r in records) / len(records)
