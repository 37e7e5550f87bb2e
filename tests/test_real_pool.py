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
from moco_lit.methods.api.switch_generation import WAIT_TEXT
from tests.conftest import run_records

REAL_HOME = Path(os.environ.get("MOCO_LIT_HOME", Path.home() / ".cache" / "moco_lit")).expanduser()
SMOLLM2 = REAL_HOME / "models" / "smollm2-135m-instruct"
GEMMA = REAL_HOME / "models" / "gemma3-270m"
MOCO_DATA = REAL_HOME / "data" / "modelco-1.1.2"
PAIR = "[gemma3-270m, smollm2-135m-instruct]"  # base model first, as nudging expects
SMOLLM2_FIRST = "[smollm2-135m-instruct, gemma3-270m]"  # generator / weak model first
NAMES = {"gemma3-270m", "smollm2-135m-instruct"}

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


def _pair_records(run_cli, cache_path: str, method: str, *overrides: str, limit: int = 2) -> list[dict]:
    """A test run of ``method`` on SmolLM2 + Gemma (dev-set choices on as many dev questions)."""
    args = _test_args(method, SMOLLM2_FIRST, cache_path, limit=limit, new_tokens=12)
    code, cli = run_cli(*args, "--data.dev_limit", str(limit), *overrides)
    records = run_records(cli)
    assert code == 0 and len(records) == limit
    for record in records:
        assert record["output"].strip() and 0.0 <= record["score"] <= 1.0
    return records


def _rejoined(segments: list[list[str]]) -> str:
    assert {name for name, _ in segments} <= NAMES
    return "".join(text for _, text in segments).strip()


@needs_gemma
def test_mentor_collab_consults_gemma_while_smollm2_writes(cache_path, run_cli):
    # nearly every step is a decision point (a draw in 1..100 below 100): where Gemma's next word
    # differs, both write a 4-token patch
    overrides = ["--model.decision_proportion", "100", "--model.patch_size", "4"]
    records = _pair_records(run_cli, cache_path, "mentor_collab", *overrides)
    for record in records:
        details = record["details"]
        # Gemma's next word differed at least once, and both wrote a patch from the shared text
        assert details["mode"] == "free" and details["decisions"] >= 1
        assert 0 <= details["mentor_patches"] <= details["decisions"]  # SmolLM2 judged each branch
        assert _rejoined(details["segments"]) == record["output"].strip()
        # SmolLM2 writes every word; Gemma's text enters only through the patches SmolLM2 kept
        authors = {name for name, _ in details["segments"]}
        assert ("gemma3-270m" in authors) == (details["mentor_patches"] > 0)
        assert record["answered_by"] == ["smollm2-135m-instruct", "gemma3-270m"]


@needs_gemma
def test_switch_generation_passes_the_answer_between_families(cache_path, run_cli):
    # SmolLM2 as the selector LM names the writer of each 4-token patch: no training needed
    overrides = ["--model.selector_model", "smollm2-135m-instruct", "--model.patch_size", "4"]
    overrides += ["--model.selector_max_new_tokens", "4", "--model.wait_flag", "true"]
    records = _pair_records(run_cli, cache_path, "switch_generation", *overrides)
    for record in records:
        details = record["details"]
        assert len(details["writers"]) == 3 and set(details["writers"]) <= NAMES  # 12 // 4 patches
        # each patch a request of its own, in turn in the answer; a writer that stopped early (Gemma
        # base may write nothing) is told " Wait," and the turns go on (wait_flag)
        position = 0
        for _, text in details["segments"]:
            position = record["output"].index(text.removesuffix(WAIT_TEXT).strip(), position)
    assert set().union(*(r["details"]["writers"] for r in records)) == NAMES


def _both_answered_every_round(details: dict) -> None:
    assert details["rounds"] and all(set(said) == NAMES for said in details["rounds"])
    assert all(set(answers) == NAMES for answers in details["round_answers"])


def _check_multiagent_refine(record: dict) -> None:
    _both_answered_every_round(record["details"])
    assert len(record["details"]["rounds"]) == 2
    assert record["answered_by"] == record["details"]["summariser"] in NAMES


def _check_moa(record: dict) -> None:
    _both_answered_every_round(record["details"])
    assert record["answered_by"] == record["details"]["aggregator"] in NAMES


def _check_cascade(record: dict) -> None:
    trail = record["details"]["trail"]
    assert trail[0]["model"] == "smollm2-135m-instruct"  # weak model first
    assert [step["model"] for step in trail] == ["smollm2-135m-instruct", "gemma3-270m"][: len(trail)]
    assert record["details"]["level"] == len(trail) - 1 and record["answered_by"] == trail[-1]["model"]
    # the last model always answers, so it has no confidence; sampled answers do reach it
    for step in trail:
        last = step["model"] == "gemma3-270m"
        assert step["confidence"] is None if last else 0.0 <= step["confidence"] <= 1.0


def _check_llm_blender(record: dict) -> None:
    details = record["details"]
    assert set(details["candidates"]) == NAMES and all(details["candidates"].values())
    assert set(details["wins"]) == NAMES and sum(details["wins"].values()) == 1  # one pair, one winner
    assert set(details["top"]) == NAMES and record["answered_by"] == "smollm2-135m-instruct"  # the fuser


def _check_knowledge_card(record: dict) -> None:
    assert set(record["details"]["cards"]) == NAMES
    assert record["answered_by"] == record["details"]["answerer"] in NAMES


def _check_structure(record: dict) -> None:
    details = record["details"]
    _both_answered_every_round(details)
    # a one-way edge: Gemma reads SmolLM2, SmolLM2 reads nobody and keeps its first answer
    assert details["neighbours"] == {"smollm2-135m-instruct": [], "gemma3-270m": ["smollm2-135m-instruct"]}
    first, second = details["rounds"]
    assert second["smollm2-135m-instruct"] == first["smollm2-135m-instruct"]
    assert record["answered_by"] == details["final_node"] in NAMES


TEXT_METHODS = {
    "multiagent_refine": (["--model.round", "2"], _check_multiagent_refine),
    "moa": (["--model.round", "1"], _check_moa),
    "cascade": ([], _check_cascade),
    "llm_blender": (
        [
            "--model.ranker",
            "1",
            "--model.fuser",
            "0",
            "--model.top_k",
            "2",
            "--model.ranker_max_new_tokens",
            "4",
        ],
        _check_llm_blender,
    ),
    "knowledge_card": ([], _check_knowledge_card),
    # structure_matrix[j][i] = 1: model i reads model j
    "structure": (
        [
            "--model.structure_type",
            "other",
            "--model.structure_matrix",
            "[[0, 1], [0, 0]]",
            "--model.num_rounds",
            "2",
        ],
        _check_structure,
    ),
}


@needs_gemma
@pytest.mark.parametrize("method", sorted(TEXT_METHODS))
def test_text_methods_run_on_the_two_families(method, cache_path, run_cli):
    overrides, check = TEXT_METHODS[method]
    for record in _pair_records(run_cli, cache_path, method, *overrides):
        check(record)


@needs_gemma
@pytest.mark.parametrize("method", ["logit_fusion", "logit_contrastive"])
def test_logit_methods_refuse_the_two_vocabularies(method, cache_path, tmp_path, capsys):
    args = _test_args(method, PAIR, cache_path, limit=2, new_tokens=4)
    code = main([*args, "--run_dir", str(tmp_path / "runs"), "--progress", "false"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err  # one line, not a stack
    assert errors[0].startswith(f"error: {method} ") and "different vocabularies" in errors[0]
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
