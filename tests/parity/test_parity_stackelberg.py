"""stackelberg against MoCo's ``text_sparta_stackelberg``: the leader's draws and weights, duels,
judge scores, ratings, DPO pairs, every trained model's dev score, the final choice and outputs.

No draw is injected: both systems seed Python's and NumPy's generators with ``seed + iteration``
and draw in the same order. MoCo's DPO step only records what it would train on; a trained model
answers as its base does, except that the scripted models change their answers as they are asked
the same question again, so later iterations' models score differently on dev.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.parity.moco_harness import (
    ADDITIONS,
    LARGER_ADDITIONS,
    Ask,
    Script,
    _import_moco_method,
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
KNOWS = {  # the examples each model answers right at first (the others: 0)
    "alpha": {"d0", "d1", "d2", "d3", "t0", "t1"},
    "beta": {"d0", "d2", "d4", "d5", "t0", "t1", "t2"},
    "gamma": {"d1"},
    "delta": {"d0", "d1", "d3", "d5", "t2"},
}


def policy(ask: Ask) -> str:
    right = boxed(ask.record["output"])
    if not ask.quotes:  # a question: beta forgets with repetition, gamma learns
        knows = ask.example in KNOWS[ask.model]
        if ask.model == "beta" and ask.repeat >= 2 or ask.model == "gamma" and ask.repeat >= 3:
            knows = not knows
        return right if knows else boxed(str(ask.repeat))
    (shown,) = ask.quotes  # a judge sees one answer
    score = (8 if shown.content == right else 3) + (shown.author == "beta" and ask.model == "delta")
    score += ask.model == "alpha" and ask.repeat == 1  # alpha's second look is kinder (judge_rounds)
    score -= 2 * (shown.author == "gamma" and ask.model == "beta")  # a harsh judge: scores reach 1
    if ask.model == "gamma" and ask.example == "d4":
        return "I would rather not say."  # unreadable: this round scores 5 and 5
    return {"alpha": f'{{"score": {score}}}', "beta": f"Score: {score}", "gamma": f"{score}/10"}.get(
        ask.model, f'{{"score": {score}}} because it is {"right" if score > 5 else "wrong"}'
    )


ADAPTERS: dict[str, str] = {}  # MoCo's name for a trained model (its adapter folder) -> the player
DECODINGS: set[tuple] = set()  # (max tokens, temperature, top_p) of MoCo's generation calls


def base_name(path: str) -> str:
    return ADAPTERS.get(path, path)


def run_moco_stackelberg(monkeypatch, tmp_path: Path, hyperparameters: dict):
    from model_collaboration.method import distributed_generation as generation

    # its GRPO module subclasses trl's trainer at import; the DPO path never reaches it
    monkeypatch.setitem(sys.modules, "model_collaboration.utils.distributed_grpo", types.ModuleType("grpo"))
    stackelberg = _import_moco_method(monkeypatch, "text_sparta_stackelberg")  # trl stubbed if missing
    ADAPTERS.clear()
    DECODINGS.clear()

    def generate(names, inputs, gpus, *args, **kwargs):
        DECODINGS.add(tuple(kwargs.get(k) for k in ("max_response_length", "temperature", "top_p")))
        return generation.distributed_generation([base_name(n) for n in names], inputs, gpus)

    by_base_name = SimpleNamespace(
        update_generation_hyperparameters=lambda **kwargs: None, distributed_generation=generate
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

    logs = tmp_path / "moco" / "model_collaboration" / "logs"
    save_json = stackelberg._save_json

    def save_and_collect(path, payload):  # the final log lands in the run folder: run_moco reads logs/
        save_json(path, payload)
        if str(path).endswith("_stackelberg.json"):
            save_json(str(logs / Path(path).name), payload)

    base_dir = tmp_path / "moco_stackelberg"
    moco = run_moco(
        monkeypatch, tmp_path, "text_sparta_stackelberg", TASK, PLAYERS, policy,
        {**hyperparameters, "base_dir": str(base_dir)},
        patches={
            "_save_json": save_and_collect,
            "distributed_generation": by_base_name,
            "distributed_dpo": SimpleNamespace(distributed_dpo=record_dpo),
        },
    )  # fmt: skip
    (run_dir,) = base_dir.iterdir()
    iterations = []
    for k in range(hyperparameters.get("num_iterations", 1)):
        folder = run_dir / f"iteration_{k}"
        iterations.append(
            {
                **moco_iteration_files(folder, "judged_pairs.json"),
                "preferences": json.loads((folder / "dataset" / "preference_pairs.json").read_text()),
            }
        )
    return moco, iterations, trained


def moco_iteration_files(folder: Path, judged: str) -> dict:
    """What MoCo wrote for one iteration: the drawn duels, the judged file (``judged_pairs.json``
    for DPO, ``judged_duels.json`` for GRPO, under ``pairs`` / ``judged``), model info, leader weights."""
    key = "pairs" if judged == "judged_pairs.json" else "judged"
    return {
        "drawn": json.loads((folder / "analysis" / "prompt_sampling_manifest.json").read_text())["duels"],
        key: json.loads((folder / "judged_results" / judged).read_text()),
        "info": json.loads((folder / "model_info.json").read_text()),
        "leader": json.loads((folder / "analysis" / "leader_state.json").read_text())["weights"],
    }


def run_lit_stackelberg(run_cli, tmp_path: Path, monkeypatch, *args: str):
    from moco_lit.methods.text.stackelberg import Stackelberg

    snapshots: list[dict] = []
    build = Stackelberg.build_iteration

    def recorded(self, iteration):
        items = build(self, iteration)
        snapshots.append(
            json.loads(
                json.dumps(
                    {
                        "choice": self.duel_instructions,
                        "duels": self.last_duels,
                        "scores": self.duel_scores,
                        "pairs": self.preference_pairs,
                        "ratings": self.ratings.tolist(),
                        "deviations": self.deviations.tolist(),
                        "leader": self.leader_weights,
                    }
                )
            )
        )
        return items

    monkeypatch.setattr(Stackelberg, "build_iteration", recorded)
    script = Script(TASK, policy)
    common = ["--model", "stackelberg", "--model.collaborators", collaborators(PLAYERS), *args]
    common += ["--data.benchmark", str(TASK.write(tmp_path)), "--cache", "false", "--wandb", "false"]
    run = fit_then_test(run_cli, TASK, script, common)
    tested, records = run.tested, run.records
    return script, snapshots, tested.model, records


def flat(rows) -> list[float]:
    return [x for row in rows for x in row]


def example_of(instruction: str) -> str:
    return TASK.find(instruction)[1]["id"]


CASES = {
    "defaults": {},
    "three-iterations": {"num_iterations": 3},
    "per-model-nearest-rounds": {
        "num_iterations": 2, "leader_scope": "per_model", "opponent_selection": "lowest_diff",
        "num_opponents": 2, "num_duels_per_iteration": 9, "judge_rounds": 2, "leader_uniform_mix": 0.5,
    },
    "uniform-farthest": {
        "num_iterations": 2, "leader_type": "uniform", "opponent_selection": "highest_diff",
        "random_match_prob": 0.0, "num_opponents": 1,
    },
    "static": {"num_iterations": 3, "score_type": "static", "random_match_prob": 0.5},
    "dynamic": {"num_iterations": 3, "score_type": "dynamic"},
    "difficulty-reward-increasing": {
        "num_iterations": 3, "reward_method": "difficulty_only", "opponent_selection": "schedule_increasing",
        "score_threshold": 2.0, "num_instructions": 5, "reputation_gap_sigma": 0.4,
    },
}  # fmt: skip


@pytest.mark.parametrize("hyperparameters", list(CASES.values()), ids=list(CASES))
def test_stackelberg_matches_moco(run_cli, tmp_path, monkeypatch, hyperparameters):
    # MoCo's hyperparameter names are moco_lit's option names
    options = [arg for name, value in hyperparameters.items() for arg in (f"--model.{name}", str(value))]
    moco, moco_iterations, moco_trained = run_moco_stackelberg(monkeypatch, tmp_path, hyperparameters)
    script, lit_iterations, lit, records = run_lit_stackelberg(run_cli, tmp_path, monkeypatch, *options)

    # every call: who was asked about which example, quoting which answer, how often
    assert_same_calls(moco.calls, script.calls)
    assert len(lit_iterations) == len(moco_iterations) == hyperparameters.get("num_iterations", 1)
    names = lit.collaborator_names
    trained = iter(moco_trained)
    for k, (theirs, ours) in enumerate(zip(moco_iterations, lit_iterations)):
        # the leader's draws (instruction, with repeats) and the matches
        drawn = [(d["instruction_idx"], *d["models"]) for d in theirs["drawn"]]
        our_drawn = [
            (i, names[d["players"][0]], names[d["players"][1]]) for i, d in zip(ours["choice"], ours["duels"])
        ]
        assert_same(f"iteration {k} draws", drawn, our_drawn)
        # the duels: answers and each judge's scores, and the scores that reward the leader
        duels = [
            (
                example_of(p["instruction"]),
                p["responses"],
                {j: v["ave_scores"] for j, v in p["judges"].items()},
            )
            for p in theirs["pairs"]
        ]
        our_duels = [(d["id"], d["answers"], d["judges"]) for d in ours["duels"]]
        assert_same(f"iteration {k} duels", duels, our_duels)
        assert flat(ours["scores"]) == pytest.approx(flat(p["scores"] for p in theirs["pairs"]), abs=1e-12)
        # the leader's weights after the iteration
        assert len(ours["leader"]) == len(theirs["leader"])
        assert flat(ours["leader"]) == pytest.approx(flat(theirs["leader"].values()), rel=1e-9)
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
        assert [p["score_diff"] for p in ours["pairs"]] == pytest.approx(
            [p["score_diff"] for p in theirs["preferences"]], abs=1e-9
        )
        if pairs:
            assert next(trained) == {m: theirs["preferences"] for m in PLAYERS}
    assert next(trained, None) is None
    # the judges decode as MoCo's: 64 tokens at temperature 1e-5, no nucleus cut
    judging = lit.judge_decoding
    assert (judging.max_new_tokens, judging.temperature, judging.top_p) == (64, 1e-5, 1.0)
    assert (64, 1e-5, 1.0) in DECODINGS
    # repeated instructions, decided duels and ties
    assert any(len(set(s["choice"])) < len(s["choice"]) for s in lit_iterations)
    assert any(s["pairs"] for s in lit_iterations)
    # every trained model of every iteration scored on dev; the first best is tested
    dev_scores = {f"{r['model']}_iter{r['iteration']}": r["dev_score"] for r in lit.adapter_dev_scores}
    assert dev_scores == pytest.approx(moco.log["dev_scores"])
    assert lit.best_adapter == [moco.log["best_model_iteration"], names.index(moco.log["best_model"])]
    assert names[lit.tested_model] == moco.log["best_model"]
    if hyperparameters is CASES["difficulty-reward-increasing"]:  # a model of the middle iteration wins
        assert lit.best_adapter == [1, 1]
    assert_same("test outputs", moco.outputs, [r["output"] for r in records])


# -- GRPO training ------------------------------------------------------------------------------


def grpo_policy(ask: Ask) -> str:
    """``policy``, except that gamma will not score beta's answers (an unreadable reply)."""
    if ask.quotes and ask.model == "gamma" and ask.quotes[0].author == "beta":
        return "I would rather not say."
    return policy(ask)


def moco_grpo_module(monkeypatch):
    """MoCo's ``utils/distributed_grpo`` itself (its reward class), with classes standing in for
    trl's trainer where trl is not installed (the module subclasses it at import; nothing trains)."""
    if "trl" not in sys.modules and importlib.util.find_spec("trl") is None:
        stub = types.ModuleType("trl")

        def stand_in(attr: str):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return type(attr, (), {})

        stub.__getattr__ = stand_in
        monkeypatch.setitem(sys.modules, "trl", stub)
    monkeypatch.delitem(sys.modules, "model_collaboration.utils.distributed_grpo", raising=False)
    return importlib.import_module("model_collaboration.utils.distributed_grpo")


def run_moco_stackelberg_grpo(monkeypatch, tmp_path: Path, hyperparameters: dict):
    """MoCo's run with ``distributed_grpo_with_judges`` replaced by a recorder that, instead of
    training, does what MoCo's online reward does on each prompt row: the model's
    ``num_generations`` answers (the scripted model asked again: the repeat is the sample index)
    go to MoCo's own reward class, whose judge call asks the scripted judge with MoCo's judge
    prompt and parses with MoCo's parser; the class weights, scales and writes the reward log
    MoCo's aggregation reads."""
    from model_collaboration.method import distributed_generation as generation

    grpo = moco_grpo_module(monkeypatch)
    stackelberg = _import_moco_method(monkeypatch, "text_sparta_stackelberg")
    ADAPTERS.clear()
    by_base_name = SimpleNamespace(
        update_generation_hyperparameters=lambda **kwargs: None,
        distributed_generation=lambda names, inputs, gpus, *a, **k: generation.distributed_generation(
            [base_name(n) for n in names], inputs, gpus
        ),
    )
    judge_settings: list[tuple] = []

    def scripted_judge(judge_model_path, judge_device, prompts, completions, batch_size,
                       max_response_length, temperature, top_p):  # fmt: skip
        judge_settings.append((max_response_length, temperature))
        shown = [grpo._build_judge_prompt(q, r) for q, r in zip(prompts, completions)]
        (replies,) = by_base_name.distributed_generation([judge_model_path], [shown], [0])
        return [grpo._extract_score_1_to_10(text) for text in replies], replies

    monkeypatch.setattr(grpo, "_score_with_one_judge", scripted_judge)
    trained: list[dict] = []

    def record_grpo(list_of_model_names, list_of_train_data_paths, list_of_output_model_paths,
                    list_of_original_model_names, judge_model_paths_by_name, judge_weights_by_name,
                    num_generations, reward_scale, **kwargs):  # fmt: skip
        rows_by_model = {}
        for model, data, out, name in zip(list_of_model_names, list_of_train_data_paths,
                                          list_of_output_model_paths, list_of_original_model_names):  # fmt: skip
            rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
            rows_by_model[name] = rows
            reward = grpo.ReputationWeightedPeerJudgeReward(
                model_name=name,
                judge_model_paths_by_name=judge_model_paths_by_name,
                judge_weights_by_name=judge_weights_by_name,
                log_path=str(Path(out) / "reward_logs" / "online_rewards.jsonl"),
                cache_path=str(Path(out) / "reward_logs" / "judge_cache.json"),
                reward_scale=reward_scale,
            )
            for row in rows:
                (answers,) = by_base_name.distributed_generation(
                    [model], [[row["prompt"]] * num_generations], [0]
                )
                reward(
                    prompts=[row["prompt"]] * num_generations,
                    completions=answers,
                    **{key: [row[key]] * num_generations
                       for key in ("judge_names_json", "duel_id", "instruction_idx", "opponent_model")},
                )  # fmt: skip
            ADAPTERS[out] = base_name(model)
        trained.append(
            {"rows": rows_by_model, "weights": dict(judge_weights_by_name), "generations": num_generations,
             "outputs": dict(zip(list_of_original_model_names, list_of_output_model_paths))}
        )  # fmt: skip
        return list_of_output_model_paths

    logs = tmp_path / "moco" / "model_collaboration" / "logs"
    save_json = stackelberg._save_json

    def save_and_collect(path, payload):
        save_json(path, payload)
        if str(path).endswith("_stackelberg.json"):
            save_json(str(logs / Path(path).name), payload)

    base_dir = tmp_path / "moco_stackelberg"
    moco = run_moco(
        monkeypatch, tmp_path, "text_sparta_stackelberg", TASK, PLAYERS, grpo_policy,
        {**hyperparameters, "training_algorithm": "grpo", "base_dir": str(base_dir)},
        patches={
            "_save_json": save_and_collect,
            "distributed_generation": by_base_name,
            "distributed_grpo": SimpleNamespace(distributed_grpo_with_judges=record_grpo),
        },
    )  # fmt: skip
    (run_dir,) = base_dir.iterdir()
    iterations = []
    for k, recorded in enumerate(trained):
        folder = run_dir / f"iteration_{k}"
        rewards = {}
        for name, out in recorded["outputs"].items():
            for line in (Path(out) / "reward_logs" / "online_rewards.jsonl").read_text().splitlines():
                row = json.loads(line)
                rewards.setdefault((name, row["duel_id"]), []).append(
                    (row["completion"], row["judge_scores"], row["raw_score_1_to_10"], row["reward"])
                )
        iterations.append(
            {**recorded, "rewards": rewards, **moco_iteration_files(folder, "judged_duels.json")}
        )
    return moco, iterations, judge_settings


def run_lit_stackelberg_grpo(run_cli, tmp_path: Path, monkeypatch, *args: str):
    from moco_lit.methods.text.stackelberg import Stackelberg

    snapshots: list[dict] = []
    settle = Stackelberg.settle_grpo_iteration

    def recorded(self, iteration):
        settle(self, iteration)
        state = {
            "choice": self.duel_instructions, "duels": self.grpo_duels, "rows": self.grpo_rows,
            "weights": self.judge_weights, "rewards": self.reward_log, "scores": self.duel_scores,
            "ratings": self.ratings.tolist(), "deviations": self.deviations.tolist(),
            "leader": self.leader_weights,
        }  # fmt: skip
        snapshots.append(json.loads(json.dumps(state)))

    monkeypatch.setattr(Stackelberg, "settle_grpo_iteration", recorded)
    script = Script(TASK, grpo_policy)
    common = ["--model", "stackelberg", "--model.collaborators", collaborators(PLAYERS)]
    common += ["--model.training_algorithm", "grpo", *args]
    common += ["--data.benchmark", str(TASK.write(tmp_path)), "--cache", "false", "--wandb", "false"]
    run = fit_then_test(run_cli, TASK, script, common)
    return script, snapshots, run.tested.model, run.records


GRPO_CASES = {
    "two-iterations": {"num_iterations": 2},
    "per-model-nearest-raw-reward": {
        "num_iterations": 2, "leader_scope": "per_model", "opponent_selection": "lowest_diff",
        "num_opponents": 2, "num_duels_per_iteration": 7, "reward_scale": "raw",
        "grpo_num_generations": 3, "random_match_prob": 0.0,
    },
}  # fmt: skip


@pytest.mark.parametrize("hyperparameters", list(GRPO_CASES.values()), ids=list(GRPO_CASES))
def test_stackelberg_grpo_matches_moco(run_cli, tmp_path, monkeypatch, hyperparameters):
    """``training_algorithm: grpo``: the leader's draws, each model's GRPO prompt rows, the judges
    and their weights, every sampled answer's judge scores and reward, each player's duel score,
    the ratings, the leader's weights, the final choice and the test outputs.

    The same scripted answers stand in for the sampled completions on both sides (a model asked
    the same question again answers with the repeat as its sample index), so the rewards can be
    compared one by one. The GRPO gradient step itself is not compared: MoCo's is replaced by the
    recorder (moco_lit's runs on scripted models without weights, so no step is taken either).
    """
    options = [arg for name, value in hyperparameters.items() for arg in (f"--model.{name}", str(value))]
    moco, moco_iterations, judge_settings = run_moco_stackelberg_grpo(monkeypatch, tmp_path, hyperparameters)
    script, lit_iterations, lit, records = run_lit_stackelberg_grpo(run_cli, tmp_path, monkeypatch, *options)

    # every call: the samples (how often each model was asked each question), every judge call
    assert_same_calls(moco.calls, script.calls)
    assert len(lit_iterations) == len(moco_iterations) == hyperparameters["num_iterations"]
    names = lit.collaborator_names
    # the judges' decoding: MoCo's 64 tokens at temperature 1e-5 by default on both sides
    assert set(judge_settings) == {(lit.hparams.judge_max_new_tokens, lit.hparams.judge_temperature)}
    for k, (theirs, ours) in enumerate(zip(moco_iterations, lit_iterations)):
        assert theirs["generations"] == lit.hparams.grpo_num_generations
        # the leader's draws, the matches and each duel's judges
        drawn = [(d["instruction_idx"], *d["models"], d["judge_names"]) for d in theirs["drawn"]]
        our_drawn = [
            (i, names[d["players"][0]], names[d["players"][1]], [names[j] for j in d["judges"]])
            for i, d in zip(ours["choice"], ours["duels"])
        ]
        assert_same(f"iteration {k} draws", drawn, our_drawn)
        # each model's GRPO prompt rows, in MoCo's order
        for m, name in enumerate(names):
            rows = [
                (example_of(r["prompt"]), r["duel_id"], r["active_model"], r["opponent_model"],
                 json.loads(r["judge_names_json"]))
                for r in theirs["rows"].get(name, [])
            ]  # fmt: skip
            our_rows = [
                (r["id"], r["duel"], names[r["model"]], names[r["opponent"]], [names[j] for j in r["judges"]])
                for r in ours["rows"][m]
            ]
            assert_same(f"iteration {k} {name}'s GRPO prompts", rows, our_rows)
        # the judges' weights: the ratings at the start of the iteration
        assert [theirs["weights"][n] for n in names] == pytest.approx(ours["weights"], abs=1e-12)
        # every sampled answer: its text, each judge's score, the weighted score, the reward
        rewards = {}
        for r in ours["rewards"]:
            judged = {names[int(j)]: s for j, s in r["judge_scores"].items()}
            rewards.setdefault((names[r["model"]], r["duel"]), []).append(
                (r["completion"], judged, r["raw_score"], r["reward"])
            )
        assert sorted(rewards) == sorted(theirs["rewards"])
        for key, samples in theirs["rewards"].items():
            mine = rewards[key]
            assert [(c, j) for c, j, _, _ in samples] == [(c, j) for c, j, _, _ in mine], key
            assert flat(s[2:] for s in mine) == pytest.approx(flat(s[2:] for s in samples), abs=1e-12), key
        # each player's duel score (its mean weighted score), the ratings, the leader's weights
        scores = [[d["model_level_scores"][m] for m in d["models"]] for d in theirs["judged"]]
        assert flat(ours["scores"]) == pytest.approx(flat(scores), abs=1e-12)
        assert ours["ratings"] == pytest.approx([theirs["info"][m]["score"] for m in PLAYERS], abs=1e-9)
        assert ours["deviations"] == pytest.approx(
            [theirs["info"][m]["deviation"] for m in PLAYERS], abs=1e-9
        )
        assert flat(ours["leader"]) == pytest.approx(flat(theirs["leader"].values()), rel=1e-9)
    # the answers differ within groups and across judges; an unreadable judge reply counts 1
    all_rewards = [s for it in moco_iterations for v in it["rewards"].values() for s in v]
    assert len({s[3] for s in all_rewards}) > 3
    by_beta = [s for it in moco_iterations for (m, _), v in it["rewards"].items() if m == "beta" for s in v]
    assert any("gamma" in s[1] for s in by_beta)
    assert all(s[1]["gamma"] == 1.0 for s in by_beta if "gamma" in s[1])
    # every model of every iteration scored on dev; the first best is tested
    dev_scores = {f"{r['model']}_iter{r['iteration']}": r["dev_score"] for r in lit.adapter_dev_scores}
    assert dev_scores == pytest.approx(moco.log["dev_scores"])
    assert lit.best_adapter == [moco.log["best_model_iteration"], names.index(moco.log["best_model"])]
    assert_same("test outputs", moco.outputs, [r["output"] for r in records])
