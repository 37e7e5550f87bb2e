"""Weight merging: one candidate evaluation cycle (merge + dev evaluation), in memory vs through disk.

A weight-level search (greedy soup, DARE-TIES, model swarms...) evaluates many candidate merges on
dev. moco_lit keeps the collaborators resident and writes each candidate into one resident working
model (``moco_lit.merging`` + ``MergeSearch``); MoCo writes each candidate to disk and loads it back
to evaluate it. This script times one cycle of each on CPU, each path in a fresh (spawned) process so
its peak RSS is its own:

- ``memory``: moco_lit — ``merge_linear`` into the working model's tensors, then generate with it.
- ``disk``: the same merge, then ``save_pretrained`` + ``from_pretrained`` before generating.
- ``moco``: MoCo 1.1.2's ``full_model_linear_merge`` pattern — nothing resident; each source is
  loaded with ``from_pretrained``, accumulated, saved, and the merged model is loaded back.

The "dev evaluation" is a short greedy generation over a handful of prompts through
``GenerationEngine`` with the cache off; every path must produce the same texts (same weights).
The collaborators are random Llamas of ``--params`` million parameters (float32, the CPU default of
``load_collaborator``) sharing one architecture, saved to a temporary folder.

Throughput: GB/s of weights processed by ``merge_linear`` and ``merge_dare_ties`` (TIES) on the
resident models, against the machine's memory bandwidth measured in the same process with a large
tensor copy. Bytes counted are the merge's minimal traffic: every source read once, the target
written once.

    python benchmarks/merging.py                          # 3 × ~150M, 3 cycles per path
    python benchmarks/merging.py --params 300 --models 3 --cycles 2 --threads 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import string
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import torch  # noqa: E402

MIB = 2**20
HIDDEN, HEADS, INTERMEDIATE = 1024, 16, 2816
PROMPTS = [
    "What is 7 times 8?",
    "Name the capital of France.",
    "Is 91 a prime number? Answer yes or no.",
    "Translate 'good morning' into Spanish.",
    "What is the boiling point of water in Celsius?",
    "Spell the word 'banana' backwards.",
    "How many legs does a spider have?",
    "What comes after Tuesday?",
]


# -- measuring ---------------------------------------------------------------------------------


class PeakRSS:
    """Samples this process's RSS in a thread; ``window()`` gives the peak since the last call."""

    def __init__(self, interval: float = 0.005) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        return self.process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def window(self) -> int:
        """The peak since the previous call (including now), then start a new window."""
        peak, self.peak = max(self.peak, self.rss()), self.rss()
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Clock:
    """Wall and CPU (user + system, all threads of this process) seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


# -- the models --------------------------------------------------------------------------------


def layers_for(params_m: float) -> int:
    per_layer = 4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE
    return max(1, round(params_m * 1e6 / per_layer))


def build_models(folder: Path, count: int, params_m: float) -> list[str]:
    """``count`` random Llamas of one architecture (a shared tokenizer), saved as safetensors."""
    from moco_lit.quickstart import TinyModelConfig, build_tiny_llama, build_tokenizer, prompt_wording_corpus

    _child_setup(1).stop()
    tokenizer = build_tokenizer(prompt_wording_corpus() + list(string.printable), vocab_size=400)
    config = TinyModelConfig(HIDDEN, layers_for(params_m), HEADS, INTERMEDIATE, max_positions=512)
    paths = []
    for seed in range(count):
        path = folder / f"model{seed}"
        build_tiny_llama(tokenizer, config, seed=seed).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(str(path))
    return paths


def recipes(count: int, cycles: int) -> list[list[float]]:
    """A different weighted average per cycle (as a search would propose), the same for every path."""
    generator = torch.Generator().manual_seed(0)
    return [torch.softmax(torch.randn(count, generator=generator), 0).tolist() for _ in range(cycles)]


def evaluate(collaborator: Any, max_new_tokens: int) -> tuple[list[str], int]:
    from moco_lit.generation import DecodingConfig, GenerationEngine

    engine = GenerationEngine(cache=None, batch_size=len(PROMPTS), progress=False)
    outputs = engine.generate(collaborator, PROMPTS, DecodingConfig(max_new_tokens=max_new_tokens))
    return [o.text for o in outputs], sum(o.new_tokens for o in outputs)


# -- the three paths (each runs in its own spawned process) -----------------------------------


def _child_setup(threads: int) -> PeakRSS:
    torch.set_num_threads(threads)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    return PeakRSS()


def run_path(path: str, paths: list[str], weights: list[list[float]], work: str, args: dict) -> dict:
    """Setup (resident models), then ``cycles`` candidate cycles; times and RSS of each."""
    sampler = _child_setup(args["threads"])
    result: dict[str, Any] = {"path": path, "cycles": [], "texts": []}
    with Clock() as setup:
        state = _setup(path, paths)
    result["setup_s"] = setup.wall
    result["rss_resident"] = sampler.rss()
    sampler.window()
    for i, recipe in enumerate(weights):
        parts: dict[str, float] = {}
        with Clock() as cycle:
            collaborator = _merge(path, state, paths, recipe, Path(work) / f"{path}_{i}", parts)
            merge_peak = sampler.window()  # the merge (and save/load) before the evaluation starts
            with Clock() as evaluation:
                texts, new_tokens = evaluate(collaborator, args["max_new_tokens"])
            parts["eval"] = evaluation.wall
            del collaborator
        result["cycles"].append(
            {
                "wall": cycle.wall,
                "cpu": cycle.cpu,
                "parts": parts,
                "merge_peak": merge_peak,
                "peak": max(merge_peak, sampler.window()),
                "tokens": new_tokens,
            }
        )
        result["texts"].append(texts)
    sampler.stop()
    result["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


def _setup(path: str, paths: list[str]) -> dict:
    """Resident collaborators and the working model (moco_lit's paths); nothing for MoCo's."""
    if path == "moco":
        return {}
    import copy

    from moco_lit.collaborators import Collaborator, load_collaborator
    from moco_lit.merging import model_weights, writable_tensors

    collaborators = [load_collaborator(p, "cpu") for p in paths]
    # from_pretrained may map the weight files lazily; in a search the collaborators have already
    # answered (dev scores), so every page is resident before the first candidate: read them now
    touch([c.model for c in collaborators])
    working = copy.deepcopy(collaborators[0].model).eval()
    first = collaborators[0]
    merged = Collaborator(
        name="merge", spec=first.spec, tokenizer=first.tokenizer, model=working, fingerprint="merge"
    )
    return {
        "collaborators": collaborators,
        "merged": merged,
        "sources": [model_weights(c.model, c.name) for c in collaborators],
        "target": writable_tensors(working),
    }


def touch(models: list[torch.nn.Module]) -> None:
    with torch.no_grad():
        for model in models:
            for tensor in model.state_dict().values():
                tensor.sum()


def _merge(path: str, state: dict, paths: list[str], recipe: list[float], out: Path, parts: dict) -> Any:
    """Produce the candidate's model as the path does; ``parts`` gets each step's seconds."""
    from moco_lit.merging import merge_linear

    if path == "moco":
        with Clock() as merge:
            model = _moco_style_merge(paths, recipe)
        parts["merge"] = merge.wall
        return _save_and_reload(model, paths[0], out, parts)
    with Clock() as merge:
        merge_linear(state["target"], state["sources"], recipe)
    parts["merge"] = merge.wall
    if path == "memory":
        return state["merged"]
    return _save_and_reload(state["merged"].model, paths[0], out, parts)


def _moco_style_merge(paths: list[str], recipe: list[float]) -> torch.nn.Module:
    """Load the sources one by one and accumulate into the first (MoCo 1.1.2's memory-bounded merge)."""
    from transformers import AutoModelForCausalLM

    from moco_lit.merging import writable_tensors

    # each tied tensor once: MoCo 1.1.2 walks the whole state dict, so a tied embedding is scaled
    # and accumulated twice (w0²·x0 + 2·Σ w_i·x_i); here it is merged once, as moco_lit does,
    # so that every path evaluates the same weights
    merged = None
    with torch.no_grad():
        for path, weight in zip(paths, recipe, strict=True):
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            if merged is None:
                merged, accumulator = model, writable_tensors(model)
                for tensor in accumulator.values():
                    tensor.mul_(weight)
                continue
            tensors = model.state_dict()
            for name, tensor in accumulator.items():
                tensor.add_(tensors[name], alpha=weight)
            del model, tensors
    return merged


def _save_and_reload(model: torch.nn.Module, tokenizer_from: str, out: Path, parts: dict) -> Any:
    """Write the candidate as a model folder (weights + tokenizer, as MoCo does) and load it back."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moco_lit.collaborators import Collaborator, CollaboratorSpec

    with Clock() as save:
        model.save_pretrained(out)
        AutoTokenizer.from_pretrained(tokenizer_from).save_pretrained(out)
    parts["save"] = save.wall
    with Clock() as load:
        reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(out)
    parts["load"] = load.wall
    # the same padding as load_collaborator (not used here: its pool would keep every candidate)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "left"
    shutil.rmtree(out)  # a search keeps no candidate folders either; frees the disk for the next
    return Collaborator(
        name="merge",
        spec=CollaboratorSpec(str(out)),
        tokenizer=tokenizer,
        model=reloaded,
        fingerprint=str(out),
    )


# -- throughput against bandwidth -------------------------------------------------------------


def run_throughput(paths: list[str], args: dict) -> dict:
    """GB/s of ``merge_linear`` and TIES over the resident models, and of a large tensor copy."""
    _child_setup(args["threads"])
    from moco_lit.collaborators import load_collaborator
    from moco_lit.merging import merge_dare_ties, merge_linear, model_weights, writable_tensors

    collaborators = [load_collaborator(p, "cpu") for p in paths]
    touch([c.model for c in collaborators])
    sources = [model_weights(c.model, c.name) for c in collaborators]
    import copy

    target = writable_tensors(copy.deepcopy(collaborators[0].model))
    model_bytes = sum(t.numel() * t.element_size() for t in target.values())
    count = len(sources)
    weights = [1.0 / count] * count
    runs = {
        "linear (weighted average)": (lambda: merge_linear(target, sources, weights), count + 1),
        # the base is read as one more source: base + TIES(x_i − base)
        "TIES (merge_dare_ties, density 1)": (
            lambda: merge_dare_ties(target, sources[0], sources, weights),
            count + 2,
        ),
    }
    out: dict[str, Any] = {
        "model_bytes": model_bytes,
        "bandwidth": copy_bandwidth(args["copy_gb"]),
        "merges": [],
    }
    for label, (merge, passes) in runs.items():
        seconds = []
        for _ in range(args["repeats"]):
            with Clock() as clock:
                merge()
            seconds.append((clock.wall, clock.cpu))
        best_wall = min(s[0] for s in seconds)
        out["merges"].append(
            {"label": label, "bytes": passes * model_bytes, "wall": best_wall, "all": seconds}
        )
    return out


def copy_bandwidth(gigabytes: float, repeats: int = 5) -> float:
    """Bytes/s of ``dst.copy_(src)`` on a large float32 buffer (read + write both counted); best of runs."""
    numel = int(gigabytes * 1e9 / 4)
    src = torch.ones(numel)
    dst = torch.empty(numel)
    dst.copy_(src)  # touch every page first
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - started)
    return 2 * numel * 4 / best


# -- report ------------------------------------------------------------------------------------


def in_child(ctx: mp.context.BaseContext, function: Any, *args: Any) -> Any:
    """Run ``function`` in a fresh spawned interpreter: its peak RSS is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(function, *args).result()


def report(results: dict[str, dict], throughput: dict, args: argparse.Namespace, params: int) -> None:
    texts = {path: r["texts"] for path, r in results.items()}
    same = all(t == texts["memory"] for t in texts.values())
    print(
        f"\n{args.models} collaborators × {params / 1e6:.0f}M parameters (float32, "
        f"{throughput['model_bytes'] / 1e9:.2f} GB each), {args.cycles} cycles per path, "
        f"{len(PROMPTS)} prompts × {args.max_new_tokens} new tokens, {args.threads} torch thread(s); "
        f"same dev outputs on every path: {same}"
    )
    memory = results["memory"]
    print(
        "\n| path | setup s | cycle wall s | cycle CPU s | merge / save / load / eval s | resident MiB "
        "| merge peak MiB | cycle peak MiB | wall vs memory | CPU vs memory |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for path, result in results.items():
        wall, cpu = median(result, "wall"), median(result, "cpu")
        parts = " / ".join(
            f"{statistics_median([c['parts'][k] for c in result['cycles']]):.2f}"
            if k in result["cycles"][0]["parts"]
            else "–"
            for k in ("merge", "save", "load", "eval")
        )
        resident = result["rss_resident"]
        merge_peak = max(c["merge_peak"] for c in result["cycles"])
        peak = max(c["peak"] for c in result["cycles"])
        print(
            f"| {path} | {result['setup_s']:.1f} | {wall:.2f} | {cpu:.2f} | {parts} | {resident / MIB:,.0f} | "
            f"{merge_peak / MIB:,.0f} (+{(merge_peak - resident) / MIB:,.0f}) | "
            f"{peak / MIB:,.0f} (+{(peak - resident) / MIB:,.0f}) | "
            f"{wall / median(memory, 'wall'):.2f}× | {cpu / median(memory, 'cpu'):.2f}× |"
        )
    print(
        "(medians over cycles; peaks are the max over cycles, + is over the RSS after setup; ru_maxrss "
        + ", ".join(f"{p} {r['ru_maxrss'] / MIB:,.0f}" for p, r in results.items())
        + " MiB)"
    )
    bandwidth = throughput["bandwidth"]
    print(f"\nmemory bandwidth (torch copy of {args.copy_gb:g} GB, read + write): {bandwidth / 1e9:.1f} GB/s")
    print("| merge | GB moved (sources read + target written) | best s | GB/s | of bandwidth |")
    print("|---|---:|---:|---:|---:|")
    for merge in throughput["merges"]:
        rate = merge["bytes"] / merge["wall"]
        print(
            f"| {merge['label']} | {merge['bytes'] / 1e9:.2f} | {merge['wall']:.2f} | "
            f"{rate / 1e9:.2f} | {rate / bandwidth:.0%} |"
        )


def statistics_median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def median(result: dict, key: str) -> float:
    return statistics_median([c[key] for c in result["cycles"]])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=float, default=150, help="parameters per model, millions")
    parser.add_argument("--models", type=int, default=3, help="collaborators merged")
    parser.add_argument("--cycles", type=int, default=3, help="candidate cycles per path")
    parser.add_argument("--max_new_tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each process")
    parser.add_argument("--repeats", type=int, default=3, help="timed merges per throughput row")
    parser.add_argument("--copy_gb", type=float, default=1.0, help="buffer size of the bandwidth copy")
    parser.add_argument("--paths", default="memory,disk,moco")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    child_args = {k: getattr(args, k) for k in ("threads", "max_new_tokens", "repeats", "copy_gb")}
    with tempfile.TemporaryDirectory(prefix="moco_lit_merging_", dir=os.environ.get("TMPDIR")) as work:
        started = time.perf_counter()
        paths = in_child(ctx, build_models, Path(work), args.models, args.params)
        print(f"built {args.models} models in {time.perf_counter() - started:.0f} s under {work}", flush=True)
        weights = recipes(args.models, args.cycles)
        results = {}
        for path in args.paths.split(","):
            results[path] = in_child(ctx, run_path, path, paths, weights, work, child_args)
            print(f"{path}: done ({time.perf_counter() - started:.0f} s)", flush=True)
        throughput = in_child(ctx, run_throughput, paths, child_args)
    report(results, throughput, args, throughput["model_bytes"] // 4)


if __name__ == "__main__":
    main()
