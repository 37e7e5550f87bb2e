"""cascade against MoCo's ``api_cascade``: logit mode (dev thresholds from the scripted
confidences, 256-token scored levels) and just_ask mode."""

from __future__ import annotations

import pytest
import torch

from tests.parity.moco_harness import Ask, assert_same, assert_same_calls, boxed, run_moco, run_moco_lit
from tests.parity.test_discussion import TASK

MODELS = ["alpha", "beta", "gamma"]
# (answer, confidence) per model and example; gamma, the last level, needs no confidence
REPLIES = {
    "alpha": {
        "d0": ("5", 0.9),
        "d1": ("0", 0.6),
        "d2": ("7", 0.8),  # the median: alpha's threshold is 0.8
        "t0": ("21", 0.95),
        "t1": ("0", 0.8),  # exactly the threshold: accepted
        "t2": ("0", 0.3),
        "t3": ("0", 0.1),
    },
    "beta": {
        "d0": ("5", 0.5),
        "d1": ("0", 0.7),
        "d2": ("0", 0.3),
        "t2": ("63", 0.6),
        "t3": ("0", 0.4),
    },
    "gamma": {"t3": ("84", None)},
}


def logit_policy(ask: Ask):
    answer, confidence = REPLIES[ask.model][ask.example]
    return boxed(answer) if confidence is None else (boxed(answer), confidence)


def budgets_of_asks(monkeypatch) -> list[tuple[int, int]]:
    """(model, max_new_tokens) of every ``ask`` of moco_lit from now on."""
    from moco_lit.methods.core.module import CollaborationModule

    seen, original = [], CollaborationModule.ask

    def spy(self, model, prompts, ids, *, step="", decoding=None):
        seen.append((model, (decoding or self.decoding).max_new_tokens))
        return original(self, model, prompts, ids, step=step, decoding=decoding)

    monkeypatch.setattr(CollaborationModule, "ask", spy)
    return seen


def test_cascade_logit_matches_moco(run_cli, tmp_path, monkeypatch):
    moco = run_moco(monkeypatch, tmp_path, "api_cascade", TASK, MODELS, logit_policy, {"mode": "logit"})
    budgets = budgets_of_asks(monkeypatch)
    lit = run_moco_lit(
        run_cli,
        tmp_path,
        "cascade",
        TASK,
        MODELS,
        logit_policy,
        "--model.mode",
        "logit",
        "--model.max_new_tokens",
        "512",
    )
    assert_same_calls(moco.calls, lit.calls)
    assert not [c for c in lit.calls if c.split == "dev" and c.model == "gamma"]  # no threshold, no dev
    assert lit.module.thresholds.tolist() == pytest.approx([0.8, 0.5])
    levels = [[step["model"] for step in r["details"]["trail"]] for r in lit.records]
    assert levels == [["alpha"], ["alpha"], ["alpha", "beta"], ["alpha", "beta", "gamma"]]
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score == 0.75
    # scored levels (and dev) get 256 new tokens, the last level the run's 512
    assert set(moco.script.scored_budgets) == {256}
    assert sorted(set(budgets)) == [(0, 256), (1, 256), (2, 512)]


def test_cascade_just_ask_matches_moco(run_cli, tmp_path, monkeypatch):
    doubts = {"alpha": {"t1", "t2", "t3"}, "beta": {"t3"}}

    def policy(ask: Ask) -> str:
        answer = REPLIES[ask.model].get(ask.example, ("0", None))[0]
        if ask.example in doubts.get(ask.model, ()):
            return boxed(answer) + " but I am unconfident"
        return boxed(answer) + (" Unconfident? No." if ask.example == "t0" else "")

    moco = run_moco(monkeypatch, tmp_path, "api_cascade", TASK, MODELS, policy, {"mode": "just_ask"})
    lit = run_moco_lit(run_cli, tmp_path, "cascade", TASK, MODELS, policy, "--model.mode", "just_ask")
    assert_same_calls(moco.calls, lit.calls)
    assert not [c for c in lit.calls if c.split == "dev"]
    # t0's capitalised "Unconfident" is not the marker (MoCo matches the word as written)
    levels = [len(r["details"]["trail"]) for r in lit.records]
    assert levels == [1, 2, 2, 3]
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score


# -- the confidence measure, against MoCo's scored generation on tiny real models -------------


def moco_scored_confidences(monkeypatch, collaborator, prompts, max_new_tokens, batch_size=1):
    """MoCo's ``batch_generate_text_with_score`` on ``collaborator`` (greedy), reduced as its
    cascade reduces it: the mean of the per-step scores of each prompt."""
    generation = pytest.importorskip("model_collaboration.method.distributed_generation")
    cascade = pytest.importorskip("model_collaboration.method.api_cascade")
    loaded = (collaborator.model, collaborator.tokenizer)
    monkeypatch.setattr(generation, "build_model_and_tokenizer_for_generation", lambda *a, **k: loaded)
    monkeypatch.setattr(
        generation,
        "_apply_chat_template_or_raw",
        lambda tok, texts, model_name="": [collaborator.render(t) for t in texts],
    )
    texts, steps = generation.batch_generate_text_with_score(
        "tiny", None, list(prompts), max_new_tokens, 0.0, 1.0, batch_size
    )
    return texts, [cascade.score_confidence(s) for s in steps], [len(s) for s in steps]


PROMPTS = ["What is 3 times 4?", "Reverse the letters abcd.", "Which letter comes after q?", "Hi"]


def test_top5_confidence_equals_moco_alone_and_in_even_batches(monkeypatch, tiny_models):
    from moco_lit.collaborators import load_collaborator
    from moco_lit.generation import DecodingConfig, GenerationEngine

    collaborator = load_collaborator(tiny_models[1])
    decoding = DecodingConfig(max_new_tokens=7, top5_confidence=True)
    ours = GenerationEngine(batch_size=4, progress=False).generate(collaborator, PROMPTS, decoding)
    ours_top5 = [o.top5_confidence for o in ours]
    texts, alone, counts = moco_scored_confidences(monkeypatch, collaborator, PROMPTS, 7, batch_size=1)
    assert [o.raw_text for o in ours] == texts
    assert ours_top5 == pytest.approx(alone, abs=1e-5)
    # no row of this model ends early, so a batch of all four ends at one step: the same values
    assert counts == [7] * 4 and all(o.new_tokens == 7 for o in ours)
    assert moco_scored_confidences(monkeypatch, collaborator, PROMPTS, 7, batch_size=4)[1] == pytest.approx(
        alone, abs=1e-5
    )
    # the measure is not the geometric-mean token probability
    assert [o.confidence for o in ours] != pytest.approx(ours_top5, abs=1e-3)


def test_top5_confidence_counts_the_ending_step_as_moco_does(monkeypatch, tiny_models):
    from moco_lit.collaborators import load_collaborator
    from moco_lit.generation import DecodingConfig, GenerationEngine

    collaborator = load_collaborator(tiny_models[1])
    engine = GenerationEngine(progress=False)
    prompt = collaborator.tokenizer(collaborator.render(PROMPTS[0]), return_tensors="pt")
    with torch.no_grad():
        first = int(collaborator.model.generate(**prompt, max_new_tokens=1, do_sample=False)[0, -1])
    # the answer's first token made the end of sequence: an empty answer of one (ending) step
    monkeypatch.setattr(collaborator.model.generation_config, "eos_token_id", first)
    ended = engine.generate(
        collaborator, PROMPTS[:1], DecodingConfig(max_new_tokens=7, top5_confidence=True)
    )[0]
    _, moco, counts = moco_scored_confidences(monkeypatch, collaborator, PROMPTS[:1], 7)
    assert ended.new_tokens == 0 and counts == [1]  # MoCo's scores include the ending step
    assert ended.top5_confidence == pytest.approx(moco[0], abs=1e-5)


def test_top5_step_confidence_is_the_warped_top5_of_transformers():
    """Sampling: the measure is taken on the tempered, top-k 50, top-p filtered logits (what
    ``generate(output_scores=True)`` returns to MoCo), here without sorting the vocabulary."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from moco_lit.generation import DecodingConfig, top5_step_confidence

    logits = torch.randn(64, 300, generator=torch.Generator().manual_seed(0)) * 3
    for temperature, top_p in [(0.7, 0.9), (1.0, 0.5), (0.3, 0.99), (1.3, 1.0), (0.0, 1.0)]:
        warped = logits.clone()
        if temperature > 0:
            for warper in (
                TemperatureLogitsWarper(temperature),
                TopKLogitsWarper(50),
                TopPLogitsWarper(top_p),
            ):
                warped = warper(None, warped)
        top, _ = torch.topk(warped, 5, dim=-1)
        expected = torch.softmax(top, dim=-1).max(dim=-1).values
        ours = top5_step_confidence(logits, DecodingConfig(temperature=temperature, top_p=top_p))
        assert torch.allclose(ours, expected, atol=1e-6), (temperature, top_p)
