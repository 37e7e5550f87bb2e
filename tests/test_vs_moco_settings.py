"""benchmarks/vs_moco.py gives MoCo and moco_lit the same settings: the recipe it runs is the
conversion of the very config MoCo gets, with bfloat16 collaborators and the CPU trainer added."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from benchmarks import vs_moco


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A moco_lit home with both pool models (a config file each) and a MoCo-format gsm8k."""
    monkeypatch.setenv("MOCO_LIT_HOME", str(tmp_path / "home"))
    for name in vs_moco.DESCRIPTIONS:
        folder = tmp_path / "home" / "models" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    data = tmp_path / "home" / "data" / "modelco-1.1.2"
    data.mkdir(parents=True)
    records = {
        split: [{"id": i, "input": f"{split} {i}", "output": str(i)} for i in range(5)]
        for split in ("dev", "test")
    }
    (data / "gsm8k.json").write_text(json.dumps({"dataset": "gsm8k", "task_type": "exact_match", **records}))
    return tmp_path


def settings(**changes) -> argparse.Namespace:
    values = dict(max_new_tokens=48, temperature=0.0, sample_temperature=0.7, samples=3, batch_size=32)
    return argparse.Namespace(**(values | changes))


@pytest.mark.parametrize("method", sorted(vs_moco.METHODS))
@pytest.mark.parametrize("pool", sorted(vs_moco.POOLS))
def test_the_recipe_is_the_conversion_of_mocos_config(home, method, pool):
    config = vs_moco.moco_config(method, vs_moco.POOLS[pool], "gsm8k", "exact_match", settings())
    recipe = yaml.safe_load(vs_moco.moco_lit_recipe(config, home).read_text())
    args, hyper = recipe["model"]["init_args"], config["hyperparameters"]
    assert [c["path"] for c in args["collaborators"]] == config["model_names"]
    assert {c["dtype"] for c in args["collaborators"]} == {"bfloat16"}
    assert args["max_new_tokens"] == hyper["max_response_length"] == 48
    assert args["temperature"] == hyper["temperature"]
    assert args["generation_batch_size"] == hyper["batch_size"] == 32
    for key in ("round", "tie", "feedback_count", "model_descriptions"):
        if key in hyper:
            assert args[key] == hyper[key]
    assert recipe["trainer"] == {"accelerator": "cpu", "devices": 1}
    assert recipe["data"]["task_type"] == "exact_match"


def test_majority_vote_samples_repeat_the_pool_at_the_sampling_temperature(home):
    config = vs_moco.moco_config("majority_vote", vs_moco.POOLS["mixed"], "gsm8k", "exact_match", settings())
    assert len(config["model_names"]) == 6
    assert config["hyperparameters"]["temperature"] == 0.7


def test_both_sides_read_the_first_examples_of_each_split(home):
    path, task_type = vs_moco.write_task("gsm8k", 3, 2, home)
    data = json.loads(path.read_text())
    assert task_type == "exact_match"
    assert [r["id"] for r in data["dev"]] == [0, 1] and [r["id"] for r in data["test"]] == [0, 1, 2]
