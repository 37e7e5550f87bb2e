"""GPU checks, each printing its figures or one ``SKIP <check>: <reason>`` line (``gpu_check.sh`` runs them).

- ``vllm``: the same greedy prompts through the engine's HF path and its vLLM backend: tokens/s of
  each, the ratio, and how many outputs are equal token for token;
- ``bandwidth``: a 0.5-1.5B model's greedy decode at batch 1 against the bound the device's memory
  bandwidth sets (every step reads every weight once: bound = measured copy bandwidth / weight bytes);
- ``zero2`` / ``zero3``: ``fit`` of ``trained_router`` (an encoder router on that model) under
  DeepSpeed ZeRO-2 / ZeRO-3 (``configs/trainer/deepspeed_zero*.yaml``): tokens/s through the
  model's embeddings (padding included) and peak GPU memory, measured by :class:`FitMeter`.

    python benchmarks/gpu_check.py --model /path/to/Qwen2.5-0.5B-Instruct            # every check
    python benchmarks/gpu_check.py --model ... --checks vllm bandwidth
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ("vllm", "bandwidth", "zero2", "zero3")
PROMPTS = [
    f"A shop sells {a} boxes of {b} pencils. How many pencils is that? Explain briefly."
    for a in range(2, 10)
    for b in range(3, 7)
]


def skip_reason(check: str, model: str | None) -> str | None:
    """Why ``check`` cannot run here, or None."""
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is false)"
    if not model:
        return "no model: pass --model or set GPU_CHECK_MODEL to a local 0.5-1.5B causal LM folder"
    needs = {"vllm": "vllm", "zero2": "deepspeed", "zero3": "deepspeed"}.get(check)
    if needs and importlib.util.find_spec(needs) is None:
        return f"{needs} is not installed"
    return None


def check_vllm(model: str, new_tokens: int) -> None:
    sys.path.insert(0, str(ROOT))
    from moco_lit.collaborators import load_collaborator
    from moco_lit.generation import DecodingConfig, GenerationEngine

    collaborator = load_collaborator(model, "cuda")
    decoding = DecodingConfig(max_new_tokens=new_tokens)
    rates, texts = {}, {}
    for backend in ("hf", "vllm"):
        engine = GenerationEngine(batch_size=len(PROMPTS), progress=False, backend=backend)
        engine.generate(collaborator, PROMPTS[:2], DecodingConfig(max_new_tokens=4))  # warm-up, load
        torch.cuda.synchronize()
        started = time.perf_counter()
        outputs = engine.generate(collaborator, PROMPTS, decoding)
        torch.cuda.synchronize()
        rates[backend] = sum(o.new_tokens for o in outputs) / (time.perf_counter() - started)
        texts[backend] = [o.raw_text for o in outputs]
    equal = sum(a == b for a, b in zip(texts["hf"], texts["vllm"]))
    print(
        f"vllm: {len(PROMPTS)} prompts, {new_tokens} new tokens, greedy: HF {rates['hf']:.0f} tokens/s, "
        f"vLLM {rates['vllm']:.0f} tokens/s ({rates['vllm'] / rates['hf']:.1f}x); "
        f"outputs equal {equal}/{len(PROMPTS)}"
    )


def copy_bandwidth(gib: float = 1.0, repeats: int = 10) -> float:
    """Bytes/s of a device-to-device copy (each byte read once and written once)."""
    source = torch.empty(int(gib * 2**30), dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    target.copy_(source)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    torch.cuda.synchronize()
    return 2 * source.numel() * repeats / (time.perf_counter() - started)


def check_bandwidth(model: str, new_tokens: int) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16).to("cuda").eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in lm.parameters())
    bandwidth = copy_bandwidth()
    ids = tokenizer(PROMPTS[0], return_tensors="pt").to("cuda")
    options = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    with torch.inference_mode():
        lm.generate(**ids, **{**options, "max_new_tokens": 8, "min_new_tokens": 8})  # warm-up
        torch.cuda.synchronize()
        started = time.perf_counter()
        lm.generate(**ids, **options)
        torch.cuda.synchronize()
    rate = new_tokens / (time.perf_counter() - started)
    bound = bandwidth / weight_bytes
    print(
        f"bandwidth: {weight_bytes / 1e9:.2f} GB of bf16 weights, copy bandwidth {bandwidth / 1e9:.0f} GB/s "
        f"-> bound {bound:.0f} tokens/s at batch 1; HF generate {rate:.0f} tokens/s = {rate / bound:.0%} of it"
    )


class FitMeter(L.Callback):
    """Tokens through the module's embeddings (padding included) per second of training, and peak
    GPU memory, written as JSON to ``$GPU_CHECK_METER`` when ``fit`` ends (rank 0)."""

    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0
        self._started = 0.0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        torch.cuda.reset_peak_memory_stats()
        for layer in module.modules():
            if isinstance(layer, torch.nn.Embedding):
                layer.register_forward_pre_hook(self._count)

    def _count(self, layer: torch.nn.Module, inputs: tuple) -> None:
        if layer.training:  # training steps only, not the dev evaluation
            self.tokens += inputs[0].numel()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        torch.cuda.synchronize()
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self._started

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.global_rank == 0 and os.environ.get("GPU_CHECK_METER"):
            report = {
                "tokens": self.tokens,
                "seconds": self.seconds,
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            }
            Path(os.environ["GPU_CHECK_METER"]).write_text(json.dumps(report))


def check_zero(stage: int, model: str, timeout_s: int) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import collaborators_arg

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        meter = Path(scratch) / "meter.json"
        command = [
            sys.executable, "-m", "moco_lit", "fit", "-c", str(ROOT / f"configs/trainer/deepspeed_zero{stage}.yaml"),
            "--model", "trained_router", "--model.router", "encoder", "--model.router_base_model", model,
            "--model.collaborators",
            collaborators_arg(["callable:tests.scripted.multiplier", "callable:tests.scripted.reverser"]),
            "--data.benchmark", "quickstart", "--data.dev_limit", "64", "--data.batch_size", "16",
            "--trainer.max_epochs", "2", "--trainer.callbacks+=gpu_check.FitMeter",
            "--run_dir", str(Path(scratch) / "runs"), "--wandb", "false", "--progress", "false",
            "--trainer.enable_progress_bar", "false",
        ]  # fmt: skip
        env = {
            **os.environ,
            "GPU_CHECK_METER": str(meter),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]),
            "WANDB_MODE": "disabled",
        }
        started = time.perf_counter()
        result = subprocess.run(
            command, env=env, cwd=scratch, capture_output=True, text=True, timeout=timeout_s
        )
        wall = time.perf_counter() - started
        if result.returncode != 0 or not meter.is_file():
            print(
                f"zero{stage}: FAILED (exit {result.returncode}) after {wall:.0f} s\n{result.stderr[-2000:]}"
            )
            raise SystemExit(1)
        report = json.loads(meter.read_text())
        rate = report["tokens"] / max(report["seconds"], 1e-9)
        print(
            f"zero{stage}: trained_router fit on {Path(model).name}: {rate:.0f} tokens/s in training steps, "
            f"peak GPU memory {report['peak_gib']:.2f} GiB (rank 0), {wall:.0f} s in all"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("GPU_CHECK_MODEL"))
    parser.add_argument("--checks", nargs="+", choices=CHECKS, default=list(CHECKS))
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--fit_timeout_s", type=int, default=150)
    args = parser.parse_args()
    failed = False
    for check in args.checks:
        reason = skip_reason(check, args.model)
        if reason:
            print(f"SKIP {check}: {reason}", flush=True)
            continue
        try:
            if check == "vllm":
                check_vllm(args.model, args.new_tokens)
            elif check == "bandwidth":
                check_bandwidth(args.model, 4 * args.new_tokens)
            else:
                check_zero(int(check[-1]), args.model, args.fit_timeout_s)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - one failed check does not stop the others
            failed = True
            print(f"{check}: FAILED ({type(error).__name__}: {error})", flush=True)
        sys.stdout.flush()
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
