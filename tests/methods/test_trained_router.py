"""trained_router: the dev table, the learning signal, both router kinds, DDP, and checkpoint use."""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from transformers import LlamaForSequenceClassification

from moco_lit.dev_table import DEV_ANSWERS, DevTable, reward_ties
from moco_lit.errors import UserError
from moco_lit.evaluation.judges import RewardModelJudge, clear_judges
from moco_lit.methods.api.trained_router import model_named_in
from tests.conftest import ROOT, collaborators_arg
from tests.evaluation.conftest import llama_config, save_tokenizer
from tests.scripted import solve_quickstart

SPECIALISTS = collaborators_arg(["callable:tests.scripted.multiplier", "callable:tests.scripted.reverser"])


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def _fit_then_test(run_cli, model_args: list[str], fit_args: list[str], test_args: list[str]):
    common = ["--model", "trained_router", *model_args, "--data.benchmark", "quickstart"]
    _, fitted = run_cli("fit", *common, *fit_args)
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    assert checkpoint and Path(checkpoint).exists()
    _, tested = run_cli("test", *common, *test_args, "--ckpt_path", checkpoint)
    return fitted, tested, checkpoint


def test_dev_table_labels_break_ties_by_preference():
    rows = [
        {"id": "a", "question": "q", "outputs": {}, "scores": {"x": 1.0, "y": 1.0}, "tokens": {}},
        {"id": "b", "question": "q", "outputs": {}, "scores": {"x": 0.0, "y": 1.0}, "tokens": {}},
        {"id": "c", "question": "q", "outputs": {}, "scores": {"x": None, "y": None}, "tokens": {}},
    ]
    table = DevTable(["x", "y"], rows)
    assert table.best_models(preference=[1, 0]) == [1, 1, 1]
    assert table.best_models(preference=[0, 1]) == [0, 1, 0]
    assert table.mean_scores()[0].item() == 0.5 and math.isnan(table.score_matrix()[2, 0].item())


def test_encoder_router_sends_each_skill_to_its_specialist(run_cli, tiny_models):
    fitted, tested, checkpoint = _fit_then_test(
        run_cli,
        ["--model.collaborators", SPECIALISTS, "--model.router", "encoder"]
        + ["--model.router_base_model", tiny_models[0]],
        ["--trainer.max_epochs", "12"],
        ["--data.limit", "30"],
    )
    # the dev table: every collaborator's answer and score, with the label, in the fit run folder
    dev_rows = [json.loads(line) for line in (fitted.model.runtime.run_folder.path / DEV_ANSWERS).open()]
    assert len(dev_rows) == 120 and set(dev_rows[0]["outputs"]) == {"multiplier", "reverser"}
    assert {r["label"] for r in dev_rows if r["id"].startswith("reverse")} == {"reverser"}
    assert {r["label"] for r in dev_rows if r["id"].startswith("multiply")} == {"multiplier"}
    saved = torch.load(checkpoint, weights_only=False)
    assert len(saved["dev_table"]["labels"]) == 120 and any(
        k.startswith("head.") for k in saved["state_dict"]
    )

    records = _records(tested.model.runtime.run_folder.path)
    assert all(r["calls"] == 1 for r in records)  # only the chosen collaborator answers
    for record in records:
        probabilities = record["details"]["router_probs"]
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-3)
        assert record["answered_by"] == max(probabilities, key=probabilities.get)
        if record["id"].startswith("multiply"):
            assert record["answered_by"] == "multiplier"
        if record["id"].startswith("reverse"):
            assert record["answered_by"] == "reverser"
    metrics = json.loads((tested.model.runtime.run_folder.path / "metrics.json").read_text())
    # each specialist alone scores 1/3 (one skill of three); perfect routing scores 2/3
    assert metrics["score"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["dev_scores"] == pytest.approx([1 / 3, 1 / 3], abs=1e-6)


def test_causal_lm_router_runs_on_tiny_models_and_keeps_only_the_adapter(run_cli, tiny_models):
    model_args = ["--model.collaborators", collaborators_arg(tiny_models[:2]), "--model.router", "causal_lm"]
    model_args += ["--model.router_base_model", tiny_models[2], "--model.lora_r", "4"]
    model_args += ["--model.max_new_tokens", "4", "--model.learning_rate", "0.01"]
    model_args += ["--model.tie_break_reward_model", "none"]
    _, tested, checkpoint = _fit_then_test(
        run_cli, model_args, ["--data.dev_limit", "6", "--data.batch_size", "3"], ["--data.limit", "4"]
    )
    router_keys = [
        k for k in torch.load(checkpoint, weights_only=False)["state_dict"] if k.startswith("router_lm.")
    ]
    assert router_keys and all("lora_" in k for k in router_keys)
    records = _records(tested.model.runtime.run_folder.path)
    order = [Path(p).name for p in tiny_models[:2]]
    assert len(records) == 4 and all(r["calls"] == 1 and r["answered_by"] in order for r in records)
    # MoCo's rule (the default): the router writes a reply; the highest model number in it, else a
    # seeded draw
    for record in records:
        reply = record["details"]["router_reply"]
        named = model_named_in(reply, 2)
        assert record["details"]["router_named"] == (named is not None)
        assert named is None or record["answered_by"] == order[named]
    # routing: logprob scores each "Model k" with the same trained router
    batch = tested.datamodule.examples("test")[:4]
    probabilities = tested.model.route(batch)
    assert probabilities.shape == (4, 2) and torch.allclose(probabilities.sum(-1), torch.ones(4))


def test_test_without_a_trained_router_is_a_clear_error(run_cli, tiny_models):
    with pytest.raises(UserError, match="fit"):
        run_cli(
            "test",
            "--model",
            "trained_router",
            "--model.collaborators",
            SPECIALISTS,
            "--model.router",
            "encoder",
            "--model.router_base_model",
            tiny_models[0],
            "--data.benchmark",
            "quickstart",
            "--data.limit",
            "3",
        )


def test_recipe_parses(run_cli):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "-c", str(ROOT / "recipes/api/trained_router.yaml"), "--print_config")
    assert exit_info.value.code == 0


@pytest.mark.slow
def test_two_process_ddp_fit_builds_the_whole_table_and_trains(tmp_path, tiny_models):
    # 17 dev questions over 2 ranks in batches of 4: rank 0 gets 3 batches, rank 1 gets 2; the
    # extra batch is dropped so the ranks' gradient all-reduces stay in step
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "moco_lit", "fit", "--model", "trained_router"]
    command += ["--model.collaborators", SPECIALISTS, "--model.router", "encoder"]
    command += ["--model.router_base_model", tiny_models[0], "--data.benchmark", "quickstart"]
    command += ["--data.dev_limit", "17", "--data.batch_size", "4", "--trainer.max_epochs", "2"]
    command += ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    command += ["--run_dir", str(tmp_path / "runs"), "--wandb", "false", "--progress", "false"]
    command += ["--trainer.enable_progress_bar", "false"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (tmp_path / "runs" / "quickstart" / "trained_router").glob("*-fit")
    dev_ids = [json.loads(line)["id"] for line in (folder / DEV_ANSWERS).open()]
    assert len(dev_ids) == 17 and dev_ids[:3] == ["multiply-dev-0", "reverse-dev-0", "next_letter-dev-0"]
    (checkpoint,) = (folder / "checkpoints").glob("last.ckpt")
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["global_step"] == 4 and len(saved["dev_table"]["rows"]) == 17


# -- the reward-model tie-break: both collaborators are right, so every dev question is a tie ------


def right_then_no(rendered: str) -> str:
    """Always right; its answer ends with the word "no"."""
    return f"The answer is {solve_quickstart(rendered.rsplit('User: ', 1)[-1])}\nno"


def right_then_yes(rendered: str) -> str:
    """Always right; its answer ends with the word "yes" (the tiny reward model's favourite)."""
    return f"The answer is {solve_quickstart(rendered.rsplit('User: ', 1)[-1])}\nyes"


TIED = collaborators_arg(
    [f"callable:tests.methods.test_trained_router.{name}" for name in ("right_then_no", "right_then_yes")]
)


@pytest.fixture(scope="module")
def yes_reward_model(tmp_path_factory) -> str:
    """A tiny reward model whose reward depends on the last token only and is highest for "yes".

    With every attention and MLP output projection zeroed, the last hidden state is the last
    token's embedding (RMS-normalised), and a score head equal to the embedding of "yes" gives
    the largest reward to the text ending with "yes" (Cauchy-Schwarz)."""
    folder = tmp_path_factory.mktemp("yes_reward")
    tokenizer = save_tokenizer(folder)
    torch.manual_seed(0)
    config = llama_config(len(tokenizer), num_labels=1, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.score.weight.copy_(model.model.embed_tokens.weight[tokenizer.convert_tokens_to_ids("yes")])
    model.save_pretrained(folder)
    return str(folder)


def test_reward_ties_scores_only_tied_questions_in_one_call_and_keeps_dev_order_for_equal_rewards():
    rows = [
        {"id": "a", "question": "qa", "outputs": {"x": "xa", "y": "ya"}, "scores": {"x": 1.0, "y": 1.0}},
        {"id": "b", "question": "qb", "outputs": {"x": "xb", "y": "yb"}, "scores": {"x": 0.0, "y": 1.0}},
        {"id": "c", "question": "qc", "outputs": {"x": "xc", "y": "yc"}, "scores": {"x": None, "y": None}},
        {"id": "d", "question": "qd", "outputs": {"x": "xd", "y": "yd"}, "scores": {"x": 0.5, "y": 0.5}},
    ]
    table = DevTable(["x", "y"], [{**row, "tokens": {}} for row in rows])
    calls = []

    def reward(prompts: list[str], responses: list[str]) -> list[float]:
        calls.append(list(zip(prompts, responses)))
        return [{"ya": 2.0, "xc": 3.0}.get(response, 1.0) for response in responses]

    rewards = reward_ties(table, reward)
    assert len(calls) == 1 and [q for q, _ in calls[0]] == ["qa", "qa", "qc", "qc", "qd", "qd"]
    assert rewards == [{0: 1.0, 1: 2.0}, {}, {0: 3.0, 1: 1.0}, {0: 1.0, 1: 1.0}]
    assert table.rows[0]["tie_rewards"] == {"x": 1.0, "y": 2.0} and "tie_rewards" not in table.rows[1]
    # a: y's reward is higher; b: no tie; c: nothing scored, x's reward wins; d: equal -> dev order
    assert table.best_models([0, 1], rewards=rewards) == [1, 1, 0, 0]
    assert table.best_models([1, 0], rewards=rewards) == [1, 1, 0, 1]


@pytest.mark.parametrize("reward_model", [True, False], ids=["reward_model", "dev_order"])
def test_ties_go_to_the_reward_models_choice_else_to_dev_order(
    run_cli, tiny_models, yes_reward_model, reward_model
):
    prompt, answer = "What is 2 times 3?", "The answer is 6\n{}"
    yes, no = RewardModelJudge.load(yes_reward_model).score(
        [prompt] * 2, [answer.format("yes"), answer.format("no")]
    )
    assert yes > no  # the reward model prefers the second collaborator's style

    model_args = ["--model.collaborators", TIED, "--model.router", "encoder"]
    model_args += ["--model.router_base_model", tiny_models[0]]
    if reward_model:
        model_args += ["--model.tie_break_reward_model", yes_reward_model]
    _, fitted = run_cli(
        "fit", "--model", "trained_router", *model_args, "--data.benchmark", "quickstart",
        "--data.dev_limit", "6", "--data.batch_size", "6", "--trainer.max_epochs", "1",
    )  # fmt: skip
    assert fitted.model.dev_scores.tolist() == [
        1.0,
        1.0,
    ]  # a tie on every question: dev order says right_then_no
    dev_rows = [json.loads(line) for line in (fitted.model.runtime.run_folder.path / DEV_ANSWERS).open()]
    assert len(dev_rows) == 6 and all(set(row["scores"].values()) == {1.0} for row in dev_rows)
    if reward_model:
        assert {row["label"] for row in dev_rows} == {"right_then_yes"}
        for row in dev_rows:
            rewards = row["tie_rewards"]
            assert set(rewards) == {"right_then_no", "right_then_yes"}
            assert rewards["right_then_yes"] > rewards["right_then_no"]
    else:
        assert {row["label"] for row in dev_rows} == {"right_then_no"}
        assert not any("tie_rewards" in row for row in dev_rows)


def test_the_tie_break_reward_model_is_released_after_labelling(
    run_cli, tiny_models, yes_reward_model, monkeypatch
):
    clear_judges()
    scored_by: list[weakref.ref] = []
    score = RewardModelJudge.score

    def recording_score(judge: RewardModelJudge, prompts: list[str], responses: list[str]) -> list[float]:
        scored_by.append(weakref.ref(judge))
        return score(judge, prompts, responses)

    monkeypatch.setattr(RewardModelJudge, "score", recording_score)
    _, fitted = run_cli(
        "fit", "--model", "trained_router", "--model.collaborators", TIED, "--model.router", "encoder",
        "--model.router_base_model", tiny_models[0], "--model.tie_break_reward_model", yes_reward_model,
        "--data.benchmark", "quickstart", "--data.dev_limit", "4", "--trainer.max_epochs", "1",
    )  # fmt: skip
    assert set(fitted.model.dev_labels) == {1}  # the reward model did label the ties
    gc.collect()
    assert scored_by and not RewardModelJudge.is_loaded(yes_reward_model)
    assert all(ref() is None for ref in scored_by)  # nothing holds the judge after labelling
