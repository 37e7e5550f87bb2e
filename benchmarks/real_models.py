"""Load and generation timings of the package-shipped checkpoints, and a GGUF fidelity check.

For every fetched short name (or the ones named): time loading the converted folder, greedy-decode
a few prompts (chat template where the model has one, plain text otherwise) and report tokens per
second. With `--compare-gguf`, also load the original `.gguf` kept with the folder through
transformers and check that greedy outputs are identical token for token.

    python benchmarks/real_models.py                      # all fetched models
    python benchmarks/real_models.py gemma3-270m --compare-gguf --max-new-tokens 32
"""

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from moco_lit import models

PROMPTS = [
    "What is the capital of France?",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Natalia sold clips to 48 friends in April, and half as many in May. How many clips did she sell?",
]


def encode(tokenizer, prompt: str) -> torch.Tensor:
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    return tokenizer(prompt + "\n", return_tensors="pt").input_ids


def greedy(model, tokenizer, max_new_tokens: int) -> tuple[list[list[int]], int, float]:
    """New token ids per prompt, tokens generated and seconds spent."""
    with torch.no_grad():  # warm-up: the first call pays one-off costs that are not decoding speed
        ids = encode(tokenizer, PROMPTS[0])
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False)
    outputs, generated, start = [], 0, time.perf_counter()
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = encode(tokenizer, prompt)
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False
            )
            new = out[0, ids.shape[1] :].tolist()
            outputs.append(new)
            generated += len(new)
    return outputs, generated, time.perf_counter() - start


def measure(name: str, max_new_tokens: int, compare_gguf: bool) -> dict:
    folder = Path(models.resolve_model(name))
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    result = {"model": name, "folder_load_s": round(time.perf_counter() - start, 2)}
    outputs, generated, seconds = greedy(model, tokenizer, max_new_tokens)
    result |= {
        "chat_template": bool(tokenizer.chat_template),
        "tokens_per_s": round(generated / seconds, 1),
        "sample": tokenizer.decode(outputs[0], skip_special_tokens=True),
    }
    if compare_gguf:
        gguf_path = models.fetched_gguf(name)
        start = time.perf_counter()
        gguf_model, gguf_tokenizer = models.load_gguf(gguf_path)
        result["gguf_load_s"] = round(time.perf_counter() - start, 2)
        gguf_outputs, _, _ = greedy(gguf_model, gguf_tokenizer, max_new_tokens)
        result["identical_to_gguf"] = gguf_outputs == outputs
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="short names (default: every fetched one)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--compare-gguf", action="store_true", help="also load the .gguf and compare outputs")
    args = parser.parse_args()
    torch.manual_seed(0)
    names = args.names or [row["name"] for row in models.list_models() if row["fetched"]]
    if not names:
        raise SystemExit("nothing fetched: python -m moco_lit models fetch smollm2-135m-instruct")
    for name in names:
        print(json.dumps(measure(name, args.max_new_tokens, args.compare_gguf)), flush=True)


if __name__ == "__main__":
    main()
