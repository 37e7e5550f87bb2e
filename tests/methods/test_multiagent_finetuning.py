"""multiagent_finetuning: SFT data holds only consensus-agreeing answers; fit then test on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from moco_lit.methods.text.multiagent_finetuning import MultiagentFinetuning
from tests.conftest import collaborators_arg

EXAMPLE = {"id": "q", "task_type": "exact_match", "prompt": "What is 2 times 3?", "record": {"answer": "6"}}


def collected(method, first, final):
    """Each agent's generation, corrected and kept critic data for one question."""
    count = len(first)
    generation, corrected, kept = ([[] for _ in range(count)] for _ in range(3))
    prompts = [[[f"p{m}"] for m in range(count)], [[f"c{m}"] for m in range(count)]]
    method.collect(EXAMPLE, [first, final], prompts, 0, generation, corrected, kept)
    return generation, corrected, kept


def test_only_answers_that_agree_with_the_consensus_become_training_data():
    method = MultiagentFinetuning(["callable:tests.scripted.oracle"] * 3)
    first = [["\\boxed{6} first"], ["\\boxed{5}"], ["\\boxed{6} again"]]
    final = [["\\boxed{6} b"], ["  \\boxed{6} a "], ["\\boxed{7}"]]
    generation, corrected, kept = collected(method, first, final)
    # consensus of the final round is 6: generation agents 0 and 2 said 6 first; agent 1 did not
    assert [[x["completion"] for x in g] for g in generation] == [
        ["\\boxed{6} first"],
        [],
        ["\\boxed{6} again"],
    ]
    assert generation[0][0]["prompt"] == "p0"
    # critic 0 kept a right answer, critic 1 corrected a wrong one, critic 2 disagrees
    assert [len(x) for x in kept] == [1, 0, 0] and [len(x) for x in corrected] == [0, 1, 0]
    # both learn the shared consensus text (the smallest of the tied agreeing texts), after their history
    assert kept[0][0]["completion"] == corrected[1][0]["completion"] == "\\boxed{6} a"
    assert "Round 1: \\boxed{5}\nRound 2: \\boxed{6} a" in corrected[1][0]["prompt"]
    assert EXAMPLE["prompt"] in corrected[1][0]["prompt"]


def test_the_vote_breaks_ties_by_the_smallest_answer():
    method = MultiagentFinetuning(["callable:tests.scripted.oracle"] * 2)
    assert method.consensus(EXAMPLE, ["\\boxed{7}", "\\boxed{6}"]) == ("6", "\\boxed{6}")
    assert method.consensus(EXAMPLE, ["", " "]) == (None, "")


def test_no_consensus_no_training_data():
    method = MultiagentFinetuning(["callable:tests.scripted.oracle"] * 2)
    assert collected(method, [[""], [""]], [[""], [""]]) == ([[], []], [[], []], [[], []])


def critic_data(critic_data: str, w: float, corrected: int, kept: int) -> list[dict]:
    method = MultiagentFinetuning(["callable:tests.scripted.oracle"] * 2, w=w, critic_data=critic_data)
    items = lambda kind, n: [{"id": f"{kind}{i}", "agent": "critic0"} for i in range(n)]  # noqa: E731
    return method.critic_items(0, 0, items("c", corrected), items("k", kept))


def test_critics_train_on_a_drawn_share_of_corrected_and_kept_answers():
    chosen = critic_data("subsample", 0.25, corrected=4, kept=6)
    # int(4 * 0.25) = 1 corrected and int(6 * 0.75) = 4 kept, each at least one, none repeated
    ids = [x["id"] for x in chosen]
    assert len(ids) == 5 and len(set(ids)) == 5 and ids[0].startswith("c")
    assert all(x["weight"] == 1.0 for x in chosen)
    assert len(critic_data("subsample", 0.1, corrected=3, kept=2)) == 1 + 1  # max(1, int(0.3)) = 1
    assert [x["id"][0] for x in critic_data("subsample", 1.0, corrected=2, kept=3)] == ["c", "c"]
    # the same seed draws the same data
    assert chosen == critic_data("subsample", 0.25, corrected=4, kept=6)


def test_critic_data_weight_keeps_everything_and_weights_the_loss():
    chosen = critic_data("weight", 0.25, corrected=2, kept=3)
    assert [(x["id"], x["weight"]) for x in chosen] == [
        ("c0", 0.25), ("c1", 0.25), ("k0", 0.75), ("k1", 0.75), ("k2", 0.75)
    ]  # fmt: skip
    assert [x["id"] for x in critic_data("weight", 1.0, corrected=1, kept=2)] == ["c0"]


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
    # no dev table: the debate's first round (each base model alone) gives the dev scores
    assert not fitted.model.dev_scores.isnan().any()
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
