"""What each way of running a real model gives on this CPU: new tokens/s and agreement with today's path.

SmolLM2-135M-Instruct (``python -m moco_lit models fetch smollm2-135m-instruct``) answers the same
quickstart-style prompts greedily at one batch size through moco_lit's ``GenerationEngine`` (cache
off), once per option, in one process, so the ratios compare runs made minutes apart:

- ``fp32``: today's path (float32 weights, ``model.generate`` with a dynamic KV cache);
- ``bf16 weights``: the model cast to bfloat16 (AVX512-BF16 kernels where torch has them);
- ``fp32 + bf16 autocast``: float32 weights, matrix products in bfloat16 under ``torch.autocast``;
- ``fp32, 1 thread`` / ``fp32, all threads``: the thread count alone;
- ``int8 dynamic``: ``torch.ao.quantization.quantize_dynamic`` on the Linear layers (int8 weights,
  VNNI kernels), when this torch build has it;
- with ``--compile``: ``model.generate`` with a static KV cache, alone and with the forward pass
  compiled by ``torch.compile`` (its second run; the first, which compiles, is timed apart).

For each option the script prints tokens/s, the ratio to ``fp32`` and how many of the outputs equal
``fp32``'s token for token (greedy decoding: a different kernel may flip a near-tie and change an
answer from there on). Nothing here changes the engine: it measures before choosing.

    python benchmarks/engine_options.py --prompts 16 --max_new_tokens 64
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from moco_lit.collaborators import Collaborator, load_collaborator  # noqa: E402
from moco_lit.generation import DecodingConfig, GenerationEngine  # noqa: E402


def prompts(count: int) -> list[str]:
    """Short questions of varied length, as a benchmark's batch carries some padding."""
    out = []
    for i in range(count):
        a, b = i % 9 + 2, (i * 7) % 9 + 3
        extra = " Explain your reasoning briefly before the answer." * (i % 3)
        out.append(f"A shop sells {a} boxes of {b} pencils. How many pencils is that?{extra}")
    return out


def run(collaborator: Collaborator, texts: list[str], batch: int, new: int, context=None) -> tuple:
    engine = GenerationEngine(cache=None, batch_size=batch, progress=False)
    decoding = DecodingConfig(max_new_tokens=new)
    with context or contextlib.nullcontext():
        engine.generate(collaborator, texts[:2], DecodingConfig(max_new_tokens=4))  # warm-up
        started = time.perf_counter()
        outputs = engine.generate(collaborator, texts, decoding)
        seconds = time.perf_counter() - started
    tokens = sum(o.new_tokens for o in outputs)
    return tokens / seconds, [o.raw_text for o in outputs], tokens, seconds


def direct(collaborator: Collaborator, texts: list[str], new: int) -> tuple:
    """``model.generate`` on one left-padded batch with a static KV cache (the engine's batch of
    the same prompts, greedy), decoded as the engine decodes."""
    tokenizer = collaborator.tokenizer
    rendered = [collaborator.render(t) for t in texts]
    inputs = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    started = time.perf_counter()
    with torch.inference_mode():
        out = collaborator.model.generate(
            **inputs, max_new_tokens=new, do_sample=False, pad_token_id=tokenizer.pad_token_id,
            cache_implementation="static",
        )  # fmt: skip
    seconds = time.perf_counter() - started
    rows = out[:, inputs["input_ids"].shape[1] :].tolist()
    eos = tokenizer.eos_token_id
    rows = [row[: row.index(eos)] if eos in row else row for row in rows]
    tokens = sum(len(row) for row in rows)
    return (
        tokens / seconds,
        [tokenizer.decode(row, skip_special_tokens=True) for row in rows],
        tokens,
        seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="also a static cache with torch.compile")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    texts = prompts(args.prompts)
    base = load_collaborator(args.model, "cpu")
    results: dict[str, tuple] = {}

    def measure(label: str, collaborator: Collaborator, context=None, threads: int = cores) -> None:
        torch.set_num_threads(threads)
        results[label] = run(collaborator, texts, args.batch, args.max_new_tokens, context)
        rate, _, tokens, seconds = results[label]
        print(f"  {label}: {rate:.1f} tokens/s ({tokens} tokens in {seconds:.1f} s)", flush=True)

    print(f"{args.model}, {len(texts)} prompts, batch {args.batch}, {args.max_new_tokens} new tokens, greedy")
    measure("fp32", base)
    measure("fp32, 1 thread", base, threads=1)
    measure("fp32 + bf16 autocast", base, torch.autocast("cpu", dtype=torch.bfloat16))
    bf16 = Collaborator(
        name=base.name + "-bf16",
        spec=base.spec,
        tokenizer=base.tokenizer,
        model=base.model.__class__.from_pretrained(base.model.name_or_path, dtype=torch.bfloat16).eval(),
        fingerprint=base.fingerprint + "-bf16",
    )
    measure("bf16 weights", bf16)
    try:
        from torch.ao.quantization import quantize_dynamic

        int8_model = quantize_dynamic(
            base.model.__class__.from_pretrained(base.model.name_or_path, dtype=torch.float32).eval(),
            {torch.nn.Linear},
            dtype=torch.qint8,
        )
        int8 = Collaborator(
            name=base.name + "-int8",
            spec=base.spec,
            tokenizer=base.tokenizer,
            model=int8_model,
            fingerprint=base.fingerprint + "-int8",
        )
        measure("int8 dynamic", int8)
    except Exception as error:  # noqa: BLE001 - an option this build lacks is reported, not fatal
        print(f"  int8 dynamic: not measured ({type(error).__name__}: {error})")

    if args.compile:
        torch.set_num_threads(cores)
        fresh = base.model.__class__.from_pretrained(base.model.name_or_path, dtype=torch.float32).eval()
        static = Collaborator(
            name=base.name,
            spec=base.spec,
            tokenizer=base.tokenizer,
            model=fresh,
            fingerprint=base.fingerprint,
        )
        results["fp32, static cache"] = direct(static, texts, args.max_new_tokens)
        print(f"  fp32, static cache: {results['fp32, static cache'][0]:.1f} tokens/s", flush=True)
        fresh.forward = torch.compile(fresh.forward, dynamic=False)
        started = time.perf_counter()
        direct(static, texts, args.max_new_tokens)
        print(f"  torch.compile: first run (compiling) {time.perf_counter() - started:.0f} s", flush=True)
        results["fp32, static cache + torch.compile"] = direct(static, texts, args.max_new_tokens)
        print(
            f"  fp32, static cache + torch.compile: {results['fp32, static cache + torch.compile'][0]:.1f} tokens/s"
        )

    reference_rate, reference_texts = results["fp32"][0], results["fp32"][1]
    print()
    print("| option | tokens/s | vs fp32 | outputs equal to fp32 |")
    print("|---|---:|---:|---:|")
    for label, (rate, texts_out, _, _) in results.items():
        same = sum(a == b for a, b in zip(texts_out, reference_texts, strict=True))
        print(f"| {label} | {rate:.1f} | {rate / reference_rate:.2f}x | {same}/{len(reference_texts)} |")


if __name__ == "__main__":
    main()
