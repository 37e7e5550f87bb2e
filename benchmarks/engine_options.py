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
  compiled by ``torch.compile`` (its second run; the first, which compiles, is timed apart);
- ``fp32, rows leave``: the engine's own token loop, in which a row that has ended leaves the
  batch (``GenerationEngine(finished_rows_leave=True)``), at every ``--batches`` size, as is ``fp32``;
- ``llama.cpp``: the GGUF file the model was converted from, on llama.cpp (``--generation_backend
  llama_cpp``, needs llama-cpp-python), at batch 1 and at every ``--batches`` size.

``--options`` picks rows (default: all). Agreement is counted against ``fp32`` at ``--batch``.

For each option the script prints tokens/s, the ratio to ``fp32`` and how many of the outputs equal
``fp32``'s token for token (greedy decoding: a different kernel may flip a near-tie and change an
answer from there on). Nothing here changes the engine: it measures before choosing.

    python benchmarks/engine_options.py --prompts 16 --max_new_tokens 64
    python benchmarks/engine_options.py --prompts 64 --batches 16 32 64 --options fp32 rows_leave llama_cpp
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


def run(collaborator: Collaborator, texts: list[str], batch: int, new: int, context=None, **engine) -> tuple:
    engine = GenerationEngine(cache=None, batch_size=batch, progress=False, **engine)
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


OPTIONS = ("fp32", "rows_leave", "llama_cpp", "precision")

# torch ops by kind, for --profile (self CPU time; anything else counts as "other ops")
OP_KINDS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"),
    "attention": ("aten::_scaled_dot_product", "aten::scaled_dot_product", "aten::softmax", "aten::_softmax"),
    "KV cache (cat/index)": ("aten::cat", "aten::index_select", "aten::index", "aten::copy_"),
    "norms, activations, rotary": ("aten::mul", "aten::add", "aten::silu", "aten::rsqrt", "aten::pow",
                                   "aten::mean", "aten::neg", "aten::cos", "aten::sin", "aten::embedding"),
}  # fmt: skip


def profile(collaborator: Collaborator, texts: list[str], batch: int, new: int, **engine) -> None:
    """Where one engine run's wall time goes: self CPU time of torch ops by kind, and the rest
    (Python in generate, processors, tokenizer) as the difference to the wall time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    engine_ = GenerationEngine(cache=None, batch_size=batch, progress=False, **engine)
    engine_.generate(collaborator, texts[:2], DecodingConfig(max_new_tokens=4))
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        engine_.generate(collaborator, texts, DecodingConfig(max_new_tokens=new))
        wall = time.perf_counter() - started
    totals = dict.fromkeys([*OP_KINDS, "other ops"], 0.0)
    for event in prof.key_averages():
        kind = next((k for k, names in OP_KINDS.items() if event.key.startswith(names)), "other ops")
        totals[kind] += event.self_cpu_time_total / 1e6
    print(f"\nprofile, batch {batch}, {engine or 'model.generate'}: {wall:.1f} s wall (profiler on)")
    print("| where | seconds | share of wall |")
    print("|---|---:|---:|")
    for kind, seconds in totals.items():
        print(f"| {kind} | {seconds:.2f} | {seconds / wall:.0%} |")
    rest = wall - sum(totals.values())
    print(f"| outside torch ops (Python, processors, tokenizer) | {rest:.2f} | {rest / wall:.0%} |")
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
    print("top ops: " + ", ".join(f"{e.key} {e.self_cpu_time_total / 1e6:.2f} s" for e in top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[], help="more batch sizes (fp32 rows)")
    parser.add_argument("--compile", action="store_true", help="also a static cache with torch.compile")
    parser.add_argument("--options", nargs="+", choices=OPTIONS, default=list(OPTIONS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: one per core)")
    parser.add_argument("--profile", action="store_true", help="only profile the fp32 path at --batch")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}, torch threads {torch.get_num_threads()}", flush=True)

    cores = args.threads or os.cpu_count() or 1
    texts = prompts(args.prompts)
    base = load_collaborator(args.model, "cpu")
    results: dict[str, tuple] = {}

    def measure(
        label: str, collaborator: Collaborator, context=None, threads: int = cores, batch: int = 0, **engine
    ) -> None:
        torch.set_num_threads(threads)
        results[label] = run(collaborator, texts, batch or args.batch, args.max_new_tokens, context, **engine)
        rate, _, tokens, seconds = results[label]
        load = os.getloadavg()[0]
        print(
            f"  {label}: {rate:.1f} tokens/s ({tokens} tokens in {seconds:.1f} s, load {load:.1f})",
            flush=True,
        )

    print(f"{args.model}, {len(texts)} prompts, batch {args.batch}, {args.max_new_tokens} new tokens, greedy")
    if args.profile:
        torch.set_num_threads(cores)
        profile(base, texts, args.batch, args.max_new_tokens)
        profile(base, texts, args.batch, args.max_new_tokens, finished_rows_leave=True)
        return
    measure("fp32", base)
    batches = [b for b in args.batches if b != args.batch]
    if "fp32" in args.options:
        for batch in batches:
            measure(f"fp32, batch {batch}", base, batch=batch)
    if "rows_leave" in args.options:
        for batch in [args.batch, *batches]:
            measure(f"fp32, rows leave, batch {batch}", base, batch=batch, finished_rows_leave=True)
    if "llama_cpp" in args.options:
        try:
            for batch in [1, args.batch, *batches]:
                measure(f"llama.cpp (GGUF), batch {batch}", base, batch=batch, backend="llama_cpp")
        except Exception as error:  # noqa: BLE001 - a backend this machine lacks is reported, not fatal
            print(f"  llama.cpp: not measured ({type(error).__name__}: {error})")
    if "precision" not in args.options:
        report(results)
        return
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

    report(results)


def report(results: dict[str, tuple]) -> None:
    reference_rate, reference_texts = results["fp32"][0], results["fp32"][1]
    print()
    print("| option | tokens/s | vs fp32 | outputs equal to fp32 |")
    print("|---|---:|---:|---:|")
    for label, (rate, texts_out, _, _) in results.items():
        same = sum(a == b for a, b in zip(texts_out, reference_texts, strict=True))
        print(f"| {label} | {rate:.1f} | {rate / reference_rate:.2f}x | {same}/{len(reference_texts)} |")


if __name__ == "__main__":
    main()
