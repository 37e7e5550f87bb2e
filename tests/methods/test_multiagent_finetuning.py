"""multiagent_finetuning: SFT data holds only consensus-agreeing answers; fit then test on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from moco_lit.methods.text.multiagent_finetuning import MultiagentFinetuning
from tests.conftest import collaborators_arg

EXAMPLE = {"id": "q", "task_type": "exact_match", "prompt": "What is 2 times 3?", "record": {"answer": "6"}}


def test_only_answers_that_agree_with_the_consensus_become_training_data():
    method = MultiagentFinetuning(["callable:tests.scripted.oracle"] * 3, w=0.25)
    first = [["Final Answer: \\boxed{6}"], ["Final Answer: \\boxed{5}"], ["Final Answer: \\boxed{6}"]]
    final = [["Final Answer: \\boxed{6}"], ["Final Answer: \\boxed{6}"], ["Final Answer: \\boxed{7}"]]
    prompts = [[["p0"], ["p1"], ["p2"]], [["c0"], ["c1"], ["c2"]]]
    items = method.sft_items(EXAMPLE, [first, final], prompts, 0)
    by_agent = {item["agent"]: item for item in items}
    # consensus of the final round is 6: generation agents 0 and 2 said 6 first; agent 1 did not
    assert {"agent0", "agent2"} <= set(by_agent) and "agent1" not in by_agent
    # critic 0 kept a right answer (1 - w), critic 1 corrected a wrong one (w), critic 2 disagrees
    assert by_agent["critic0"]["weight"] == 0.75 and by_agent["critic1"]["weight"] == 0.25
    assert "critic2" not in by_agent
    assert all(method.answer_of(item["completion"], EXAMPLE) == "6" for item in items)
    assert by_agent["critic1"]["prompt"] == "c1" and by_agent["agent0"]["prompt"] == "p0"


def test_no_consensus_no_training_data():
    method = MultiagentFinetuning(["callable:tests.scripted.oracle"] * 2)
    assert method.sft_items(EXAMPLE, [[[""], [""]]], [[["p"], ["p"]]], 0) == []


def test_fit_then_test_on_tiny_models(run_cli, tiny_models):
    common = [
        "--model",
        "multiagent_finetuning",
        "--model.collaborators",
        collaborators_arg([tiny_models[0]] * 2),
    ]
    common += ["--model.max_new_tokens", "4", "--model.lora_r", "4", "--data.benchmark", "quickstart"]
    _, fitted = run_cli("fit", *common, "--data.dev_limit", "4", "--data.batch_size", "4")
    assert fitted.model.agents.layout == "shared_base" and len(fitted.model.agents.agents) == 4
    folder = fitted.model.runtime.run_folder.path
    assert (folder / "multiagent_finetuning_iter0.jsonl").exists()
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    saved = torch.load(checkpoint, weights_only=False)["state_dict"]
    agent_keys = [k for k in saved if k.startswith("agents.")]
    assert agent_keys and all("lora_" in k for k in agent_keys)
    _, tested = run_cli("test", *common, "--data.limit", "2", "--ckpt_path", checkpoint)
    path = Path(tested.model.runtime.run_folder.path) / "predictions.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    # two agents answer, then their two critics: four calls, two rounds in each record
    assert len(records) == 2 and all(
        r["calls"] == 4 and len(r["details"]["round_answers"]) == 2 for r in records
    )
