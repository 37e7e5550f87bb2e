"""sparta: Elo pieces, ratings move toward the judges' favourite, DPO on tiny models end to end."""

from __future__ import annotations

import json
import re

import pytest
import torch

from moco_lit.methods.text.arena import elo_update, expected_score, k_factor
from tests.conftest import ROOT, collaborators_arg
from tests.scripted import _question, solve_quickstart


def _judge_or_answer(rendered: str, answer: str) -> str:
    """Judge prompts: prefer the correct answer; questions: reply ``answer``."""
    if "Answer A:" in rendered:
        right = solve_quickstart(rendered)
        answer_a = re.search(r"Answer A:\n(.*?)\n\nAnswer B:", rendered, re.S).group(1).strip()
        return "A" if answer_a == right else "B"
    return answer


def sage(rendered: str) -> str:
    return _judge_or_answer(rendered, solve_quickstart(_question(rendered)) or "?")


def fool(rendered: str) -> str:
    return _judge_or_answer(rendered, "zzz")


def test_elo_pieces():
    ratings = torch.tensor([100.0, 100.0], dtype=torch.float64)
    assert expected_score(100, 100, 20) == 0.5 and expected_score(120, 100, 20) == pytest.approx(10 / 11)
    elo_update(ratings, 0, 1, 1.0, k=10, scale=20)
    assert ratings.tolist() == [105.0, 95.0]
    assert (
        k_factor(10, 5, 0.9, 10, 0) == 10
        and k_factor(10, 5, 0.9, 10, 10) == 9
        and k_factor(10, 5, 0.5, 1, 5) == 5
    )


def _sparta(run_cli, collaborators: list[str], *extra: str, method: str = "sparta"):
    common = ["--model", method, "--model.collaborators", collaborators_arg(collaborators)]
    common += ["--data.benchmark", "quickstart", *extra]
    _, fitted = run_cli("fit", *common)
    return fitted, common


def test_ratings_move_toward_the_model_the_judges_prefer(run_cli):
    players = ["callable:tests.methods.test_sparta.sage", "callable:tests.methods.test_sparta.fool"]
    fitted, _ = _sparta(
        run_cli, [*players, players[0]], "--data.dev_limit", "9", "--model.num_iterations", "2"
    )
    ratings = fitted.model.ratings.tolist()
    # the fool loses every duel it plays; the two sages tie (same answers) and only gain
    assert ratings[1] < 90.0 and ratings[0] > 100.0 and ratings[2] > 100.0
    assert sum(ratings) == pytest.approx(300.0)
    assert int(fitted.model.rating_updates) == 18 and int(fitted.model.iteration) == 1
    duels = [
        json.loads(line) for line in (fitted.model.runtime.run_folder.path / "sparta_iter0.jsonl").open()
    ]
    assert duels == []  # nobody here has weights to train: no DPO items
    checkpoint = torch.load(fitted.trainer.checkpoint_callback.best_model_path, weights_only=False)
    assert checkpoint["state_dict"]["ratings"].tolist() == ratings


def test_fit_with_dpo_then_test_on_tiny_models(run_cli, tiny_models):
    judge = "callable:tests.methods.test_sparta.sage"
    fitted, common = _sparta(
        run_cli, [tiny_models[0], tiny_models[1], judge], "--model.max_new_tokens", "4", "--model.lora_r", "4",
        "--model.num_iterations", "1", "--model.temperature", "1.0", "--data.dev_limit", "4",
    )  # fmt: skip
    model = fitted.model
    assert model.agents.layout == "one_by_one" and set(model.agents.agents) == {"agent0", "agent1"}
    items = [json.loads(line) for line in (model.runtime.run_folder.path / "sparta_iter0.jsonl").open()]
    assert items and all(
        item["chosen"] != item["rejected"] and item["agent"] in {"agent0", "agent1"} for item in items
    )
    assert not torch.isnan(model.final_dev_scores).any()
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    _, tested = run_cli("test", *common, "--data.limit", "2", "--ckpt_path", checkpoint)
    records = [
        json.loads(line) for line in (tested.model.runtime.run_folder.path / "predictions.jsonl").open()
    ]
    assert len(records) == 2 and all(r["calls"] == 1 for r in records)
    assert tested.model.ratings.tolist() == model.ratings.tolist()


def test_recipe_parses(run_cli):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "-c", str(ROOT / "recipes/text/sparta.yaml"), "--print_config")
    assert exit_info.value.code == 0


def test_a_fit_resumed_inside_an_iteration_keeps_its_duels(run_cli, tiny_models, tmp_path):
    # 2 iterations of 2 epochs; the resume starts from the checkpoint after epoch 0, between the
    # two epochs that train on iteration 0's duels
    checkpoints = tmp_path / "every_epoch"
    fitted, common = _sparta(
        run_cli, [tiny_models[0], tiny_models[1], "callable:tests.methods.test_sparta.sage"],
        "--model.max_new_tokens", "4", "--model.lora_r", "4", "--model.lora_dropout", "0",
        "--model.num_iterations", "2", "--model.epochs_per_iteration", "2", "--model.temperature", "1.0",
        "--model.learning_rate", "0.01", "--data.dev_limit", "4", "--data.batch_size", "2",
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={checkpoints}", "--trainer.callbacks.save_top_k=-1",
    )  # fmt: skip
    (after_epoch0,) = checkpoints.glob("epoch=0-*.ckpt")
    mid = torch.load(after_epoch0, weights_only=False)
    assert mid["iteration_attributes"]["built_iteration"] == 0 and mid["iteration_attributes"]["items"]
    assert int(mid["state_dict"]["rating_updates"]) == 4  # iteration 0's duels, already rated

    resumed_checkpoints = tmp_path / "resumed"
    common[common.index(f"--trainer.callbacks.dirpath={checkpoints}")] = (
        f"--trainer.callbacks.dirpath={resumed_checkpoints}"
    )
    _, resumed = run_cli("fit", *common, "--ckpt_path", str(after_epoch0))
    uninterrupted, again = fitted.model, resumed.model
    # one rating update per duel: 4 per iteration, none replayed
    assert int(again.rating_updates) == int(uninterrupted.rating_updates) == 8
    assert again.ratings.tolist() == uninterrupted.ratings.tolist()
    assert again.last_duels == uninterrupted.last_duels
    adapters = uninterrupted.agents.trainable_keys("agents.")
    state, resumed_state = uninterrupted.state_dict(), again.state_dict()
    assert adapters and all(torch.equal(state[k], resumed_state[k]) for k in adapters)
    assert any(state[k].abs().sum() > 0 for k in adapters if "lora_B" in k)  # they did train
