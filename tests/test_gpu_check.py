"""benchmarks/gpu_check.sh: valid shell, and on a machine without what a check needs, one SKIP line
per check and exit 0 (the checks themselves run on a CUDA machine)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _helper():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_is_valid_shell():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or __import__("torch").cuda.is_available(),
    reason="the skip path is for machines without CUDA",
)
def test_without_cuda_every_check_says_skip_and_it_exits_0(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_MODEL": str(tmp_path)}
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIP ")]
    assert [line.split(":")[0] for line in skips] == [
        "SKIP vllm",
        "SKIP bandwidth",
        "SKIP zero2",
        "SKIP zero3",
    ]
    assert all("no CUDA device" in line for line in skips)


def test_with_cuda_a_missing_model_or_package_is_a_skip_too(monkeypatch):
    helper = _helper()
    monkeypatch.setattr(helper.torch.cuda, "is_available", lambda: True)
    assert "GPU_CHECK_MODEL" in helper.skip_reason("bandwidth", None)
    monkeypatch.setattr(helper.importlib.util, "find_spec", lambda name: None)
    assert helper.skip_reason("vllm", "/m") == "vllm is not installed"
    assert helper.skip_reason("zero3", "/m") == "deepspeed is not installed"
    assert helper.skip_reason("bandwidth", "/m") is None
