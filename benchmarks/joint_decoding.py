"""Joint decoding on real models: logit fusion against the sum of the two models' own cached decodes.

SmolLM2-135M-Instruct and a LoRA-tuned SmolLM2 (a fresh adapter on every attention and MLP
projection with its B matrices drawn at random, so it changes every logit; saved to a temporary
folder and loaded as ``base+adapter``, the way a recipe names one). The same ``--batch`` chat
prompts, left-padded, ``--max_new_tokens`` tokens each with the end token ignored, so every run
decodes exactly the same number of tokens:

* single: each model alone through ``model.generate`` (KV cache, greedy, ``min_new_tokens`` =
  ``max_new_tokens``);
* joint: ``moco_lit.decoding``'s session, greedy on the mean of both models' logits
  (``logit_fusion``'s rule, ``average``), one KV cache per model.

Each of the three runs ``--repeats`` times, interleaved; the median counts. Prints one JSON line
per run and the ratio joint ÷ (single SmolLM2 + single LoRA SmolLM2), which the goal wants ≤ 1.2.

    python benchmarks/joint_decoding.py --threads 1 --batch 8 --max_new_tokens 64
    python benchmarks/joint_decoding.py --profile        # also a cProfile of one joint run
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from moco_lit import paths  # noqa: E402
from moco_lit.collaborators import Collaborator, load_collaborator  # noqa: E402
from moco_lit.decoding import JointDecoder, average  # noqa: E402
from moco_lit.generation import DecodingConfig  # noqa: E402

BASE = "smollm2-135m-instruct"
QUESTIONS = [
    "Natalia sold clips to 48 friends in April and half as many in May. How many in total?",
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Explain photosynthesis in one sentence.",
    "Is 17 a prime number? Answer yes or no, then explain.",
    "What is 12 times 12?",
    "Translate 'good morning' into Spanish.",
    "List two mammals that can fly or glide.",
]


def save_random_adapter(base: str, folder: Path, rank: int, seed: int) -> str:
    """A LoRA adapter on every projection with random nonzero B (a fresh one has B = 0)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets))
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.02)
    peft_model.save_pretrained(folder)
    return str(folder)


@torch.inference_mode()
def single_decode(collaborator: Collaborator, prompts: list[str], new_tokens: int) -> int:
    tokenizer = collaborator.tokenizer
    tokenizer.padding_side = "left"
    rendered = [collaborator.render(p) for p in prompts]
    inputs = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    out = collaborator.model.generate(
        **inputs,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    return (out.shape[1] - inputs["input_ids"].shape[1]) * len(prompts)


@torch.inference_mode()
def joint_decode(collaborators: list[Collaborator], prompts: list[str], new_tokens: int) -> int:
    session = JointDecoder(collaborators, DecodingConfig(max_new_tokens=new_tokens)).open(prompts)
    for stream in session.streams:
        stream.eos_ids = set()  # every row decodes every token, as the single runs do
    rule = average()
    rule.reset(len(prompts))
    while not session.finished():
        session.fuse_step(rule)
    return sum(session.new_tokens)


def timed(fn, *args) -> tuple[int, float]:
    start = time.perf_counter()
    tokens = fn(*args)
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one joint run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base_folder = paths.home() / "models" / BASE
    if not (base_folder / "config.json").exists():
        raise SystemExit(f"{BASE} is not fetched: python -m moco_lit models fetch {BASE}")
    prompts = (QUESTIONS * (args.batch // len(QUESTIONS) + 1))[: args.batch]
    with tempfile.TemporaryDirectory() as work:
        adapter = save_random_adapter(str(base_folder), Path(work) / "adapter", args.rank, seed=0)
        base = load_collaborator(str(base_folder))
        tuned = load_collaborator(f"{base_folder}+{adapter}")
        pair = [base, tuned]
        single_decode(base, prompts[:1], 2)  # warm-up: one-off costs are not decoding
        joint_decode(pair, prompts[:1], 2)
        runs = {
            "single_base": lambda: single_decode(base, prompts, args.max_new_tokens),
            "single_lora": lambda: single_decode(tuned, prompts, args.max_new_tokens),
            "joint": lambda: joint_decode(pair, prompts, args.max_new_tokens),
        }
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for repeat in range(args.repeats):
            for name, run in runs.items():
                tokens, took = timed(run)
                seconds[name].append(took)
                row = {"run": name, "repeat": repeat, "tokens": tokens, "seconds": round(took, 3)}
                print(json.dumps(row | {"tokens_per_s": round(tokens / took, 1)}), flush=True)
        median = {name: statistics.median(values) for name, values in seconds.items()}
        ratio = median["joint"] / (median["single_base"] + median["single_lora"])
        summary = {name: round(value, 3) for name, value in median.items()}
        summary |= {"joint_over_sum_of_singles": round(ratio, 3), "load_average": os.getloadavg()}
        print(json.dumps(summary | {"threads": args.threads, "batch": args.batch}), flush=True)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(joint_decode, pair, prompts, args.max_new_tokens)
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
            print(text.getvalue())


if __name__ == "__main__":
    main()
