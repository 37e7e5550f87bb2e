"""Distributed training: a simulated 2-node run equals a 1-process run; ZeRO-2/3 on a GPU.

The 2-node run starts two processes on loopback the way a cluster launcher does (one per node,
``NODE_RANK`` 0 and 1, ``LOCAL_RANK`` 0, a shared ``MASTER_ADDR``/``MASTER_PORT``), each with
``--trainer.num_nodes 2 --trainer.devices 1``. With per-rank batches of 4 its effective batch is 8,
the 1-process run's batch, over the same examples in the same order, so the trained router heads
must agree to float tolerance.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, collaborators_arg, free_port

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
    (checkpoint,) = run_dir.rglob("*.ckpt")
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
