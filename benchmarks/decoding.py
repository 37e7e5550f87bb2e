"""Logit fusion decoding: moco_lit's joint engine against MoCo's LogitArithmetic and a plain loop.

Three tiny random Llamas sharing one tokenizer (the quickstart's size, 512 positions), a batch of 8
quickstart prompts of different lengths (left padding), 256 new tokens decoded greedily from the
average of the three models' logits, end-of-sequence ignored so every run decodes every token:

* moco_lit: ``moco_lit.decoding`` — one KV cache per model, one new token per row and model a step.
* MoCo: ``LogitArithmetic.generate`` from modelco 1.1.2 (imported from its source file, run on CPU
  in this process, with these models): every step re-runs the whole sequence through every model.
* plain: the same recompute-everything loop written out with correct position ids.

Prints tokens/s for each and the speed-ups, and how many rows agree token for token with the
plain loop (MoCo passes no position ids, so its left-padded rows see shifted positions).

    python benchmarks/decoding.py                 # CPU
    python benchmarks/decoding.py --device cuda
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import string
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from moco_lit.collaborators import Collaborator, CollaboratorSpec  # noqa: E402
from moco_lit.decoding import JointDecoder, average  # noqa: E402
from moco_lit.generation import DecodingConfig  # noqa: E402

MOCO_FILE = Path("/tmp/moco/modelco-1.1.2/model_collaboration/utils/logit_arithmetic.py")


def build_models(device: str) -> list[Collaborator]:
    from moco_lit.quickstart import TinyModelConfig, build_tiny_llama, build_tokenizer, prompt_wording_corpus

    tokenizer = build_tokenizer(prompt_wording_corpus() + list(string.printable), vocab_size=400)
    config = TinyModelConfig(max_positions=512)
    collaborators = []
    for seed in range(3):
        model = build_tiny_llama(tokenizer, config, seed=seed).to(device).eval()
        spec = CollaboratorSpec(path=f"tiny{seed}")
        collaborators.append(Collaborator(f"tiny{seed}", spec, tokenizer, model, fingerprint=f"bench{seed}"))
    return collaborators


def quickstart_prompts(count: int) -> list[str]:
    questions = [
        "What is 3 times 4?",
        "Reverse the letters abc.",
        "Which letter comes after q?",
        "What is 7 times 8? Answer with the number only.",
        "Reverse the letters moco.",
        "Which letter comes after b? Think step by step.",
        "What is 2 times 9?",
        "Reverse the letters lightning please.",
    ]
    return [questions[i % len(questions)] for i in range(count)]


def run_moco_lit(collaborators: list[Collaborator], texts: list[str], new_tokens: int) -> list[list[int]]:
    session = JointDecoder(collaborators, DecodingConfig(max_new_tokens=new_tokens)).open(texts)
    for stream in session.streams:
        stream.eos_ids = set()
    rule = average()
    while not session.finished():
        session.fuse_step(rule)
    return [session.streams[0].generated(row) for row in range(len(texts))]


def _inputs(collaborators: list[Collaborator], texts: list[str], device: str) -> dict:
    tokenizer = collaborators[0].tokenizer
    rendered = [collaborators[0].render(t) for t in texts]
    return tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(device)


@torch.inference_mode()
def run_plain(
    collaborators: list[Collaborator], texts: list[str], new_tokens: int, device: str
) -> list[list[int]]:
    inputs = _inputs(collaborators, texts, device)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    start = ids.shape[1]
    for _ in range(new_tokens):
        positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
        logits = [
            c.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
            for c in collaborators
        ]
        token = torch.stack(logits).mean(dim=0).argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, token], dim=1)
        mask = torch.cat([mask, torch.ones_like(token)], dim=1)
    return ids[:, start:].tolist()


def load_moco() -> types.ModuleType | None:
    if not MOCO_FILE.exists():
        return None
    spec = importlib.util.spec_from_file_location("moco_logit_arithmetic", MOCO_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.inference_mode()
def run_moco(module, collaborators: list[Collaborator], texts: list[str], new_tokens: int, device: str):
    # LogitArithmetic loads its models by name in bfloat16; hand it these float32 models instead
    arithmetic = object.__new__(module.LogitArithmetic)
    arithmetic.models = [c.model for c in collaborators]
    arithmetic.model_devices = [device] * len(collaborators)
    pad = collaborators[0].tokenizer.pad_token_id
    arithmetic.tokenizer = types.SimpleNamespace(eos_token_id=-1, pad_token_id=pad)  # never stops early
    inputs = _inputs(collaborators, texts, device)
    out = arithmetic.generate(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        max_new_tokens=new_tokens,
        do_sample=False,
    )
    return out[:, inputs["input_ids"].shape[1] :].tolist()


def timed(label: str, run, new_tokens: int, batch: int) -> tuple[float, list[list[int]]]:
    started = time.perf_counter()
    rows = run()
    seconds = time.perf_counter() - started
    assert all(len(row) == new_tokens for row in rows), label
    print(f"{label:10s} {seconds:8.2f} s  {batch * new_tokens / seconds:9.1f} tokens/s", flush=True)
    return seconds, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    collaborators = build_models(args.device)
    texts = quickstart_prompts(args.batch)
    n, b = args.new_tokens, args.batch
    print(f"3 tiny Llamas, batch {b}, {n} new tokens, {args.device}, torch threads {torch.get_num_threads()}")
    run_moco_lit(collaborators, texts[:2], 4)  # warm-up
    ours, our_rows = timed("moco_lit", lambda: run_moco_lit(collaborators, texts, n), n, b)
    plain, plain_rows = timed("plain", lambda: run_plain(collaborators, texts, n, args.device), n, b)
    module = load_moco()
    if module is None:
        print(f"MoCo: {MOCO_FILE} not found (pip download --no-deps modelco==1.1.2 and unpack it)")
    else:
        moco, moco_rows = timed("MoCo", lambda: run_moco(module, collaborators, texts, n, args.device), n, b)
        print(f"speed-up over MoCo's LogitArithmetic: {moco / ours:.1f}x")
        agree = sum(a == p for a, p in zip(moco_rows, plain_rows))
        print(f"MoCo rows equal to the plain loop: {agree}/{b}")
    print(f"speed-up over the plain recompute loop: {plain / ours:.1f}x")
    print(f"moco_lit rows equal to the plain loop: {sum(a == p for a, p in zip(our_rows, plain_rows))}/{b}")


if __name__ == "__main__":
    sys.exit(main())
