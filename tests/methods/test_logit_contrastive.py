"""logit_contrastive: end to end on tiny models, and the dev ranking picks who is contrasted."""

from __future__ import annotations

import json

import torch

from moco_lit.decoding import JointDecoder, contrast
from moco_lit.methods.logit.logit_contrastive import LogitContrastive
from tests.conftest import collaborators_arg
from tests.test_decoding import PROMPTS, lively_models  # noqa: F401  (fixture)


def test_logit_contrastive_runs_on_tiny_models(run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "logit_contrastive",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.max_new_tokens",
        "6",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
        "--data.dev_limit",
        "3",
    )
    assert code == 0
    model: LogitContrastive = cli.model
    assert bool(model.calibrated) and not torch.isnan(model.dev_scores).any()  # ranked on dev first
    records = [json.loads(line) for line in (model.runtime.run_folder.path / "predictions.jsonl").open()]
    top, bottom = model.contrast_models()
    assert len(records) == 3 and all(r["calls"] == 2 for r in records)  # top-1 and bottom-1 decode
    names = model.collaborator_names
    assert all(r["details"] == {"top": [names[top[0]]], "bottom": [names[bottom[0]]]} for r in records)


def test_the_dev_ranking_decides_top_and_bottom(lively_models):  # noqa: F811
    module = LogitContrastive(lively_models, k=1, lambda_=0.2, max_new_tokens=10, temperature=0.0)
    module.setup("test")
    module.dev_scores.copy_(torch.tensor([0.2, 0.9, 0.5], dtype=torch.float64))
    module.calibrated.fill_(True)
    assert module.contrast_models() == ([1], [0])
    batch = [{"id": str(i), "prompt": p, "record": {}} for i, p in enumerate(PROMPTS)]
    answers = module.collaborate(batch)
    # what the engine gives for (model 1) + 0.2 * (model 1 - model 0)
    decoder = JointDecoder([module.collaborators[1], module.collaborators[0]], module.decoding)
    expected = decoder.run_batch(PROMPTS, contrast([0], [1], 0.2), [0] * 3)
    assert [a.text for a in answers] == [e.text for e in expected]
    assert answers[0].by == [module.collaborator_names[1]]
    # another ranking contrasts other models, and decodes something else
    module.dev_scores.copy_(torch.tensor([0.9, 0.2, 0.5], dtype=torch.float64))
    assert module.contrast_models() == ([0], [1])
    assert [a.text for a in module.collaborate(batch)] != [a.text for a in answers]
