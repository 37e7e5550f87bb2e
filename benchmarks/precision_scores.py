"""What bfloat16 weights cost in answers and gain in time, on a real recipe, in one run.

Runs the same recipe twice through ``python -m moco_lit test`` with the generation cache off, once
with the collaborators in float32 (the CPU default) and once in bfloat16 (``dtype: bfloat16`` in
each collaborator's spec: an opt-in precision whose outputs have their own cache keys), one after
the other, then prints both wall times, both scores, their ratio, how many outputs are identical
and on how many questions the per-question score agrees.

    python benchmarks/precision_scores.py                                  # recipes/real/single_model.yaml
    python benchmarks/precision_scores.py --recipe recipes/real/majority_vote.yaml --limit 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _collaborators(recipe: Path, dtype: str) -> str:
    specs = yaml.safe_load(recipe.read_text())["model"]["init_args"]["collaborators"]
    typed = [{**(s if isinstance(s, dict) else {"path": s}), "dtype": dtype} for s in specs]
    return json.dumps(typed)


def _run(recipe: Path, dtype: str, limit: int | None, run_dir: Path) -> tuple[float, dict, dict]:
    argv = [sys.executable, "-m", "moco_lit", "test", "-c", str(recipe)]
    argv += ["--model.collaborators", _collaborators(recipe, dtype), "--cache", "false"]
    argv += ["--wandb", "false", "--progress", "false", "--run_dir", str(run_dir)]
    if limit:
        argv += ["--data.limit", str(limit)]
    started = time.perf_counter()
    completed = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"{dtype} run failed:\n{completed.stderr[-3000:]}")
    metrics_path = next(run_dir.rglob("metrics.json"))
    records = [
        json.loads(line) for line in (metrics_path.parent / "predictions.jsonl").read_text().splitlines()
    ]
    return seconds, json.loads(metrics_path.read_text()), {str(r["id"]): r for r in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes/real/single_model.yaml")
    parser.add_argument("--limit", type=int, default=None, help="test questions (default: the recipe's)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            dtype: _run(args.recipe, dtype, args.limit, Path(tmp) / dtype)
            for dtype in ("float32", "bfloat16")
        }
    print(f"load average after: {os.getloadavg()}")
    (t32, m32, r32), (t16, m16, r16) = runs["float32"], runs["bfloat16"]
    same_output = sum(r32[i].get("output") == r16[i].get("output") for i in r32)
    same_score = sum(r32[i].get("score") == r16[i].get("score") for i in r32)
    for dtype, (seconds, metrics, _) in runs.items():
        print(json.dumps({"dtype": dtype, "seconds": round(seconds, 1), "score": metrics.get("score")}))
    print(
        f"bfloat16 / float32: {t32 / t16:.2f}x faster (wall, loading included); score {m16.get('score'):.3f} "
        f"vs {m32.get('score'):.3f}; outputs identical {same_output}/{len(r32)}; "
        f"per-question score agrees {same_score}/{len(r32)}"
    )


if __name__ == "__main__":
    main()
