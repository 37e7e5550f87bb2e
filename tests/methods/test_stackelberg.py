"""stackelberg: MoCo's bandit leader (tests/parity/test_parity_stackelberg.py) and the top-fraction leader."""

from __future__ import annotations

import pytest
import torch

from moco_lit.errors import UserError
from tests.conftest import ROOT, collaborators_arg


def test_the_difficulty_leader_picks_the_hardest_instructions_and_followers_duel_there(run_cli):
    # multiplier is right on multiplication only, so the other skills are the hard instructions
    players = ["callable:tests.scripted.multiplier", "callable:tests.methods.test_sparta.fool"]
    players.append("callable:tests.methods.test_sparta.sage")
    args = ["--model", "stackelberg", "--model.collaborators", collaborators_arg(players)]
    args += [
        "--model.leader_type",
        "difficulty",
        "--model.leader_fraction",
        "0.5",
        "--model.num_iterations",
        "3",
    ]
    args += ["--data.benchmark", "quickstart", "--data.dev_limit", "12"]
    _, fitted = run_cli("fit", *args)
    model = fitted.model
    chosen = model.leader_choice
    assert len(chosen) == 6 and not any(i.startswith("multiply") for i in chosen)
    assert int(model.rating_updates) == 3 * 6  # three iterations, one duel per chosen instruction
    assert model.ratings[1] < model.ratings[2]  # the judges still prefer the right answers
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    _, tested = run_cli("test", *args, "--data.limit", "3", "--ckpt_path", checkpoint)
    # the dev-best collaborator (sage: right on everything) answers the test alone
    assert tested.model.tested_model == 2 and tested.model.ratings.tolist() == model.ratings.tolist()


def test_recipe_parses(run_cli):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "-c", str(ROOT / "recipes/text/stackelberg.yaml"), "--print_config")
    assert exit_info.value.code == 0


def test_a_resumed_fit_still_compares_every_trained_iteration(run_cli, tiny_models, tmp_path):
    # the final choice scores each iteration's trained weights on dev; iteration 0's are kept when
    # iteration 1 starts, so the checkpoint after epoch 1 must carry them for a resume from there
    checkpoints = tmp_path / "every_epoch"
    players = [tiny_models[0], tiny_models[1], "callable:tests.methods.test_sparta.sage"]
    common = ["--model", "stackelberg", "--model.collaborators", collaborators_arg(players)]
    common += [
        "--model.max_new_tokens", "4", "--model.lora_r", "4", "--model.lora_dropout", "0",
        "--model.num_iterations", "3", "--model.leader_type", "contested", "--model.leader_fraction", "1.0",
        "--model.temperature", "1.0", "--model.learning_rate", "0.01",
        "--data.benchmark", "quickstart", "--data.dev_limit", "5", "--data.batch_size", "1",
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={checkpoints}", "--trainer.callbacks.save_top_k=-1",
    ]  # fmt: skip
    _, fitted = run_cli("fit", *common)
    uninterrupted = fitted.model
    assert uninterrupted.trained_iterations[0] == 0  # iteration 0 had a pair to train on
    (after_epoch1,) = checkpoints.glob("epoch=1-*.ckpt")
    assert set(torch.load(after_epoch1, weights_only=False)["trained_weights"]) == {0}

    resumed_checkpoints = tmp_path / "resumed"
    common[common.index(f"--trainer.callbacks.dirpath={checkpoints}")] = (
        f"--trainer.callbacks.dirpath={resumed_checkpoints}"
    )
    _, resumed = run_cli("fit", *common, "--ckpt_path", str(after_epoch1))
    again = resumed.model
    compared = [r["iteration"] for r in again.adapter_dev_scores]
    assert compared[:3] == [0, 0, 0] and len(compared) == 3 * len(uninterrupted.trained_iterations)
    assert again.adapter_dev_scores == uninterrupted.adapter_dev_scores
    assert again.best_adapter == uninterrupted.best_adapter


def test_grpo_trains_the_lora_weights_of_tiny_models_and_tests_the_best(run_cli, tiny_models, monkeypatch):
    from moco_lit.methods.text.stackelberg import Stackelberg

    judging: list[tuple] = []  # (iteration, judge, its weights) at every GRPO judge call
    ask = Stackelberg.ask

    def recording(self, model, prompts, ids, *, step="", decoding=None):
        if step.startswith("grpo-judge") and self.agents.owns(self.collaborators[model]):
            judging.append((int(self.iteration), model, self.agents.agent_weights(f"agent{model}")))
        return ask(self, model, prompts, ids, step=step, decoding=decoding)

    monkeypatch.setattr(Stackelberg, "ask", recording)
    # two scripted judges score by the answer's characters, so a tiny model's samples earn different
    # rewards; each duel with a tiny model has at least one of them among its judges
    players = [tiny_models[0], tiny_models[1], "callable:tests.methods.test_sparta.sage"]
    players.append("callable:tests.methods.test_sparta.fool")
    args = ["--model", "stackelberg", "--model.collaborators", collaborators_arg(players)]
    args += [
        "--model.training_algorithm", "grpo", "--model.num_iterations", "2",
        "--model.grpo_num_generations", "3", "--model.grpo_max_completion_length", "4",
        "--model.grpo_temperature", "1.0", "--model.grpo_learning_rate", "0.01",
        "--model.judge_max_new_tokens", "4", "--model.max_new_tokens", "4",
        "--model.lora_r", "4", "--model.lora_dropout", "0",
        "--data.benchmark", "quickstart", "--data.dev_limit", "4", "--data.batch_size", "2",
    ]  # fmt: skip
    _, fitted = run_cli("fit", *args)
    model = fitted.model
    assert model.trained_iterations == [0, 1] and model.learning_rate == 0.01
    tiny_rewards = [r["reward"] for r in model.reward_log if r["model"] in (0, 1)]
    assert len(tiny_rewards) == 3 * sum(len(model.grpo_rows[m]) for m in (0, 1))  # the last iteration's
    assert len(set(tiny_rewards)) > 1  # the groups teach something
    # LoRA's B starts at zero: every iteration moved both tiny models' adapters
    for iteration in (0, 1):
        for key in ("agent0", "agent1"):
            weights = model._trained_weights[iteration][key]
            assert any(w.abs().sum() > 0 for n, w in weights.items() if "lora_B" in n), (iteration, key)
    assert any(
        not torch.equal(w, model._trained_weights[1]["agent0"][n])
        for n, w in model._trained_weights[0]["agent0"].items()
    )
    # the tiny judges score as the iteration began (MoCo's judges), though they train meanwhile
    assert {(k, m) for k, m, _ in judging} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for iteration, judge, weights in judging:
        if iteration == 0:  # LoRA's B starts at zero
            assert all(not w.any() for n, w in weights.items() if "lora_B" in n)
        else:
            start = model._trained_weights[0][f"agent{judge}"]
            assert all(torch.equal(w, start[n]) for n, w in weights.items())
    # the ratings moved by the players' mean judged scores; every trained model was scored on dev
    assert int(model.rating_updates) == 2 * 4 and len(model.rating_history) == 2
    assert len(model.adapter_dev_scores) == 2 * 4
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    _, tested = run_cli("test", *args, "--data.limit", "2", "--ckpt_path", checkpoint)
    assert tested.model.best_adapter == model.best_adapter
    assert tested.model.tested_model == model.tested_model


def test_grpo_refuses_damped_score_types(run_cli):
    players = ["callable:tests.methods.test_sparta.sage"] * 3
    args = ["--model", "stackelberg", "--model.collaborators", collaborators_arg(players)]
    with pytest.raises(UserError, match="score_type normal only"):
        run_cli("fit", *args, "--model.training_algorithm", "grpo", "--model.score_type", "dynamic")


def test_grpo_duels_whose_questions_never_trained_are_neither_rated_nor_rewarded(run_cli):
    # half of dev falls out of training: its duels' players never sample, so (as MoCo skips duels
    # without scores) only the others move the ratings and the leader
    players = ["callable:tests.scripted.multiplier", "callable:tests.methods.test_sparta.fool"]
    players.append("callable:tests.methods.test_sparta.sage")
    args = ["--model", "stackelberg", "--model.collaborators", collaborators_arg(players)]
    args += ["--model.training_algorithm", "grpo", "--model.grpo_num_generations", "2"]
    args += ["--data.benchmark", "quickstart", "--data.dev_limit", "4", "--data.batch_size", "2"]
    _, fitted = run_cli("fit", *args, "--trainer.limit_train_batches", "1")
    model = fitted.model
    scored = [s for s in model.duel_scores if None not in s]
    assert 0 < len(scored) < len(model.duel_scores) == 4
    assert int(model.rating_updates) == len(scored) == len(model.last_duels)
    assert model.leader_weights != [[1.0] * 4]
    # the sage answers right, the fool never: the judges' mean scores move them apart
    assert model.ratings[1] < 100.0 < model.ratings[2]


def test_grpo_with_greedy_rollouts_learns_nothing_as_moco_s(run_cli, tiny_models):
    # MoCo's GRPO trainer rolls out greedily: a group's answers are one answer, advantages are zero
    players = [
        tiny_models[0],
        "callable:tests.methods.test_sparta.sage",
        "callable:tests.methods.test_sparta.fool",
    ]
    args = ["--model", "stackelberg", "--model.collaborators", collaborators_arg(players)]
    args += [
        "--model.training_algorithm", "grpo", "--model.grpo_temperature", "0",
        "--model.grpo_max_completion_length", "4", "--model.judge_max_new_tokens", "4",
        "--model.grpo_learning_rate", "0.01", "--model.lora_r", "4", "--model.lora_dropout", "0",
        "--data.benchmark", "quickstart", "--data.dev_limit", "3",
    ]  # fmt: skip
    _, fitted = run_cli("fit", *args)
    model = fitted.model
    groups: dict[tuple, set] = {}
    for row in model.reward_log:
        if row["model"] == 0:  # the tiny model's groups
            groups.setdefault((row["duel"], row["side"]), set()).add(row["completion"])
    assert groups and all(len(answers) == 1 for answers in groups.values())
    weights = model._trained_weights[0]["agent0"]
    assert all(not w.any() for n, w in weights.items() if "lora_B" in n)
