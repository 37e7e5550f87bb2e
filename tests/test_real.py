"""Real models on real MoCo questions (marked `real`): run where SmolLM2 and MoCo's data are fetched.

python -m moco_lit models fetch smollm2-135m-instruct && python -m moco_lit data fetch modelco
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

REAL_HOME = Path(os.environ.get("MOCO_LIT_HOME", Path.home() / ".cache" / "moco_lit")).expanduser()
SMOLLM2 = REAL_HOME / "models" / "smollm2-135m-instruct"
MOCO_DATA = REAL_HOME / "data" / "modelco-1.1.2"

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(
        not (SMOLLM2 / "config.json").is_file(), reason="needs `models fetch smollm2-135m-instruct`"
    ),
    pytest.mark.skipif(not (MOCO_DATA / "gsm8k.json").is_file(), reason="needs `data fetch modelco`"),
]


@pytest.fixture
def real_home(monkeypatch, tmp_path):
    """The real cache root (fetched models and data) with a private generation cache."""
    monkeypatch.setenv("MOCO_LIT_HOME", str(REAL_HOME))
    return tmp_path / "generations.sqlite"


@pytest.mark.parametrize(("benchmark", "max_new_tokens"), [("mmlu_redux", 24), ("gsm8k", 48)])
def test_single_model_on_moco_questions(benchmark, max_new_tokens, real_home, run_cli):
    code, cli = run_cli(
        "test",
        "--model",
        "single_model",
        "--model.collaborators",
        "[smollm2-135m-instruct]",
        "--model.max_new_tokens",
        str(max_new_tokens),
        "--data.benchmark",
        benchmark,
        "--data.limit",
        "20",
        "--data.batch_size",
        "20",
        "--cache_path",
        str(real_home),
        "--wandb",
        "false",
    )
    folder = cli.model.runtime.run_folder.path
    records = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 20 and len({r["id"] for r in records}) == 20
    assert all(0.0 <= r["score"] <= 1.0 and r["output"].strip() for r in records)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["n"] == 20 and 0.0 <= metrics["score"] <= 1.0
    assert (folder / "config.yaml").is_file()


def test_engine_equals_model_generate_on_chat_prompts(real_home):
    from moco_lit.collaborators import load_collaborator
    from moco_lit.generation import DecodingConfig, GenerationEngine

    collaborator = load_collaborator("smollm2-135m-instruct")
    prompts = ["What is the capital of France?", "Name three primary colours, briefly, as a list please."]
    outputs = GenerationEngine(batch_size=2).generate(
        collaborator, prompts, DecodingConfig(max_new_tokens=16)
    )
    tokenizer, model = collaborator.tokenizer, collaborator.model
    rendered = [collaborator.render(p) for p in prompts]
    batch = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False)
    assert batch["attention_mask"].min() == 0  # the batch really is padded
    with torch.no_grad():
        expected = model.generate(
            **batch, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    for row, output in enumerate(outputs):
        new = expected[row, batch["input_ids"].shape[1] :].tolist()
        eos = model.generation_config.eos_token_id
        stops = {eos} if isinstance(eos, int) else set(eos or [])
        cut = next((i for i, t in enumerate(new) if t in stops or t == tokenizer.pad_token_id), len(new))
        assert output.raw_text == tokenizer.decode(new[:cut], skip_special_tokens=True)
