"""agglm: a GRPO step raises the reward-weighted likelihood; hard/easy sets; fit then test."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from moco_lit.evaluation import Scorer
from moco_lit.methods.text.agglm import AggLM
from moco_lit.training import completion_batch, completion_logps, grpo_batch_loss
from tests.conftest import ROOT, collaborators_arg


def test_grpo_steps_raise_the_reward_weighted_likelihood(tiny_models):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[0])
    model = AutoModelForCausalLM.from_pretrained(tiny_models[0])
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    prompts = ["What is 2 times 3?"] * 4 + ["Reverse the letters ab."] * 4
    completions = ["6", "5", "9", "12", "ba", "ab", "aa", "b"]
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0])
    batch = completion_batch(tokenizer, prompts, completions)
    weights = rewards - rewards.reshape(2, 4).mean(-1).repeat_interleave(4)

    def weighted() -> float:
        with torch.no_grad():
            return float((weights * completion_logps(model, batch)).sum())

    before = weighted()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.02)
    for _ in range(10):
        loss = grpo_batch_loss(model, batch, rewards, group_size=4)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert weighted() > before + 1.0


def test_equal_rewards_give_no_gradient(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[0])
    model = AutoModelForCausalLM.from_pretrained(tiny_models[0])
    batch = completion_batch(tokenizer, ["q"] * 2, ["a", "b"])
    loss = grpo_batch_loss(model, batch, torch.ones(2), group_size=2)
    loss.backward()
    assert all(p.grad is None or float(p.grad.abs().max()) == 0.0 for p in model.parameters())


def test_a_set_is_hard_when_its_majority_is_wrong():
    method = AggLM(["callable:tests.scripted.oracle"] * 2, agg_model=0)
    example = {
        "id": "q",
        "task_type": "exact_match",
        "prompt": "What is 2 times 3?",
        "record": {"output": "6"},
    }
    method.scorer = Scorer.for_task("exact_match")
    assert method.majority_wrong(example, ["7", "7", "6"]) and not method.majority_wrong(
        example, ["6", "6", "7"]
    )
    assert method.majority_wrong(example, ["", ""])


def test_fit_then_test_on_tiny_models(run_cli, tiny_models):
    common = ["--model", "agglm", "--model.collaborators", collaborators_arg(tiny_models[:2])]
    common += ["--model.agg_model", tiny_models[2], "--model.max_new_tokens", "4", "--model.lora_r", "4"]
    common += ["--model.group_size", "2", "--data.benchmark", "quickstart"]
    _, fitted = run_cli("fit", *common, "--data.dev_limit", "3", "--data.batch_size", "3")
    rows = [json.loads(line) for line in (fitted.model.runtime.run_folder.path / "agglm_iter0.jsonl").open()]
    # random tiny models are always wrong: every one of the 3 x sample_size sets is hard and kept
    assert len(rows) == 6 and all(row["hard"] and row["agent"] == "aggregator" for row in rows)
    assert "Solution 2:" in rows[0]["prompt"]
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    _, tested = run_cli("test", *common, "--data.limit", "2", "--ckpt_path", checkpoint)
    records = [
        json.loads(line) for line in (tested.model.runtime.run_folder.path / "predictions.jsonl").open()
    ]
    assert len(records) == 2 and all(r["calls"] == 3 and r["answered_by"] == "tiny2" for r in records)


def test_recipe_parses(run_cli):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "-c", str(ROOT / "recipes/text/agglm.yaml"), "--print_config")
    assert exit_info.value.code == 0
