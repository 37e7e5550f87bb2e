"""stackelberg: MoCo's bandit leader (tests/parity/test_parity_stackelberg.py) and the top-fraction leader."""

from __future__ import annotations

import pytest
import torch

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
