"""moco_lit's engine vs plain ``model.generate`` on a real model: greedy tokens/s at two batch sizes.

The same chat prompts (rendered by the collaborator, left-padded) are decoded greedily with
``max_new_tokens`` by (a) ``model.generate`` and (b) ``GenerationEngine`` with the cache off, at
batch 1 and at ``--batch`` (default 16). Tokens are counted up to each row's end token, for both.
Then the engine runs the ``--batch`` set twice through a fresh generation cache: the second run is
the cached rerun. Needs a fetched model (``python -m moco_lit models fetch smollm2-135m-instruct``).

    python benchmarks/real_engine_speed.py                                  # SmolLM2, 16 prompts
    python benchmarks/real_engine_speed.py --max_new_tokens 16 --batch1_prompts 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from moco_lit.cache import GenerationCache  # noqa: E402
from moco_lit.collaborators import Collaborator, load_collaborator  # noqa: E402
from moco_lit.generation import DecodingConfig, GenerationEngine  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "Natalia sold clips to 48 friends in April and half as many in May. How many in total?",
    "Write a haiku about autumn.",
    "What does a thermometer measure?",
    "Explain photosynthesis in one sentence.",
    "Is 17 a prime number? Answer yes or no, then explain.",
    "Give a synonym for 'happy'.",
    "What is 12 times 12?",
    "Which planet is closest to the sun?",
    "Translate 'good morning' into Spanish.",
    "What is the boiling point of water in Celsius?",
    "Write one sentence about the ocean.",
    "Who wrote Romeo and Juliet?",
    "List two mammals that can fly or glide.",
    "What is the square root of 81?",
]


def generate_plain(collaborator: Collaborator, prompts: list[str], batch: int, new_tokens: int) -> int:
    """New tokens up to each row's end token, decoding with ``model.generate`` in chunks of ``batch``."""
    tokenizer, model = collaborator.tokenizer, collaborator.model
    eos = model.generation_config.eos_token_id
    stops = ({eos} if isinstance(eos, int) else set(eos or [])) | {tokenizer.pad_token_id}
    counted = 0
    for start in range(0, len(prompts), batch):
        rendered = [collaborator.render(p) for p in prompts[start : start + batch]]
        encoded = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **encoded, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        for row in out[:, encoded["input_ids"].shape[1] :].tolist():
            counted += next((i for i, t in enumerate(row) if t in stops), len(row))
    return counted


def generate_engine(
    collaborator: Collaborator, prompts: list[str], batch: int, new_tokens: int, cache=None
) -> int:
    engine = GenerationEngine(cache=cache, batch_size=batch, progress=False)
    outputs = engine.generate(collaborator, prompts, DecodingConfig(max_new_tokens=new_tokens))
    return sum(o.new_tokens for o in outputs)


def timed(fn, *args, **kwargs) -> tuple[int, float]:
    start = time.perf_counter()
    tokens = fn(*args, **kwargs)
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="short name, folder or hub id")
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16, help="the large batch size (and prompt count)")
    parser.add_argument("--batch1_prompts", type=int, default=8, help="prompts decoded at batch 1")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    collaborator = load_collaborator(args.model)
    prompts = (QUESTIONS * (args.batch // len(QUESTIONS) + 1))[: args.batch]
    generate_plain(collaborator, prompts[:1], 1, 2)  # warm-up: one-off costs are not decoding speed
    rows = []
    for batch, subset in ((1, prompts[: args.batch1_prompts]), (args.batch, prompts)):
        for name, fn in (("model.generate", generate_plain), ("engine", generate_engine)):
            tokens, seconds = timed(fn, collaborator, subset, batch, args.max_new_tokens)
            rows.append(
                {
                    "runner": name,
                    "batch": batch,
                    "prompts": len(subset),
                    "new_tokens": tokens,
                    "seconds": round(seconds, 2),
                    "tokens_per_s": round(tokens / seconds, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    with tempfile.TemporaryDirectory() as work:
        cache = GenerationCache(Path(work) / "generations.sqlite")
        _, first = timed(generate_engine, collaborator, prompts, args.batch, args.max_new_tokens, cache)
        _, again = timed(generate_engine, collaborator, prompts, args.batch, args.max_new_tokens, cache)
    print(
        json.dumps(
            {
                "runner": "engine+cache",
                "batch": args.batch,
                "first_s": round(first, 2),
                "cached_rerun_s": round(again, 4),
            }
        ),
        flush=True,
    )
    one = {r["runner"]: r["tokens_per_s"] for r in rows if r["batch"] == 1}
    big = {r["runner"]: r["tokens_per_s"] for r in rows if r["batch"] == args.batch}
    print(
        json.dumps(
            {
                "engine_vs_generate_batch1": round(one["engine"] / one["model.generate"], 2),
                f"engine_batch{args.batch}_vs_batch1": round(big["engine"] / one["engine"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
