"""What a report merges: runs of one method with other settings keep their own rows, reruns with
the same settings are listed as superseded, pool order does not split a setting, and warnings name
the setting."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from moco_lit.report import load_runs, write_report

IDS = [str(i) for i in range(10)]
POOL = ["a", "b"]


def _folder(
    root: Path, name: str, method: str, scores: list[float], order=POOL, age: float = 0.0, **settings
):
    """A finished run folder written by hand: config.yaml, metrics.json, predictions.jsonl."""
    folder = root / "bench" / method / name
    folder.mkdir(parents=True)
    init_args = {"collaborators": [f"callable:tests.scripted.{m}" for m in order], "seed": 42, **settings}
    config = {
        "model": {"class_path": f"moco_lit.methods.text.{method}.M", "init_args": init_args},
        "data": {"benchmark": "bench", "limit": None},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    single = method == "single_model"
    records = []
    for key, score in zip(IDS, scores):
        details = {"scores": {"a": score, "b": 1.0 - score}} if single else {}
        records.append(
            {
                "id": key,
                "output": "x",
                "score": score,
                "calls": 1,
                "tokens": 10,
                "new_tokens": 2,
                "details": details,
            }
        )
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    metrics = {
        "benchmark": "bench",
        "method": method,
        "level": "text",
        "collaborators": list(order),
        "score": sum(scores) / len(scores),
        "n": len(scores),
        "cost/tokens": 10.0 * len(scores),
        "cost/calls": float(len(scores)),
        "split": "test",
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    stamp = time.time() - age
    os.utime(folder / "metrics.json", (stamp, stamp))
    return folder


@pytest.fixture
def root(tmp_path) -> Path:
    """single_model; moa at two temperatures; moa's first temperature run twice (in two roots'
    worth of folders); vote with the pool listed in the other order."""
    runs = tmp_path / "runs"
    _folder(runs, "s1", "single_model", [1.0] * 6 + [0.0] * 4)
    _folder(runs, "hot", "moa", [1.0] * 7 + [0.0] * 3, temperature=0.7, age=20)
    _folder(runs, "hot-again", "moa", [1.0] * 8 + [0.0] * 2, temperature=0.7, age=10)
    _folder(runs, "cold", "moa", [1.0] * 5 + [0.0] * 5, temperature=0.0)
    _folder(runs, "ba", "vote", [1.0] * 6 + [0.0] * 4, order=["b", "a"])
    return runs


def test_runs_with_other_settings_are_kept_apart_and_reruns_are_listed(root, tmp_path):
    files = write_report([root], tmp_path / "out", title="t")
    data = json.loads(files["json"].read_text())
    rows = {row["method"]: row for row in data["rows"]}
    assert set(rows) == {"single_model", "moa (temperature=0.7)", "moa (temperature=0.0)", "vote"}
    assert rows["moa (temperature=0.7)"]["score"] == 0.8  # the rerun, not the older 0.7
    assert rows["moa (temperature=0.0)"]["score"] == 0.5
    assert rows["moa (temperature=0.7)"]["run"].endswith("hot-again")
    # one setting whatever the order the pool was listed in: vote (b, a) is compared with a, b's single
    assert {row["setting"] for row in data["rows"]} == {"bench"} and rows["vote"]["pool"] == "a+b"
    assert rows["vote"]["best_single"] == 0.6 and rows["vote"]["gain"] == 0.0
    superseded = data["headline"]["superseded"]
    assert [(s["method"], s["setting"], Path(s["run"]).name) for s in superseded] == [
        ("moa (temperature=0.7)", "bench | a+b", "hot")
    ]
    markdown = files["md"].read_text()
    assert "Rerun with the same settings: moa (temperature=0.7) on bench | a+b: " in markdown
    assert "hot (older) is left out." in markdown


def test_variants_of_order_only_are_labelled_by_order(root):
    _folder(root, "ab", "vote", [1.0] * 7 + [0.0] * 3)
    from moco_lit.variants import separate

    runs, superseded = separate([r for r in load_runs([root]) if r.method == "vote"])
    assert sorted(r.label for r in runs) == ["vote (order=a,b)", "vote (order=b,a)"] and superseded == []


def test_a_warning_names_the_setting(root, tmp_path):
    _folder(tmp_path / "other", "c", "moa", [1.0] * 10, order=["a", "c"])
    files = write_report([root, tmp_path / "other"], tmp_path / "out", title="t")
    markdown = files["md"].read_text()
    assert "No single_model run covers the pool of: moa on bench | a+c (no gain shown)." in markdown


def test_seeds_of_one_variant_fold_into_its_row(root, tmp_path):
    _folder(root, "hot-seed-1", "moa", [1.0] * 6 + [0.0] * 4, temperature=0.7, seed=1)
    rows = json.loads(write_report([root], tmp_path / "out", title="t")["json"].read_text())["rows"]
    hot = next(row for row in rows if row["method"] == "moa (temperature=0.7)")
    assert hot["n_seeds"] == 2 and hot["score"] == pytest.approx((0.8 + 0.6) / 2)
    assert sum(row["method"].startswith("moa") for row in rows) == 2
