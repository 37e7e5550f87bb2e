"""Torch's default thread count against the engine's automatic choice, on the machine as found and
with competing CPU work: new tokens/s of SmolLM2 greedy generation through ``GenerationEngine``.

``default``: one torch thread per core (torch's own choice); ``auto``: ``GenerationEngine(threads=
"auto")``, which sets one thread per core that the load average (less this process's share) leaves
free, again before every batch. ``--hogs N`` starts N busy-looping processes for the loaded rows.
Run it without OMP_NUM_THREADS/MOCO_LIT_THREADS set (either would fix the count).

    python benchmarks/threads.py --prompts 16 --max_new_tokens 32 --hogs 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from engine_options import prompts  # noqa: E402

from moco_lit.collaborators import load_collaborator  # noqa: E402
from moco_lit.generation import DecodingConfig, GenerationEngine  # noqa: E402
from moco_lit.processes import usable_cores  # noqa: E402

HOG = "while True: pass"


def rate(collaborator, texts: list[str], batch: int, new: int, threads) -> tuple[float, int]:
    if threads != "auto":
        torch.set_num_threads(threads)
    engine = GenerationEngine(
        cache=None, batch_size=batch, progress=False, threads=threads if threads == "auto" else None
    )
    engine.generate(collaborator, texts[:2], DecodingConfig(max_new_tokens=4))  # warm-up
    started = time.perf_counter()
    outputs = engine.generate(collaborator, texts, DecodingConfig(max_new_tokens=new))
    seconds = time.perf_counter() - started
    return sum(o.new_tokens for o in outputs) / seconds, torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--hogs", type=int, default=1, help="busy processes for the loaded rows")
    parser.add_argument(
        "--settle_s", type=float, default=20.0, help="wait for the load average to see the hogs"
    )
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MOCO_LIT_THREADS"):
        raise SystemExit("unset OMP_NUM_THREADS and MOCO_LIT_THREADS: they fix the thread count")
    cores = usable_cores()
    collaborator = load_collaborator(args.model, "cpu")
    texts = prompts(args.prompts)
    rows = []
    for condition in ("as found", f"+{args.hogs} busy process(es)"):
        hogs = []
        if condition != "as found":
            hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
            time.sleep(args.settle_s)
        try:
            load_before = os.getloadavg()[0]
            default, _ = rate(collaborator, texts, args.batch, args.max_new_tokens, cores)
            auto, chosen = rate(collaborator, texts, args.batch, args.max_new_tokens, "auto")
            rows.append((condition, load_before, os.getloadavg()[0], default, auto, chosen))
            print(
                f"  {condition}: default {default:.1f} tokens/s, auto {auto:.1f} ({chosen} threads)",
                flush=True,
            )
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    print()
    print(
        f"| machine | load average (1 min) | torch default ({cores} threads) tok/s | auto tok/s | auto threads | auto / default |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for condition, before, after, default, auto, chosen in rows:
        print(
            f"| {condition} | {before:.1f} -> {after:.1f} | {default:.1f} | {auto:.1f} | {chosen} | {auto / default:.2f}x |"
        )


if __name__ == "__main__":
    main()
