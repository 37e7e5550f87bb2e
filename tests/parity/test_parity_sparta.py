"""sparta against MoCo's ``text_sparta``: duels, judge calls and scores, ratings, DPO pairs, final choice.

Both systems draw the matches from the same seeded stream (moco_lit's own seed per iteration,
injected as MoCo's ``random``), MoCo's DPO step only records what it would train on, and the
scripted models answer from the question and the reply a judge is shown.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import random
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from moco_lit.generation import example_seed
from tests.parity.moco_harness import (
    ADDITIONS,
    LARGER_ADDITIONS,
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

TASK = exact_match_task(dev=ADDITIONS[:6], test=LARGER_ADDITIONS[:3])
PLAYERS = ["alpha", "beta", "gamma", "delta"]
KNOWS = {  # the examples each model answers right (the others: 0)
    "alpha": {"d0", "d1", "d2", "d3", "t0", "t1"},
    "beta": {"d0", "d2", "d4", "d5", "t0", "t1", "t2"},
    "gamma": {"d1"},
    "delta": {"d0", "d1", "d3", "d5", "t2"},
}


def policy(ask: Ask) -> str:
    right = boxed(ask.record["output"])
    if not ask.quotes:  # a question
        return right if ask.example in KNOWS[ask.model] else boxed("0")
    (shown,) = ask.quotes  # a judge sees one answer
    score = (8 if shown.content == right else 3) + (shown.author == "beta" and ask.model == "delta")
    score += ask.model == "alpha" and ask.repeat == 1  # alpha's second look is kinder (judge_rounds)
    if ask.model == "gamma" and ask.example == "d4":
        return "I would rather not say."  # unreadable: this round scores 5 and 5
    return {"alpha": f'{{"score": {score}}}', "beta": f"Score: {score}", "gamma": f"{score}/10"}.get(
        ask.model, f'{{"score": {score}}} because it is {"right" if score > 5 else "wrong"}'
    )


ADAPTERS: dict[str, str] = {}  # MoCo's name for a trained model (its adapter folder) -> the player


def base_name(path: str) -> str:
    return ADAPTERS.get(path, path)


def run_moco_sparta(monkeypatch, tmp_path: Path, hyperparameters: dict):
    if importlib.util.find_spec("trl") is None:  # MoCo's DPO module imports it; its DPO is replaced
        stub = types.ModuleType("trl")
        stub.__spec__ = importlib.machinery.ModuleSpec("trl", None)
        stub.DPOConfig = stub.DPOTrainer = None
        monkeypatch.setitem(sys.modules, "trl", stub)
    from model_collaboration.method import distributed_generation as generation
    from model_collaboration.method import text_sparta

    draws = SimpleNamespace(rng=None, iteration=0)
    original_competition = text_sparta._pairwise_competition

    def competition(*args, **kwargs):  # each iteration's draws: moco_lit's seeded stream
        draws.rng = random.Random(example_seed(42, "sparta-match", draws.iteration))
        draws.iteration += 1
        return original_competition(*args, **kwargs)

    injected_random = SimpleNamespace(
        random=lambda: draws.rng.random(),
        choice=lambda seq: draws.rng.choice(seq),
        sample=lambda population, k: draws.rng.sample(population, k),
    )
    by_base_name = SimpleNamespace(
        update_generation_hyperparameters=lambda **kwargs: None,
        distributed_generation=lambda names, inputs, gpus, *a, **k: generation.distributed_generation(
            [base_name(n) for n in names], inputs, gpus
        ),
    )
    trained: list[dict] = []

    def record_dpo(list_of_model_names, list_of_dpo_data_paths, list_of_gpu_ids, list_of_output_model_paths):
        ADAPTERS.update(
            {out: base_name(m) for m, out in zip(list_of_model_names, list_of_output_model_paths)}
        )
        trained.append(
            {
                base_name(m): json.loads(Path(p).read_text())
                for m, p in zip(list_of_model_names, list_of_dpo_data_paths)
            }
        )

    base_dir = tmp_path / "moco_sparta"
    moco = run_moco(
        monkeypatch, tmp_path, "text_sparta", TASK, PLAYERS, policy, {**hyperparameters, "base_dir": str(base_dir)},
        patches={
            "random": injected_random,
            "_pairwise_competition": competition,
            "distributed_generation": by_base_name,
            "distributed_dpo": SimpleNamespace(distributed_dpo=record_dpo),
        },
    )  # fmt: skip
    iterations = []
    for k in range(hyperparameters.get("num_iterations", 3)):
        folder = base_dir / f"iteration_{k}"
        judged = json.loads((folder / "judged_results" / "judged_pairs.json").read_text())
        iterations.append(
            {
                "pairs": judged,
                "info": json.loads((folder / "model_info.json").read_text()),
                "preferences": json.loads((folder / "dataset" / "preference_pairs.json").read_text()),
            }
        )
    return moco, iterations, trained


def run_lit_sparta(run_cli, tmp_path: Path, monkeypatch, *args: str):
    from moco_lit.methods.text.sparta import Sparta

    snapshots: list[dict] = []
    build = Sparta.build_iteration

    def recorded(self, iteration):
        items = build(self, iteration)
        snapshots.append(
            {
                "duels": json.loads(json.dumps(self.last_duels)),
                "pairs": json.loads(json.dumps(self.preference_pairs)),
                "ratings": self.ratings.tolist(),
                "deviations": self.deviations.tolist(),
            }
        )
        return items

    monkeypatch.setattr(Sparta, "build_iteration", recorded)
    script = Script(TASK, policy)
    common = ["--model", "sparta", "--model.collaborators", collaborators(PLAYERS), *args]
    common += ["--data.benchmark", str(TASK.write(tmp_path)), "--cache", "false", "--wandb", "false"]
    run = fit_then_test(run_cli, TASK, script, common)
    tested, records = run.tested, run.records
    return script, snapshots, tested.model, records


def example_of(instruction: str) -> str:
    return TASK.find(instruction)[1]["id"]


@pytest.mark.parametrize(
    "hyperparameters",
    [
        {"num_opponents": 2},
        {"judge_rounds": 3, "score_type": "dynamic", "random_match_prob": 0.5},
        {"freeze_ratings": True, "num_instructions": 5, "num_iterations": 2},
        {"score_type": "static", "num_opponents": 1, "random_match_prob": 0.0, "num_iterations": 4},
    ],
    ids=["defaults", "rounds-dynamic", "frozen", "static-nearest"],
)
def test_sparta_matches_moco(run_cli, tmp_path, monkeypatch, hyperparameters):
    # MoCo's hyperparameter names are moco_lit's option names
    options = [arg for name, value in hyperparameters.items() for arg in (f"--model.{name}", str(value))]
    moco, moco_iterations, moco_trained = run_moco_sparta(monkeypatch, tmp_path, hyperparameters)
    script, lit_iterations, lit, records = run_lit_sparta(run_cli, tmp_path, monkeypatch, *options)

    # every call: who was asked about which example, quoting which answer, how often
    assert_same_calls(moco.calls, script.calls)
    assert len(lit_iterations) == len(moco_iterations) == hyperparameters.get("num_iterations", 3)
    trained = iter(moco_trained)
    for k, (theirs, ours) in enumerate(zip(moco_iterations, lit_iterations)):
        names = lit.collaborator_names
        # the duels: who against whom on which instruction, their answers, each judge's scores
        duels = [
            (example_of(p["instruction"]), *map(base_name, p["models"]), p["responses"],
             {j: v["ave_scores"] for j, v in p["judges"].items()})
            for p in theirs["pairs"]
        ]  # fmt: skip
        our_duels = [(d["id"], names[d["players"][0]], names[d["players"][1]], d["answers"], d["judges"])
                     for d in ours["duels"]]  # fmt: skip
        assert_same(f"iteration {k} duels", duels, our_duels)
        # the rating trajectory
        assert ours["ratings"] == pytest.approx([theirs["info"][m]["score"] for m in PLAYERS], abs=1e-9)
        assert ours["deviations"] == pytest.approx(
            [theirs["info"][m]["deviation"] for m in PLAYERS], abs=1e-9
        )
        # the DPO pairs, and every model trained on all of them
        pairs = [(example_of(p["instruction"]), p["chosen"], p["rejected"], p["chosen_model"], p["rejected_model"])
                 for p in theirs["preferences"]]  # fmt: skip
        our_pairs = [
            (p["id"], p["chosen"], p["rejected"], p["chosen_by"], p["rejected_by"]) for p in ours["pairs"]
        ]
        assert_same(f"iteration {k} DPO pairs", pairs, our_pairs)
        diffs = [p["score_diff"] for p in theirs["preferences"]]
        assert [p["score_diff"] for p in ours["pairs"]] == pytest.approx(diffs, abs=1e-9)
        if pairs:
            assert next(trained) == {m: theirs["preferences"] for m in PLAYERS}
    assert next(trained, None) is None
    # some duels are decided, some tie; ratings moved
    moved = len(set(lit_iterations[-1]["ratings"]))
    assert any(s["pairs"] for s in lit_iterations) and moved == (
        1 if hyperparameters.get("freeze_ratings") else 4
    )
    assert any(len(s["pairs"]) < len(s["duels"]) for s in lit_iterations)
    if hyperparameters.get("judge_rounds"):  # averaged rounds, to 2 decimals
        assert any(v[0] % 1 for s in lit_iterations for d in s["duels"] for v in d["judges"].values())
    # the final choice on dev and the test outputs
    dev_scores = [moco.log["dev_scores"][m] for m in PLAYERS]
    assert lit.final_dev_scores.tolist() == pytest.approx(dev_scores)
    assert names[lit.tested_model] == moco.log["best_model"]
    assert_same("test outputs", moco.outputs, [r["output"] for r in records])
