"""multiagent_refine: moco_lit's generation engine against MoCo's way of generating, same work.

Builds three tiny random Llamas (as tests/conftest.py does), then runs multiagent_refine (3 rounds,
dev-best summary, dev calibration first) on the first ``--questions`` quickstart questions twice:

* moco_lit: ``python -m moco_lit test`` in-process: models loaded once and kept resident, each
  round one batched call per model, prompts sorted by length before batching, generation cache on
  (a fresh cache file, so the first run generates everything).
* MoCo's way (what ``modelco``'s ``distributed_generation`` does for every round): load each model
  afresh from disk, generate the round's prompts in the given order in batches with plain
  ``model.generate``, free the model. Same prompts (moco_lit's templates and plain-text rendering),
  same greedy decoding, same batch size. MoCo also spawns a process per model and round; that
  cost is left out here, so the ratio is a lower bound.

moco_lit runs three times: with the cache off (resident models and length-sorted batches alone:
exactly the same generations as MoCo's way), with a fresh cache (repeated prompts are generated
once: tiny random models often repeat themselves, so whole later rounds can hit), and again on a
new run id with that cache (every generation a hit). Prints wall times, tokens, padding, the
speed-ups, and how many final answers agree with MoCo's way.

    python benchmarks/text_methods.py                      # CPU, 64 questions, 32 new tokens
    python benchmarks/text_methods.py --device cuda --questions 64 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import string
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from moco_lit.collaborators import render_plain  # noqa: E402
from moco_lit.data import load_benchmark  # noqa: E402
from moco_lit.data.prompts import render_prompt  # noqa: E402
from moco_lit.evaluation import Scorer  # noqa: E402
from moco_lit.methods.text.discussion import SUMMARY_TEMPLATE, bullet_list  # noqa: E402
from moco_lit.methods.text.multiagent_refine import REFINE_TEMPLATE  # noqa: E402
from moco_lit.quickstart import (  # noqa: E402
    TinyModelConfig,
    build_tiny_llama,
    build_tokenizer,
    prompt_wording_corpus,
)

ROUNDS = 3


def build_models(root: Path, count: int = 3) -> list[str]:
    """Tiny random Llamas with one shared tokenizer, saved as folders (like tests/conftest.py)."""
    tokenizer = build_tokenizer(prompt_wording_corpus() + list(string.printable), vocab_size=400)
    config = TinyModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, max_positions=512)
    folders = []
    for seed in range(count):
        folder = root / f"tiny{seed}"
        build_tiny_llama(tokenizer, config, seed=seed).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(str(folder))
    return folders


# -- moco_lit ---------------------------------------------------------------------------------


def run_moco_lit(folders: list[str], args, run_dir: str, run_id: str, cache: str | None) -> dict:
    """One ``test`` run; ``cache`` None turns the generation cache off (engine alone)."""
    from moco_lit.collaborators import release_collaborators
    from moco_lit.lightning_cli import run_lightning

    release_collaborators()  # every run loads its models (once): the pool must not carry them over
    argv = [
        "test",
        "--model",
        "multiagent_refine",
        "--model.collaborators",
        "[" + ", ".join(folders) + "]",
        "--model.round",
        str(ROUNDS),
        "--model.max_new_tokens",
        str(args.max_new_tokens),
        "--model.generation_batch_size",
        str(args.batch_size),
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        str(args.questions),
        "--data.dev_limit",
        str(args.questions),
        "--data.batch_size",
        str(args.questions),
        "--trainer.accelerator",
        "gpu" if args.device == "cuda" else "cpu",
        "--run_dir",
        run_dir,
        "--run_id",
        run_id,
        *(["--cache_path", cache] if cache else ["--cache", "false"]),
        "--progress",
        "false",
        "--trainer.enable_progress_bar",
        "false",
    ]
    start, cpu = time.perf_counter(), time.process_time()
    cli = run_lightning(argv)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    stats = cli.model.engine.stats
    folder = cli.model.runtime.run_folder.path
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "outputs": {r["id"]: r["output"] for r in rows},
        "score": json.loads((folder / "metrics.json").read_text())["score"],
        "generations": stats.calls,
        "cache_hits": stats.cache_hits,
        "prompt_tokens": stats.prompt_tokens,
        "new_tokens": stats.new_tokens,
    }


# -- MoCo's way -------------------------------------------------------------------------------


class MocoWay:
    """Every generation call loads the model from disk, generates in the given order, frees it."""

    def __init__(self, device: str, batch_size: int, max_new_tokens: int) -> None:
        self.device, self.batch_size, self.max_new_tokens = device, batch_size, max_new_tokens
        self.totals = {"loads": 0, "load_s": 0.0, "generations": 0, "prompt_tokens": 0, "new_tokens": 0}
        self.padded = {"given_order": 0, "length_sorted": 0}

    @torch.inference_mode()
    def generate(self, folder: str, prompts: list[str]) -> list[str]:
        loading = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(self.device).eval()
        tokenizer.padding_side = "left"
        self.totals["loads"] += 1
        self.totals["load_s"] += time.perf_counter() - loading
        rendered = [render_plain([{"role": "user", "content": p}]) for p in prompts]
        self._count_padding(tokenizer, rendered)
        eos = tokenizer.eos_token_id
        outputs = []
        for start in range(0, len(rendered), self.batch_size):
            chunk = rendered[start : start + self.batch_size]
            inputs = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            inputs = inputs.to(self.device)
            generated = model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=eos
            )
            for row in generated[:, inputs["input_ids"].shape[1] :].tolist():
                kept = row[: row.index(eos)] if eos in row else row
                self.totals["new_tokens"] += len(kept)
                outputs.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
            self.totals["prompt_tokens"] += int(inputs["attention_mask"].sum())
        self.totals["generations"] += len(prompts)
        del model, tokenizer
        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
        return outputs

    def _count_padding(self, tokenizer, rendered: list[str]) -> None:
        """Prompt tokens the model processes, padding included, in given order and length-sorted."""
        lengths = [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]
        for key, order in (("given_order", lengths), ("length_sorted", sorted(lengths, reverse=True))):
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                self.padded[key] += max(chunk) * len(chunk)


def run_moco_way(folders: list[str], args) -> dict:
    benchmark = load_benchmark("quickstart", None, None, 0)
    scorer = Scorer.for_task(benchmark.task_type)
    dev = benchmark.split("dev")[: args.questions]
    test = benchmark.split("test")[: args.questions]
    questions = [render_prompt(benchmark.task_type, r) for r in test]
    way = MocoWay(args.device, args.batch_size, args.max_new_tokens)
    start, cpu = time.perf_counter(), time.process_time()
    dev_prompts = [render_prompt(benchmark.task_type, r) for r in dev]
    dev_scores = []
    for folder in folders:
        scores = scorer.score(way.generate(folder, dev_prompts), dev)
        dev_scores.append(sum(s or 0.0 for s in scores) / len(scores))
    best = dev_scores.index(max(dev_scores))
    answers = [way.generate(folder, questions) for folder in folders]
    for _ in range(2, ROUNDS + 1):
        answers = [
            way.generate(
                folder,
                [
                    REFINE_TEMPLATE.format(
                        question=q,
                        own=answers[m][i],
                        others=bullet_list([answers[k][i] for k in range(len(folders)) if k != m]),
                    )
                    for i, q in enumerate(questions)
                ],
            )
            for m, folder in enumerate(folders)
        ]
    summaries = [
        SUMMARY_TEMPLATE.format(question=q, answers=bullet_list([a[i] for a in answers]))
        for i, q in enumerate(questions)
    ]
    finals = way.generate(folders[best], summaries)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    scores = scorer.score(finals, test)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "outputs": {r["id"]: out for r, out in zip(test, finals)},
        "score": sum(s or 0.0 for s in scores) / len(scores),
        **way.totals,
        "padded_prompt_tokens": way.padded,
    }


def warm_up(folders: list[str], args, root: Path) -> None:
    """One-off costs (imports, kernel selection, allocator) are paid here, not by whichever run is first."""
    MocoWay(args.device, 4, 4).generate(folders[0], ["What is 2 times 3?"] * 4)
    small = argparse.Namespace(**{**vars(args), "questions": 2, "max_new_tokens": 2})
    run_moco_lit(folders, small, str(root / "warm-up"), "warm-up", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per forward batch (both ways)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        os.environ["MOCO_LIT_HOME"] = str(root / "home")
        folders = build_models(root / "models")
        warm_up(folders, args, root)
        cache = str(root / "generations.sqlite")
        engine = run_moco_lit(folders, args, str(root / "runs"), "no-cache", None)
        moco = run_moco_way(folders, args)
        first = run_moco_lit(folders, args, str(root / "runs"), "first", cache)
        cached = run_moco_lit(folders, args, str(root / "runs"), "cached", cache)
    same = sum(engine["outputs"][k] == moco["outputs"][k] for k in engine["outputs"])
    runs = {"moco_way": moco, "moco_lit_no_cache": engine, "moco_lit_fresh_cache": first}
    figures = {
        "setup": {
            "questions": args.questions,
            "rounds": ROUNDS,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "device": args.device,
        },
        "wall_s": {name: round(run["seconds"], 2) for name, run in runs.items()}
        | {"moco_lit_cached_rerun": round(cached["seconds"], 2)},
        "cpu_s": {name: round(run["cpu_seconds"], 2) for name, run in runs.items()}
        | {"moco_lit_cached_rerun": round(cached["cpu_seconds"], 2)},
        "speedup_wall": {
            name: round(moco["seconds"] / run["seconds"], 2) for name, run in runs.items() if run is not moco
        },
        "speedup_cpu": {
            name: round(moco["cpu_seconds"] / run["cpu_seconds"], 2)
            for name, run in runs.items()
            if run is not moco
        },
        "cache_hits": {
            "moco_lit_fresh_cache": f"{first['cache_hits']}/{first['generations']}",
            "moco_lit_cached_rerun": f"{cached['cache_hits']}/{cached['generations']}",
        },
        "tokens": {
            "moco_lit": {k: engine[k] for k in ("generations", "prompt_tokens", "new_tokens")},
            "moco_way": {
                k: moco[k]
                for k in (
                    "loads",
                    "load_s",
                    "generations",
                    "prompt_tokens",
                    "new_tokens",
                    "padded_prompt_tokens",
                )
            },
        },
        "final_answers_identical": f"{same}/{len(engine['outputs'])}",
        "score": {"moco_lit": engine["score"], "moco_way": moco["score"]},
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
