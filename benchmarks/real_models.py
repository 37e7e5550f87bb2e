"""Package-shipped real models: load time, engine vs ``model.generate`` speed, cached rerun, GGUF fidelity.

For every fetched short name (or the ones named), in one run:

1. load: seconds to load the converted folder as a collaborator (tokenizer + float32 weights);
2. speed: the same chat prompts (rendered by the collaborator, left-padded) decoded greedily with
   ``--max_new_tokens`` by plain ``model.generate`` and by moco_lit's ``GenerationEngine`` (cache
   off), at batch 1 (first ``--batch1_prompts`` prompts) and at ``--batch`` (``--batch`` prompts);
   tokens are counted up to each row's end token, for both runners;
3. cache: the engine runs the ``--batch`` set twice through a fresh generation cache: the second
   run is the cached rerun;
4. with ``--compare_gguf``: the original ``.gguf`` kept beside the folder is loaded through
   transformers and its greedy outputs are compared token for token with the converted folder's.

Each measurement prints one JSON line, then one line of ratios measured in this run.

    python benchmarks/real_models.py --threads 1                      # SmolLM2 and Gemma, if fetched
    python benchmarks/real_models.py smollm2-135m-instruct --batch 16 --max_new_tokens 32
    python benchmarks/real_models.py gemma3-270m --compare_gguf --batch1_prompts 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from moco_lit import model_files, models  # noqa: E402
from moco_lit.cache import GenerationCache  # noqa: E402
from moco_lit.collaborators import Collaborator, load_collaborator  # noqa: E402
from moco_lit.generation import DecodingConfig, GenerationEngine, eos_ids_of  # noqa: E402

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


def generate_plain(
    model, tokenizer, rendered: list[str], batch: int, new_tokens: int
) -> tuple[int, list[list[int]]]:
    """Tokens up to each row's end token, and the rows, decoding with ``model.generate``."""
    # the engine's end tokens, and the padding model.generate puts after a finished row
    stops, counted, rows = {*eos_ids_of(model, tokenizer), tokenizer.pad_token_id}, 0, []
    for start in range(0, len(rendered), batch):
        encoded = tokenizer(
            rendered[start : start + batch], return_tensors="pt", padding=True, add_special_tokens=False
        )
        with torch.no_grad():
            out = model.generate(
                **encoded, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        for row in out[:, encoded["input_ids"].shape[1] :].tolist():
            kept = next((i for i, t in enumerate(row) if t in stops), len(row))
            counted += kept
            rows.append(row[:kept])
    return counted, rows


def generate_engine(
    collaborator: Collaborator, prompts: list[str], batch: int, new_tokens: int, cache=None
) -> int:
    engine = GenerationEngine(cache=cache, batch_size=batch, progress=False)
    outputs = engine.generate(collaborator, prompts, DecodingConfig(max_new_tokens=new_tokens))
    return sum(o.new_tokens for o in outputs)


def timed(fn: Callable, *args) -> tuple:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def speed_rows(name: str, collaborator: Collaborator, args: argparse.Namespace) -> list[dict]:
    """Engine and ``model.generate`` tokens/s at batch 1 and at ``args.batch``."""
    prompts = (QUESTIONS * (args.batch // len(QUESTIONS) + 1))[: args.batch]
    model, tokenizer = collaborator.model, collaborator.tokenizer
    rendered = [collaborator.render(p) for p in prompts]
    generate_plain(model, tokenizer, rendered[:1], 1, 2)  # warm-up: one-off costs are not decoding
    rows = []
    for batch, count in ((1, args.batch1_prompts), (args.batch, args.batch)):
        runners = (
            ("model.generate", lambda *a: generate_plain(model, tokenizer, *a)[0], rendered[:count]),
            ("engine", lambda *a: generate_engine(collaborator, *a), prompts[:count]),
        )
        for runner, fn, subset in runners:
            tokens, seconds = timed(fn, subset, batch, args.max_new_tokens)
            rows.append(
                {
                    "model": name,
                    "runner": runner,
                    "batch": batch,
                    "prompts": count,
                    "new_tokens": tokens,
                    "seconds": round(seconds, 2),
                    "tokens_per_s": round(tokens / seconds, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def cached_rerun(name: str, collaborator: Collaborator, args: argparse.Namespace) -> dict:
    prompts = (QUESTIONS * (args.batch // len(QUESTIONS) + 1))[: args.batch]
    with tempfile.TemporaryDirectory() as work:
        cache = GenerationCache(Path(work) / "generations.sqlite")
        run = (collaborator, prompts, args.batch, args.max_new_tokens, cache)
        _, first = timed(generate_engine, *run)
        _, again = timed(generate_engine, *run)
    row = {"model": name, "runner": "engine+cache", "batch": args.batch}
    row |= {"first_s": round(first, 2), "cached_rerun_s": round(again, 4)}
    print(json.dumps(row), flush=True)
    return row


def gguf_fidelity(name: str, collaborator: Collaborator, args: argparse.Namespace) -> dict:
    """Greedy outputs of the original ``.gguf`` against the converted folder's, token for token."""
    rendered = [collaborator.render(p) for p in QUESTIONS[: args.batch1_prompts]]
    new = args.max_new_tokens
    _, folder_rows = generate_plain(collaborator.model, collaborator.tokenizer, rendered, 1, new)
    (gguf_model, gguf_tokenizer), load_s = timed(model_files.load_gguf, models.fetched_gguf(name))
    _, gguf_rows = generate_plain(gguf_model.eval(), gguf_tokenizer, rendered, 1, new)
    row = {"model": name, "gguf_load_s": round(load_s, 2), "identical_to_gguf": gguf_rows == folder_rows}
    print(json.dumps(row), flush=True)
    return row


def ratios(name: str, rows: list[dict], batch: int) -> dict:
    one = {r["runner"]: r["tokens_per_s"] for r in rows if r["batch"] == 1}
    big = {r["runner"]: r["tokens_per_s"] for r in rows if r["batch"] == batch}
    return {
        "model": name,
        "engine_vs_generate_batch1": round(one["engine"] / one["model.generate"], 2),
        f"engine_vs_generate_batch{batch}": round(big["engine"] / big["model.generate"], 2),
        f"engine_batch{batch}_vs_batch1": round(big["engine"] / one["engine"], 2),
    }


def measure(name: str, args: argparse.Namespace) -> None:
    collaborator, load_s = timed(load_collaborator, name)
    print(
        json.dumps(
            {"model": name, "chat_template": collaborator.has_chat_template, "load_s": round(load_s, 2)}
        )
    )
    rows = speed_rows(name, collaborator, args)
    cached_rerun(name, collaborator, args)
    if args.compare_gguf:
        gguf_fidelity(name, collaborator, args)
    print(json.dumps(ratios(name, rows, args.batch)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="short names (default: every fetched one)")
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16, help="the large batch size (and prompt count)")
    parser.add_argument("--batch1_prompts", type=int, default=8, help="prompts decoded at batch 1")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--compare_gguf", action="store_true", help="also load the .gguf and compare outputs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.names or [row["name"] for row in models.list_models() if row["fetched"]]
    if not names:
        raise SystemExit("nothing fetched: python -m moco_lit models fetch smollm2-135m-instruct")
    for name in names:
        measure(name, args)


if __name__ == "__main__":
    main()
