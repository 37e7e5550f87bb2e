"""A heterogeneous real pool (marked `real`): SmolLM2-135M-Instruct with Gemma 3 270M base.

The two differ in tokenizer (49k vs 262k entries) and chat template (Gemma base has none), so
methods that hand over text must run on the pair while logit-level methods must refuse it with
their vocabulary error, and run on SmolLM2 with a LoRA-tuned SmolLM2 instead (one vocabulary).

python -m moco_lit models fetch smollm2-135m-instruct && python -m moco_lit models fetch gemma3-270m
python -m moco_lit data fetch modelco
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from moco_lit.cli import main
from tests.conftest import run_records

REAL_HOME = Path(os.environ.get("MOCO_LIT_HOME", Path.home() / ".cache" / "moco_lit")).expanduser()
SMOLLM2 = REAL_HOME / "models" / "smollm2-135m-instruct"
GEMMA = REAL_HOME / "models" / "gemma3-270m"
MOCO_DATA = REAL_HOME / "data" / "modelco-1.1.2"
PAIR = "[gemma3-270m, smollm2-135m-instruct]"  # base model first, as nudging expects

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(
        not (SMOLLM2 / "config.json").is_file(), reason="needs `models fetch smollm2-135m-instruct`"
    ),
    pytest.mark.skipif(not (MOCO_DATA / "mmlu_redux.json").is_file(), reason="needs `data fetch modelco`"),
]

# CI fetches SmolLM2 only: the LoRA pair below still runs there
needs_gemma = pytest.mark.skipif(
    not (GEMMA / "config.json").is_file(), reason="needs `models fetch gemma3-270m`"
)


@pytest.fixture
def cache_path(monkeypatch, tmp_path) -> str:
    """The real cache root (fetched models and data) with a private generation cache."""
    monkeypatch.setenv("MOCO_LIT_HOME", str(REAL_HOME))
    return str(tmp_path / "generations.sqlite")


def _test_args(method: str, collaborators: str, cache_path: str, limit: int, new_tokens: int) -> list[str]:
    return [
        "test",
        "--model",
        method,
        "--model.collaborators",
        collaborators,
        "--model.max_new_tokens",
        str(new_tokens),
        "--data.benchmark",
        "mmlu_redux",
        "--data.limit",
        str(limit),
        "--data.batch_size",
        str(limit),
        "--cache_path",
        cache_path,
        "--wandb",
        "false",
    ]


@needs_gemma
def test_gemma_base_reads_the_plain_text_fallback(cache_path):
    from moco_lit.collaborators import load_collaborator

    gemma = load_collaborator("gemma3-270m")
    smollm2 = load_collaborator("smollm2-135m-instruct")
    assert not gemma.has_chat_template and smollm2.has_chat_template
    assert gemma.render("What is 2 + 2?") == "User: What is 2 + 2?\n\nAssistant:"
    assert "<|im_start|>user\nWhat is 2 + 2?" in smollm2.render("What is 2 + 2?")
    assert len(gemma.tokenizer) > 5 * len(smollm2.tokenizer)  # truly different vocabularies


@needs_gemma
def test_nudging_hands_text_between_the_two_families(cache_path, run_cli):
    # Gemma base decodes; SmolLM2-Instruct writes the words Gemma is unsure of (and the first one)
    code, cli = run_cli(*_test_args("nudging", PAIR, cache_path, limit=3, new_tokens=12))
    records = run_records(cli)
    assert code == 0 and len(records) == 3
    for record in records:
        assert record["output"].strip() and 0.0 <= record["score"] <= 1.0
        details = record["details"]
        assert details["nudging_model"] == "smollm2-135m-instruct" and details["helper_tokens"] >= 1
        # the segments, re-joined, are the answer: text crossed the tokenizer boundary intact
        assert details["segments"][0][0] == "smollm2-135m-instruct"
        assert {name for name, _ in details["segments"]} <= {"gemma3-270m", "smollm2-135m-instruct"}
        assert "".join(text for _, text in details["segments"]).strip() == record["output"].strip()
    metrics = json.loads((cli.model.runtime.run_folder.path / "metrics.json").read_text())
    assert metrics["n"] == 3 and metrics["cost/calls"] > 0


@needs_gemma
def test_majority_vote_over_the_two_families(cache_path, run_cli):
    code, cli = run_cli(*_test_args("majority_vote", PAIR, cache_path, limit=3, new_tokens=12))
    records = run_records(cli)
    assert code == 0 and len(records) == 3
    for record in records:
        assert record["output"].strip() and 0.0 <= record["score"] <= 1.0
        # each family answered in its own format (Gemma from the plain-text fallback) and was read
        assert set(record["details"]["answers"]) == {"gemma3-270m", "smollm2-135m-instruct"}


@needs_gemma
def test_logit_fusion_refuses_the_two_vocabularies(cache_path, tmp_path, capsys):
    args = _test_args("logit_fusion", PAIR, cache_path, limit=2, new_tokens=4)
    code = main([*args, "--run_dir", str(tmp_path / "runs"), "--progress", "false"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err  # one line, not a stack
    assert "different vocabularies" in errors[0]
    assert "'gemma3-270m'" in errors[0] and "'smollm2-135m-instruct'" in errors[0]
    assert not list((tmp_path / "runs").rglob("predictions.jsonl"))


@pytest.fixture
def smollm2_lora(tmp_path) -> str:
    """A tiny random LoRA adapter (r=4 on q/v) on the fetched SmolLM2 folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(SMOLLM2, dtype=torch.float32)
    # init_lora_weights=False: random A and B, so the tuned model really differs from its base
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapter = tmp_path / "smollm2_lora"
    get_peft_model(base, config).save_pretrained(adapter)
    return str(adapter)


def test_logit_fusion_on_smollm2_and_its_lora_tuned_copy(cache_path, run_cli, smollm2_lora):
    pair = f"[{SMOLLM2}, {SMOLLM2}+{smollm2_lora}]"
    code, cli = run_cli(*_test_args("logit_fusion", pair, cache_path, limit=2, new_tokens=8))
    records = run_records(cli)
    assert code == 0 and len(records) == 2
    assert cli.model.collaborators[1].fingerprint != cli.model.collaborators[0].fingerprint
    for record in records:
        assert record["output"].strip() and 0.0 <= record["score"] <= 1.0
        assert 1 <= record["details"]["new_tokens"] <= 8
