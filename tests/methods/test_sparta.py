"""sparta: Elo pieces, ratings move toward the judges' favourite, DPO on tiny models end to end."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from moco_lit.errors import UserError
from moco_lit.methods.text.ratings import (
    RatingTable,
    average_rounds,
    judge_round_scores,
    k_step,
    parse_judge_score,
    player_weights,
)
from moco_lit.methods.text.sparta import Sparta
from moco_lit.training import reference_logps
from tests.conftest import ROOT, collaborators_arg
from tests.scripted import _question, solve_quickstart


def _judge_or_answer(rendered: str, answer: str) -> str:
    """Judge prompts: 9 for the correct answer, 1-8 for any other (by its characters); questions: reply ``answer``."""
    if "Response:\n" in rendered:
        right = solve_quickstart(rendered)
        response = re.search(r"Response:\n(.*?)\n\n", rendered, re.S).group(1).strip()
        return f'{{"score": {9 if response == right else 1 + sum(map(ord, response)) % 8}}}'
    return answer


def sage(rendered: str) -> str:
    return _judge_or_answer(rendered, solve_quickstart(_question(rendered)) or "?")


def fool(rendered: str) -> str:
    return _judge_or_answer(rendered, "zzz")


def test_judge_scores_are_read_and_averaged():
    assert [parse_judge_score(t) for t in ['{"score": 7}', '{"score": 7.9}', " Score: 8", "it is 6/10"]] == [
        7,
        7,
        8,
        6,
    ]
    assert parse_judge_score('{"score": 11}') is None and parse_judge_score("no idea") is None
    # a JSON-like object outranks an earlier looser form; out-of-range numbers are skipped
    assert parse_judge_score('"score": 3 ... {"score": 12} {"score": 4}') == 4
    assert judge_round_scores('{"score": 8}', "junk") == ([5.0, 5.0], True)
    assert average_rounds([([8.0, 2.0], False), ([5.0, 5.0], True), ([9.0, 1.0], False)]) == (7.33, 2.67)
    assert average_rounds([([5.0, 5.0], True)]) == (5.0, 5.0)


def test_rating_update_by_hand():
    assert k_step(10, 5, 0.9, 10, 10) == pytest.approx(9.0) and k_step(10, 5, 0.5, 1, 5) == 5
    table = RatingTable([100.0, 100.0, 100.0], [0.5, 0.5, 0.5])
    k = k_step(10, 5, 0.9, 10, 1)
    assert table.update(0, 1, {2: (9.0, 2.0)}, k, 20.0, 0.01, 10, 0.1) == 7.0
    step_a = k * 7 * math.tanh(0.5) * 0.01 / 20  # equal ratings: the gap term is at its floor epsilon
    gap = -step_a / (math.sqrt(2) * math.sqrt(0.5))  # B already sees A's new rating
    step_b = -k * 7 * math.tanh(0.5) * max(abs(math.erf(gap)), 0.01) / 20
    assert table.ratings == pytest.approx([100 + step_a, 100 + step_b, 100.0])
    assert table.recent_changes[0] == [pytest.approx(step_a)] and table.deviations == [0.5, 0.5, 0.5]
    # the judge's weight is its rating; ratings stop at 10; two changes give a deviation
    table = RatingTable([10.0, 150.0, 100.0, 50.0], [3.0, 3.0, 0.5, 0.5])
    table.update(0, 1, {2: (1.0, 10.0), 3: (10.0, 1.0)}, 10.0, 20.0, 0.01, 10, 0.1)
    assert table.ratings[0] == 10.0 and table.ratings[1] > 150.0
    table.update(0, 1, {2: (1.0, 10.0)}, 10.0, 20.0, 0.01, 10, 0.1)
    assert table.recent_changes[0] == [0.0, 0.0] and table.deviations[0] == 0.1  # min_deviation
    history = [[100.0, 90.0, 95.0, 120.0]] * 3
    assert player_weights("normal", history, 3) is None and player_weights("dynamic", history, 1) is None
    assert player_weights("dynamic", history, 3) == [1.0, 0.0, 0.1, 1.0]
    assert player_weights("static", [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [5.0, 2.0, 3.0, 4.0]], 3) == [
        0.0, 0.1, 1.0, 1.0
    ]  # fmt: skip


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
    # the fool loses every duel it plays (9 against 2 from every judge); the sages tie each other
    assert ratings[1] < 100.0 < min(ratings[0], ratings[2])
    assert int(fitted.model.rating_updates) == 18 and int(fitted.model.iteration) == 1
    duels = fitted.model.last_duels
    assert all(
        d["scores"][d["players"].index(1)] == 1 + sum(map(ord, "zzz")) % 8 for d in duels if 1 in d["players"]
    )
    pairs = fitted.model.preference_pairs
    assert pairs and all(p["rejected_by"] == "fool" and p["rejected"] == "zzz" for p in pairs)
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
        "--model.num_iterations", "1", "--model.temperature", "1.0", "--data.dev_limit", "6",
    )  # fmt: skip
    model = fitted.model
    assert model.agents.layout == "one_by_one" and set(model.agents.agents) == {"agent0", "agent1"}
    items = [json.loads(line) for line in (model.runtime.run_folder.path / "sparta_iter0.jsonl").open()]
    # every trained model learns from every pair, against its own log-probabilities before training
    pairs = model.preference_pairs
    assert pairs and len(items) == 2 * len(pairs)
    for agent in ("agent0", "agent1"):
        own = [(i["id"], i["chosen"], i["rejected"]) for i in items if i["agent"] == agent]
        assert own == [(p["id"], p["chosen"], p["rejected"]) for p in pairs]
    assert all(len(item["reference_logps"]) == 2 for item in items)
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


def test_dpo_reference_is_each_model_before_the_iteration(run_cli, tiny_models):
    fitted, _ = _sparta(
        run_cli, [tiny_models[0], tiny_models[1], "callable:tests.methods.test_sparta.sage"],
        "--model.max_new_tokens", "4", "--model.lora_r", "4", "--model.lora_dropout", "0",
        "--model.num_iterations", "2", "--model.temperature", "1.0", "--model.learning_rate", "0.01",
        "--model.lr_schedule", "constant", "--data.dev_limit", "6",
    )  # fmt: skip
    model = fitted.model
    folder = model.runtime.run_folder.path
    for iteration, equal_to_base in ((0, True), (1, False)):
        items = [json.loads(line) for line in (folder / f"sparta_iter{iteration}.jsonl").open()]
        assert items
        for item in items:
            agent = model.agents.agents[item["agent"]]
            network = model.agents.activate(agent).eval()
            tokens = model._tokens(agent, [item["prompt"]] * 2, [item["chosen"], item["rejected"]])
            base = reference_logps(network, tokens).tolist()  # the adapter disabled
            # iteration 0 starts from the base model; iteration 1 from what iteration 0 trained
            assert (item["reference_logps"] == pytest.approx(base, abs=1e-4)) is equal_to_base


@pytest.mark.parametrize(
    ("option", "value"),
    [("num_opponents", 0), ("judge_rounds", 0), ("window_size", 0), ("random_match_prob", 1.5),
     ("score_type", "weighted"), ("dpo_reference", "initial")],
)  # fmt: skip
def test_bad_options_name_the_value(option, value):
    players = ["callable:tests.scripted.oracle"] * 3
    with pytest.raises(UserError, match=f"sparta.{option} .*{value}"):
        Sparta(players, **{option: value})


def test_opponents_by_rating_after_training_only_with_always():
    players = ["callable:tests.scripted.oracle"] * 4
    for option in ("until_trained", "always"):
        sparta = Sparta(players, num_opponents=1, random_match_prob=0.0, opponents_by_rating=option)
        sparta.collaborators = list(range(4))  # matching reads only how many there are
        sparta.ratings.copy_(torch.tensor([100.0, 101.0, 130.0, 131.0], dtype=torch.float64))
        nearest = {0: 1, 1: 0, 2: 3, 3: 2}
        assert all(nearest[a] == b for a, b in sparta.match(0, 40))
        sparta.trained_before = True  # MoCo finds no rating for a trained model: random opponents
        by_rating = all(nearest[a] == b for a, b in sparta.match(1, 40))
        assert by_rating is (option == "always")
