"""A fingerprint of what moco_lit computes, to prove that a refactor changed nothing.

Runs, with a fresh generation cache (so every answer is generated again, nothing is read back):

1. the quickstart (its trained specialists are reused from the cache: they are inputs here), and
2. with ``--real``, a few ``recipes/real/`` recipes on the package-shipped models, on the first
   ``--limit`` dev and test questions,

then records for every run folder the method, the score and a SHA-256 of its outputs, sorted by
example id (``output`` of every predictions record). Two fingerprints are equal exactly when
every run gives the same score and the same output text for every example.

    python benchmarks/behaviour_fingerprint.py --real --out before.json          # on the old commit
    python benchmarks/behaviour_fingerprint.py --real --compare before.json      # on the new one

``--repo DIR`` runs the code of another checkout (e.g. a ``git worktree`` of the old commit) with
this script. The fingerprint of a reference commit is kept in ``benchmarks/fingerprints/``.
Exit code 1 when ``--compare`` finds a difference, with one line per differing run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REAL_RECIPES = ("moa", "nudging", "majority_vote", "cascade")


def _home() -> Path:
    return Path(os.environ.get("MOCO_LIT_HOME", Path.home() / ".cache" / "moco_lit")).expanduser()


def _fresh_home(root: Path) -> Path:
    """A MOCO_LIT_HOME whose models, data and trained specialists are the real ones, with an empty
    generation cache."""
    home = root / "home"
    home.mkdir()
    for name in ("models", "data", "quickstart"):
        source = _home() / name
        if source.exists():
            (home / name).symlink_to(source)
    return home


def _run(argv: list[str], repo: Path, env: dict[str, str]) -> None:
    print("$ python -m moco_lit " + " ".join(argv), flush=True)
    completed = subprocess.run(
        [sys.executable, "-m", "moco_lit", *argv], cwd=repo, env=env, capture_output=True, text=True
    )
    if completed.returncode != 0:
        sys.exit(f"failed ({completed.returncode}):\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")


def _fingerprint_runs(run_root: Path) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for metrics_path in sorted(run_root.rglob("metrics.json")):
        folder = metrics_path.parent
        predictions = folder / "predictions.jsonl"
        if not predictions.exists():
            continue
        records = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
        outputs = sorted((str(record["id"]), str(record.get("output", ""))) for record in records)
        digest = hashlib.sha256(json.dumps(outputs).encode()).hexdigest()[:16]
        metrics = json.loads(metrics_path.read_text())
        name = str(folder.relative_to(run_root).parent)
        key = name
        suffix = 2
        while key in found:
            key = f"{name}#{suffix}"
            suffix += 1
        found[key] = {"score": metrics.get("score"), "n": len(records), "outputs_sha256": digest}
    return found


def fingerprint(repo: Path, real: bool, limit: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = dict(os.environ, MOCO_LIT_HOME=str(_fresh_home(root)), WANDB_MODE="disabled")
        env["PYTHONPATH"] = str(repo)
        env.setdefault("OMP_NUM_THREADS", "1")
        runs = root / "runs"
        _run(["quickstart", "--run_dir", str(runs / "quickstart")], repo, env)
        if real:
            for name in REAL_RECIPES:
                _run(
                    [
                        "test",
                        "-c",
                        f"recipes/real/{name}.yaml",
                        "--data.limit",
                        str(limit),
                        "--data.dev_limit",
                        str(limit),
                        "--wandb",
                        "false",
                        "--progress",
                        "false",
                        "--run_dir",
                        str(runs / "real" / name),
                    ],
                    repo,
                    env,
                )
        return _fingerprint_runs(runs)


def canonical(fingerprint: dict) -> dict:
    """Runs of one method and benchmark told apart by what they computed, not by the order of their
    run ids (a run id changes with the configuration's wording, e.g. its callbacks list)."""
    groups: dict[str, list[dict]] = {}
    for key, value in fingerprint.items():
        groups.setdefault(key.split("#")[0], []).append(value)
    result = {}
    for name, values in groups.items():
        ordered = sorted(values, key=lambda v: (v["outputs_sha256"], str(v["score"]), v["n"]))
        for index, value in enumerate(ordered):
            result[name if index == 0 else f"{name}#{index + 1}"] = value
    return result


def compare(before: dict, after: dict) -> list[str]:
    before, after = canonical(before), canonical(after)
    lines = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            lines.append(f"{key}: missing now")
        elif key not in before:
            lines.append(f"{key}: new run")
        elif before[key] != after[key]:
            lines.append(f"{key}: {before[key]} -> {after[key]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--real", action="store_true", help="also run recipes/real/ on shipped models")
    parser.add_argument("--limit", type=int, default=4, help="dev and test questions per real recipe")
    parser.add_argument("--out", type=Path, help="write the fingerprint here")
    parser.add_argument("--compare", type=Path, help="compare with this fingerprint (exit 1 if any differs)")
    args = parser.parse_args()
    result = fingerprint(args.repo.resolve(), args.real, args.limit)
    for key, value in result.items():
        print(f"{key:45s} score={value['score']!s:8.8s} n={value['n']:<4d} outputs={value['outputs_sha256']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.compare:
        differences = compare(json.loads(args.compare.read_text()), result)
        print(f"{len(result)} runs, {len(differences)} differ from {args.compare}")
        for line in differences:
            print("  " + line)
        sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
