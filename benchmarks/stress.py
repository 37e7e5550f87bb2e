"""Stress: ``test`` over a 10,000-example benchmark with flat memory and a streamed predictions file.

Writes a JSONL exact-match benchmark of ``--examples`` generated questions, then runs
``python -m moco_lit test`` on it in a subprocess (its own MOCO_LIT_HOME, so the generation cache
starts empty and holds every answer at the end) while sampling the subprocess's resident memory
and the line count of its predictions.jsonl ten times a second. Prints the memory at the first
record, the peak and the end, the growth per 1,000 examples after the first record, and the
line count over time (it grows during the run: records are streamed to disk batch by batch).

    python benchmarks/stress.py                                   # scripted collaborator, 10,000 examples
    python benchmarks/stress.py --tiny --examples 1000            # a tiny random Llama, 1,000 examples
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_benchmark(path: Path, examples: int) -> Path:
    """``examples`` distinct multiplication questions (test) plus 4 for dev, one JSON record a line."""
    with open(path, "w", encoding="utf-8") as out:
        for split, count in (("dev", 4), ("test", examples)):
            for i in range(count):
                a, b = i % 8 + 2, i // 8 % 8 + 2  # one digit each: the scripted oracle knows them
                record = {"id": f"{split}-{i}", "split": split, "task_type": "exact_match"}
                record |= {"input": f"What is {a} times {b}? (question {i})", "output": str(a * b)}
                out.write(json.dumps(record) + "\n")
    return path


def build_tiny_model(folder: Path) -> str:
    """The test suite's tiny random Llama (hidden 32, 1 layer, byte-level BPE)."""
    sys.path.insert(0, str(ROOT))
    from moco_lit.quickstart import TinyModelConfig, build_tiny_llama, build_tokenizer, prompt_wording_corpus

    tokenizer = build_tokenizer(prompt_wording_corpus() + list(string.printable), vocab_size=400)
    config = TinyModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, max_positions=512)
    build_tiny_llama(tokenizer, config, seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc; psutil elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0
    except FileNotFoundError:
        pass
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def count_lines(run_dir: Path) -> int:
    files = list(run_dir.rglob("predictions.jsonl"))
    if not files:
        return 0
    with open(files[0], "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="moco_lit_stress_"))
    benchmark = write_benchmark(work / "stress.jsonl", args.examples)
    collaborator = build_tiny_model(work / "tiny") if args.tiny else "callable:moco_lit.demo.oracle"
    run_dir = work / "runs"
    command = [
        sys.executable,
        "-m",
        "moco_lit",
        "test",
        "--model",
        "single_model",
        "--model.collaborators",
        f"[{collaborator}]",
        "--model.max_new_tokens",
        str(args.max_new_tokens),
        "--data.benchmark",
        str(benchmark),
        "--data.batch_size",
        str(args.batch_size),
        "--run_dir",
        str(run_dir),
        "--trainer.enable_progress_bar",
        "false",
        "--progress",
        "false",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WANDB_MODE": "disabled",
        "MOCO_LIT_HOME": str(work / "home"),
    }
    started = time.monotonic()
    # stderr to a file, not a pipe: a pipe nobody reads during the run could fill and stall it
    with open(work / "stderr.txt", "w") as stderr_file:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr_file)
    samples: list[tuple[float, float, int]] = []  # (seconds, RSS MiB, predictions lines)
    while process.poll() is None:
        try:
            rss = rss_mib(process.pid)
        except (ProcessLookupError, FileNotFoundError):
            break
        if rss > 0:  # 0 once the process has exited (a zombie has no resident memory)
            samples.append((time.monotonic() - started, rss, count_lines(run_dir)))
        time.sleep(args.interval)
    try:
        if process.wait() != 0:
            stderr = (work / "stderr.txt").read_text(errors="replace")
            raise SystemExit(f"the run failed ({process.returncode}):\n{stderr[-3000:]}")
        return summarise(samples, count_lines(run_dir), time.monotonic() - started, run_dir, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarise(samples, lines: int, seconds: float, run_dir: Path, args) -> dict:
    streaming = [s for s in samples if 0 < s[2] < lines]
    first = next((s for s in samples if s[2] > 0), samples[-1])
    last = samples[-1]
    growth = (last[1] - first[1]) / max((last[2] - first[2]) / 1000, 1e-9) if last[2] > first[2] else 0.0
    metrics = json.loads(next(run_dir.rglob("metrics.json")).read_text())
    return {
        "collaborator": "tiny random Llama" if args.tiny else "scripted (callable)",
        "examples": args.examples,
        "records": lines,
        "score": metrics["score"],
        "seconds": round(seconds, 1),
        "examples_per_s": round(lines / seconds, 1),
        "rss_first_record_mib": round(first[1], 1),
        "rss_peak_mib": round(max(s[1] for s in samples), 1),
        "rss_end_mib": round(last[1], 1),
        "rss_growth_mib_per_1000_examples": round(growth, 2),
        "samples_while_streaming": len(streaming),
        "line_count_over_time": _timeline(samples),
    }


def _timeline(samples, points: int = 10) -> str:
    """A few ``seconds s: lines`` points spread over the streaming part of the run."""
    begin = next((i for i, s in enumerate(samples) if s[2] > 0), 0)
    chosen = samples[max(0, begin - 1) :]
    step = max(1, len(chosen) // points)
    return ", ".join(f"{t:.1f}s:{n}" for t, _, n in chosen[::step])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama instead of a scripted model")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_new_tokens", type=int, default=8)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    args = parser.parse_args()
    summary = run(args)
    for key, value in summary.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
