"""Generation speed of moco_lit's engine (``GenerationEngine``, cache off): new tokens per second.

CPU: tiny random Llamas (the test suite's size and the quickstart's size) answer the same 64
quickstart-style prompts with ``generation_batch_size`` 1, 16 and 64, greedy, ``--max_new_tokens``
each (a random model may stop early at its end token: only tokens really generated are counted).

CUDA (only when a GPU is present; skipped cleanly otherwise): a 0.5B and a 1.5B model in bf16 at
batch 1, 16 and 64, against the memory-bandwidth bound. Each decoding step reads every weight once
for the whole batch, so ``batch × bandwidth / weight bytes`` tokens/s is the ceiling. With no Hub
access the models are Qwen2.5-0.5B/1.5B-shaped with random weights (shapes are what the bound
depends on; a random model rarely emits its end token, so every step is counted); pass
``--gpu_model PATH`` (repeatable) to time real checkpoints from local folders instead.

    python benchmarks/generation_speed.py                      # CPU (and CUDA when present)
    python benchmarks/generation_speed.py --threads 2 --max_new_tokens 32
"""

from __future__ import annotations

import argparse
import os
import string
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from moco_lit.collaborators import Collaborator, CollaboratorSpec, load_collaborator  # noqa: E402
from moco_lit.generation import DecodingConfig, GenerationEngine  # noqa: E402

BATCH_SIZES = (1, 16, 64)
# peak HBM bandwidth, bytes/s, by a substring of torch.cuda.get_device_name()
PEAK_BANDWIDTH = {
    "H200": 4.8e12,
    "H100 NVL": 3.9e12,
    "H100 PCIe": 2.0e12,
    "H100": 3.35e12,  # SXM (HBM3)
    "A100-SXM4-80GB": 2.039e12,
    "A100 80GB PCIe": 1.935e12,
    "A100": 1.555e12,
}
# Qwen2.5 shapes (hidden, intermediate, layers, heads, kv heads); vocabulary 151,936, tied embeddings
QWEN_SHAPES = {"qwen2.5-0.5b-shaped": (896, 4864, 24, 14, 2), "qwen2.5-1.5b-shaped": (1536, 8960, 28, 12, 2)}


def prompts(count: int) -> list[str]:
    """Quickstart-style questions of varied length (so batches carry some padding, as in real runs)."""
    out = []
    for i in range(count):
        a, b = i % 9 + 1, (i * 7) % 9 + 1
        padding = " Think step by step and answer with a number." * (i % 4)
        out.append(f"What is {a} times {b}?{padding}")
    return out


def tiny_tokenizer():
    from moco_lit.quickstart import build_tokenizer, prompt_wording_corpus

    return build_tokenizer(prompt_wording_corpus() + list(string.printable), vocab_size=400)


def tiny_model(folder: Path, hidden: int, layers: int, heads: int, intermediate: int) -> str:
    from moco_lit.quickstart import TinyModelConfig, build_tiny_llama

    tokenizer = tiny_tokenizer()
    config = TinyModelConfig(hidden, layers, heads, intermediate, max_positions=512)
    build_tiny_llama(tokenizer, config, seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def tokens_per_second(collaborator: Collaborator, batch_size: int, texts: list[str], max_new: int) -> tuple:
    engine = GenerationEngine(cache=None, batch_size=batch_size, progress=False)
    decoding = DecodingConfig(max_new_tokens=max_new)
    engine.generate(collaborator, texts[: min(batch_size, 4)], DecodingConfig(max_new_tokens=2))  # warm-up
    if collaborator.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    outputs = engine.generate(collaborator, texts, decoding)
    if collaborator.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    new_tokens = sum(o.new_tokens for o in outputs)
    return new_tokens / seconds, new_tokens, seconds


def cpu_table(args: argparse.Namespace, work: Path) -> None:
    sizes = {
        "tiny (hidden 32, 1 layer; tests)": (32, 1, 2, 64),
        "quickstart (hidden 128, 2 layers)": (128, 2, 4, 512),
    }
    texts = prompts(args.prompts)
    print(
        f"CPU, {torch.get_num_threads()} threads, {len(texts)} prompts, {args.max_new_tokens} new tokens each"
    )
    print("| model | parameters | " + " | ".join(f"batch {b} tok/s" for b in BATCH_SIZES) + " |")
    print("|---|---:|" + "---:|" * len(BATCH_SIZES))
    for label, shape in sizes.items():
        folder = work / label.split()[0]
        collaborator = load_collaborator(tiny_model(folder, *shape), "cpu")
        params = sum(p.numel() for p in collaborator.model.parameters())
        cells = []
        for batch in BATCH_SIZES:
            rate, new_tokens, seconds = tokens_per_second(collaborator, batch, texts, args.max_new_tokens)
            cells.append(f"{rate:,.0f} ({new_tokens} in {seconds:.1f} s)")
        print(f"| {label} | {params:,} | " + " | ".join(cells) + " |")


def peak_bandwidth(name: str, override: float | None) -> float | None:
    if override:
        return override * 1e9
    return next((value for key, value in PEAK_BANDWIDTH.items() if key in name), None)


def random_qwen_shaped(label: str) -> Collaborator:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    hidden, intermediate, layers, heads, kv_heads = QWEN_SHAPES[label]
    config = Qwen2Config(
        vocab_size=151_936,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16).eval()
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "left"
    # a random model almost never emits its end token, so every step decodes a token
    model.generation_config.eos_token_id = None
    return Collaborator(
        name=label, spec=CollaboratorSpec(label), tokenizer=tokenizer, model=model, fingerprint=label
    )


def gpu_table(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        print("\nCUDA: no GPU here; the bf16 bandwidth-bound table is skipped")
        return
    name = torch.cuda.get_device_name()
    bandwidth = peak_bandwidth(name, args.bandwidth_gbs)
    texts = prompts(64)
    print(f"\n{name}, bf16, {len(texts)} prompts, {args.gpu_new_tokens} new tokens each")
    print(
        f"peak memory bandwidth assumed: {bandwidth / 1e12:.2f} TB/s"
        if bandwidth
        else "peak bandwidth unknown"
    )
    print("| model | weight GB | batch | tok/s | bound tok/s | of bound |")
    print("|---|---:|---:|---:|---:|---:|")
    models = [("local:" + p, p) for p in args.gpu_model] or [(label, None) for label in QWEN_SHAPES]
    for label, path in models:
        if path:
            collaborator = load_collaborator({"path": path, "dtype": "bfloat16"}, "cuda")
        else:
            collaborator = random_qwen_shaped(label)
        weight_bytes = sum(p.numel() * p.element_size() for p in collaborator.model.parameters())
        for batch in BATCH_SIZES:
            rate, _, _ = tokens_per_second(collaborator, batch, texts, args.gpu_new_tokens)
            bound = batch * bandwidth / weight_bytes if bandwidth else float("nan")
            print(
                f"| {label} | {weight_bytes / 1e9:.2f} | {batch} | {rate:,.0f} | {bound:,.0f} | {rate / bound:.1%} |"
            )
        del collaborator
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--gpu_new_tokens", type=int, default=128)
    parser.add_argument("--gpu_model", action="append", default=[], help="local model folder to time on CUDA")
    parser.add_argument("--bandwidth_gbs", type=float, default=None, help="peak GB/s (default: by GPU name)")
    parser.add_argument("--skip_cpu", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # keep the output to the tables
    import tempfile

    with tempfile.TemporaryDirectory(prefix="moco_lit_speed_") as work:
        if not args.skip_cpu:
            cpu_table(args, Path(work))
        gpu_table(args)


if __name__ == "__main__":
    main()
