"""MoCo configs become recipes the CLI accepts; hyperparameter names and gpu_ids are mapped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from moco_lit.convert import convert_config
from moco_lit.errors import UserError

MODELS = ["Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "google/gemma-2-9b-it"]
GENERATION = {"max_response_length": 512, "temperature": 0.7, "top_p": 0.9, "batch_size": 32}

# our own equivalents of MoCo's examples/*.json: one per level, with their method-specific knobs
MOCO_EXAMPLES = {
    "text_majority_vote": {"tie": "random"},
    "text_moa": {"round": 2},
    "text_multiagent_feedback": {"round": 3, "feedback_count": 2},
    "text_structure": {"structure_type": "chain", "num_rounds": 2},
    "api_cascade": {"mode": "logit", "percentage": 0.5},
    "api_graph_routing": {
        "embedding_model_name": "sentence-transformers/all-MiniLM-L6-v2",
        "hidden_features": 8,
    },
    "logit_logit_contrastive": {"k": 1, "lambda_": 0.2},
    "weight_dare_ties": {"base_model_name": "Qwen/Qwen2.5-7B", "density": 0.7, "swarm_base_path": "logs/x"},
    "single_model": {},
}


def moco_config(method: str, extra: dict, gpu_ids=(0, 1, 2)) -> dict:
    models = MODELS[:1] if method == "single_model" else MODELS
    return {
        "method": method,
        "task": "gsm8k",
        "task_type": "exact_match",
        "gpu_ids": list(gpu_ids),
        "model_names": models,
        "hyperparameters": {**GENERATION, **extra},
    }


@pytest.mark.parametrize("method", sorted(MOCO_EXAMPLES))
def test_each_moco_example_becomes_a_recipe_the_cli_accepts(method, tmp_path, capsys):
    from moco_lit.cli import main

    config_path = tmp_path / f"{method}.json"
    config_path.write_text(json.dumps(moco_config(method, MOCO_EXAMPLES[method])))
    recipe = tmp_path / f"{method}.yaml"
    assert main(["convert", str(config_path), "-o", str(recipe)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["test", "-c", str(recipe), "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    init_args = printed["model"]["init_args"]
    assert init_args["collaborators"] == moco_config(method, {})["model_names"]
    assert init_args["max_new_tokens"] == 512 and init_args["temperature"] == 0.7
    assert init_args["generation_batch_size"] == 32
    assert printed["data"]["benchmark"] == "gsm8k" and printed["trainer"]["devices"] == [0, 1, 2]
    for key, value in MOCO_EXAMPLES[method].items():
        mapped = {"embedding_model_name": "embedding_model"}.get(key, key)
        if key != "swarm_base_path":
            assert init_args[mapped] == value


def test_method_names_hyperparameters_and_devices_are_mapped():
    recipe, notes = convert_config(
        moco_config("text_majority_vote", {"tie": "dev-based", "wait_flag": True, "load_in_8bit": True}, [])
    )
    assert recipe["model"]["class_path"] == "moco_lit.methods.text.majority_vote.MajorityVote"
    assert recipe["model"]["init_args"]["tie"] == "dev-based"
    assert recipe["trainer"] == {"accelerator": "cpu", "devices": 1}  # no gpu_ids: CPU
    assert notes == ["hyperparameter wait_flag=True has no counterpart in moco_lit's majority_vote"]


def test_ratio_becomes_a_limit_when_the_benchmark_is_known():
    config = moco_config("text_moa", {"ratio": 0.5})
    config["task"] = "quickstart_multiply"
    recipe, notes = convert_config(config)
    assert recipe["data"]["limit"] == 30 and not notes  # half of 60 test examples


def test_unknown_method_names_the_available_ones(tmp_path: Path):
    with pytest.raises(UserError, match="available methods: .*majority_vote"):
        convert_config(moco_config("text_telepathy", {}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"task": "gsm8k"}))
    from moco_lit.cli import main

    assert main(["convert", str(bad)]) == 2
