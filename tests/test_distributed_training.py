"""Distributed training: a simulated 2-node run equals a 1-process run; every trained method fits
under 2-process DDP with ranks that agree; ZeRO-2/3 on a GPU.

The 2-node run starts two processes on loopback the way a cluster launcher does (one per node,
``NODE_RANK`` 0 and 1, ``LOCAL_RANK`` 0, a shared ``MASTER_ADDR``/``MASTER_PORT``), each with
``--trainer.num_nodes 2 --trainer.devices 1``. With per-rank batches of 4 its effective batch is 8,
the 1-process run's batch, over the same examples in the same order, so the trained router heads
must agree to float tolerance.

The trained methods (several adapters, duels, ratings, preference pairs) fit with ``--trainer.devices
2`` on gloo over 5 dev questions in batches of 1 (3 + 2 over the ranks, so ranks also see different
agents idle in a step). :class:`RankState` saves what each rank ends ``fit`` with; both ranks must
hold the same weights, buffers and iteration state, the checkpoint exactly that, and ``test
--ckpt_path`` must run on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from tests.conftest import ROOT, collaborators_arg, free_port, run_records

RANK_STATE = "MOCO_TEST_RANK_STATE"

SPECIALISTS = collaborators_arg(["callable:tests.scripted.multiplier", "callable:tests.scripted.reverser"])


def _router_fit(tiny_model: str, run_dir: Path, batch_size: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "moco_lit", "fit", "--model", "trained_router",
        "--model.collaborators", SPECIALISTS, "--model.router", "encoder",
        "--model.router_base_model", tiny_model, "--data.benchmark", "quickstart",
        "--data.dev_limit", "16", "--data.batch_size", str(batch_size), "--trainer.max_epochs", "3",
        "--trainer.accelerator", "cpu", "--run_dir", str(run_dir), "--wandb", "false",
        "--progress", "false", "--trainer.enable_progress_bar", "false", *extra,
    ]  # fmt: skip


def _head(run_dir: Path) -> dict[str, torch.Tensor]:
    (checkpoint,) = run_dir.rglob("last.ckpt")
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if "ddp_anchor" not in k and v.is_floating_point()}


@pytest.mark.slow
def test_simulated_two_node_fit_equals_one_process(tmp_path, tiny_models):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        _router_fit(tiny_models[0], tmp_path / "single", 8, []),
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    port = str(free_port())
    nodes = [
        subprocess.Popen(
            _router_fit(tiny_models[0], tmp_path / "nodes", 4, ["--trainer.strategy", "ddp",
                        "--trainer.num_nodes", "2", "--trainer.devices", "1"]),
            env={**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "NODE_RANK": str(rank),
                 "LOCAL_RANK": "0", "WORLD_SIZE": "2"},
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]  # fmt: skip
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    single_head, node_head = _head(tmp_path / "single"), _head(tmp_path / "nodes")
    assert single_head.keys() == node_head.keys() and single_head
    for name, value in single_head.items():
        torch.testing.assert_close(node_head[name], value, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="DeepSpeed runs on CUDA")
@pytest.mark.parametrize("preset", ["deepspeed_zero2", "deepspeed_zero3"])
def test_router_fit_under_deepspeed(preset, tmp_path, tiny_models):
    pytest.importorskip("deepspeed")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    command = _router_fit(
        tiny_models[0], tmp_path / "runs", 8, ["-c", str(ROOT / "configs/trainer" / f"{preset}.yaml")]
    )
    command[command.index("--trainer.accelerator") + 1] = "gpu"
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "runs").rglob("*.ckpt"))


# -- every trained method under 2-process DDP ----------------------------------------------------


class RankState(L.Callback):
    """Saves, per rank, what ``fit`` ended with to ``$MOCO_TEST_RANK_STATE/rank<r>.pt``."""

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        trained = {name for name, p in module.named_parameters() if p.requires_grad}
        if getattr(module, "agents", None) is not None:
            trained |= module.agents.trainable_keys("agents.")
        trained.discard("ddp_anchor")
        state = {
            "weights": {k: v.detach().cpu() for k, v in module.state_dict().items() if k in trained},
            "buffers": {name: b.detach().cpu() for name, b in module.named_buffers(recurse=False)},
            "attributes": module.iteration_state()["attributes"]
            if hasattr(module, "iteration_state")
            else {},
            "dev_labels": list(module.dev_labels),
        }
        torch.save(state, Path(os.environ[RANK_STATE]) / f"rank{trainer.global_rank}.pt")


def _teacher_run(folder: Path) -> str:
    """A teacher's predictions.jsonl on the quickstart dev questions (its text: a fixed answer)."""
    from moco_lit.data.datamodule import BenchmarkDataModule

    examples = BenchmarkDataModule("quickstart", dev_limit=5).examples("dev")
    folder.mkdir(parents=True)
    lines = [json.dumps({"id": e["id"], "output": "Final Answer: \\boxed{42}"}) for e in examples]
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder)


SAGE = "callable:tests.methods.test_sparta.sage"
LORA = ["--model.max_new_tokens", "4", "--model.lora_r", "4", "--model.lora_dropout", "0"]

# method -> its model arguments, given the tiny models and a scratch folder
TRAINED_METHODS: dict[str, Callable[[list[str], Path], list[str]]] = {
    "sparta": lambda tiny, _: [
        "--model.collaborators", collaborators_arg([tiny[0], tiny[1], SAGE]), *LORA,
        "--model.num_iterations", "2", "--model.temperature", "1.0", "--model.learning_rate", "0.01",
    ],
    "stackelberg": lambda tiny, _: [
        "--model.collaborators", collaborators_arg([tiny[0], tiny[1], SAGE]), *LORA,
        "--model.num_iterations", "2", "--model.leader_type", "contested", "--model.temperature", "1.0",
        # every dev instruction duels: the two the leader keeps by default both tie on these models
        "--model.leader_fraction", "1.0",
    ],
    # every rank samples and judges its questions' rows; the reward rows are gathered before rating
    "stackelberg-grpo": lambda tiny, _: [
        "--model.collaborators", collaborators_arg([tiny[0], tiny[1], SAGE]), *LORA,
        "--model.num_iterations", "2", "--model.training_algorithm", "grpo",
        "--model.grpo_num_generations", "2", "--model.grpo_max_completion_length", "4",
        "--model.judge_max_new_tokens", "4", "--model.grpo_temperature", "1.0",
        "--model.grpo_learning_rate", "0.01",
    ],
    # two agents and two critics: four adapters on one shared base, most idle in a step
    "multiagent_finetuning": lambda tiny, _: [
        "--model.collaborators", collaborators_arg([tiny[0], tiny[0]]), *LORA,
        "--model.temperature", "1.0",
    ],
    "agglm": lambda tiny, _: [
        "--model.collaborators", collaborators_arg(tiny[:2]), "--model.agg_model", tiny[2], *LORA,
        "--model.group_size", "2",
    ],
    # a trained ranker and fuser: two adapters on one base
    "llm_blender": lambda tiny, _: [
        "--model.collaborators", collaborators_arg(["callable:tests.scripted.oracle",
                                                    "callable:tests.scripted.wrong"]),
        "--model.ranker", tiny[0], "--model.fuser", tiny[0], "--model.top_k", "2", *LORA,
        "--model.train_ranker_on_dev", "true", "--model.train_fuser_on_dev", "true",
        "--model.ranker_max_new_tokens", "2", "--model.learning_rate", "0.01",
    ],
    "distillation": lambda tiny, scratch: [
        "--model.collaborators", collaborators_arg([tiny[0], tiny[0]]), *LORA,
        "--model.teacher_run", _teacher_run(scratch / "teacher"), "--model.learning_rate", "0.01",
    ],
    "graph_routing": lambda tiny, _: [
        "--model.collaborators", collaborators_arg(["callable:tests.scripted.multiplier",
                                                    "callable:tests.scripted.reverser"]),
        "--model.embedding_model", tiny[0], "--model.train_epochs", "4", "--model.masks_per_step", "2",
    ],
}  # fmt: skip


def _assert_same(first: Any, second: Any, where: str) -> None:
    if isinstance(first, torch.Tensor):
        # bit-equal, a NaN (e.g. a dev score never measured) matching a NaN in the same place
        same = torch.equal(first, second) or (
            first.is_floating_point()
            and first.shape == second.shape
            and bool(torch.isclose(first, second, rtol=0, atol=0, equal_nan=True).all())
        )
        assert same, where
    elif isinstance(first, dict):
        assert first.keys() == second.keys(), where
        for key in first:
            _assert_same(first[key], second[key], f"{where}.{key}")
    else:
        assert first == second, where


@pytest.mark.slow
@pytest.mark.parametrize("method", list(TRAINED_METHODS))
def test_two_process_fit_of_a_trained_method_agrees_across_ranks_and_tests(
    method, tmp_path, tiny_models, run_cli
):
    # a key past the method's name ("stackelberg-grpo") is one of its variants
    model_args = ["--model", method.split("-")[0], *TRAINED_METHODS[method](tiny_models, tmp_path)]
    data_args = ["--data.benchmark", "quickstart"]
    states = tmp_path / "states"
    states.mkdir()
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), RANK_STATE: str(states),
    }  # fmt: skip
    command = [sys.executable, "-m", "moco_lit", "fit", *model_args, *data_args]
    command += ["--data.dev_limit", "5", "--data.batch_size", "1", "--trainer.accelerator", "cpu"]
    command += ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    command += ["--trainer.callbacks+=tests.test_distributed_training.RankState"]
    command += ["--run_dir", str(tmp_path / "runs"), "--wandb", "false", "--progress", "false"]
    command += ["--trainer.enable_progress_bar", "false"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0, rank1 = (torch.load(states / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    _assert_same(rank0, rank1, "rank 0 vs rank 1")
    assert rank0["weights"] and bool(rank0["buffers"]["trained"])
    # the adapters learnt (LoRA B starts at zero); agglm's random tiny aggregator is never right,
    # so its GRPO advantages (and gradients) are all zero
    if method not in ("graph_routing", "agglm"):
        assert any(v.abs().sum() > 0 for k, v in rank0["weights"].items() if "lora_B" in k)
    (checkpoint,) = (tmp_path / "runs").rglob("last.ckpt")
    saved = torch.load(checkpoint, weights_only=False)
    _assert_same(rank0["weights"], {k: saved["state_dict"][k] for k in rank0["weights"]}, "checkpoint")
    _assert_same(rank0["buffers"], {k: saved["state_dict"][k] for k in rank0["buffers"]}, "checkpoint")
    _assert_same(rank0["attributes"], saved.get("iteration_attributes", {}), "checkpoint")
    assert saved["global_step"] > 0
    if method == "agglm":  # as in MoCo, fit asks for the sampled answer sets only: no dev table
        assert "dev_table" not in saved and rank0["dev_labels"] == []
        assert torch.isnan(rank0["buffers"]["dev_scores"]).all()
    else:
        assert saved["dev_table"]["labels"] == rank0["dev_labels"]

    _, tested = run_cli("test", *model_args, *data_args, "--data.limit", "2", "--ckpt_path", str(checkpoint))
    assert bool(tested.model.trained) and len(run_records(tested)) == 2
    _assert_same(rank0["buffers"]["dev_scores"], tested.model.dev_scores.cpu(), "tested dev scores")
