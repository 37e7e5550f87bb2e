"""The joint decoding engine: equal to ``generate`` alone, exact fusion, flat step cost, text handover.

Most tests use "lively" tiny models (weights drawn wider than a fresh init, so the next token
varies and top-1 probabilities spread out) and a model whose tokenizer truly differs (280 tokens
against 306: the corpus of the shared fixtures caps both of theirs at 306, so ``other_vocab_model``
currently shares ``tiny_models``' vocabulary).
"""

from __future__ import annotations

import math
import string
from pathlib import Path

import pytest
import torch

from moco_lit.cache import GenerationCache
from moco_lit.collaborators import Collaborator, load_collaborator
from moco_lit.decoding import (
    DecodingSession,
    FuseRule,
    JointDecoder,
    SwitchRule,
    average,
    identity,
)
from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig

PROMPTS = ["What is 3 times 4?", "Reverse the letters abcdefgh.", "Hi"]


def build_model(folder: Path, vocab_size: int, seed: int, spread: float = 0.3) -> str:
    """A tiny random Llama saved in ``folder``; ``spread`` is the std of its weight matrices."""
    from moco_lit.quickstart import TinyModelConfig, build_tiny_llama, build_tokenizer, prompt_wording_corpus

    tokenizer = build_tokenizer(prompt_wording_corpus() + list(string.printable), vocab_size=vocab_size)
    config = TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64, max_positions=512)
    model = build_tiny_llama(tokenizer, config, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * spread)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def lively_models(tmp_path_factory) -> list[str]:
    """Three lively tiny models with one vocabulary (306 tokens)."""
    root = tmp_path_factory.mktemp("lively")
    return [build_model(root / f"lively{i}", 400, seed=10 + i) for i in range(3)]


@pytest.fixture(scope="session")
def other_tokenizer_model(tmp_path_factory) -> str:
    """A lively tiny model whose tokenizer differs from ``lively_models``' (280 tokens)."""
    return build_model(tmp_path_factory.mktemp("lively_other") / "lively_other", 280, seed=20)


def _load(paths: list[str]) -> list[Collaborator]:
    return [load_collaborator(path) for path in paths]


def _decode_alone(session: DecodingSession, rule: FuseRule) -> None:
    while not session.finished():
        session.fuse_step(rule)


def _reference_generate(collaborator: Collaborator, prompts: list[str], new_tokens: int) -> list[list[int]]:
    tokenizer = collaborator.tokenizer
    inputs = tokenizer(
        [collaborator.render(p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False
    )
    output = collaborator.model.generate(
        **inputs,
        max_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    rows = []
    for row in output[:, inputs["input_ids"].shape[1] :].tolist():
        rows.append(row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row)
    return rows


@pytest.mark.parametrize(
    "prompts", [PROMPTS, ["What is 3 times 4?", "What is 5 times 6?"]], ids=["padded", "unpadded"]
)
def test_identity_rule_equals_generate_token_for_token(lively_models, prompts):
    collaborator = _load(lively_models[:1])[0]
    session = JointDecoder([collaborator], DecodingConfig(max_new_tokens=24)).open(prompts)
    _decode_alone(session, identity())
    expected = _reference_generate(collaborator, prompts, 24)
    assert [session.streams[0].generated(row) for row in range(len(prompts))] == expected
    assert sum(len(row) for row in expected) >= 10  # the comparison covers real tokens
    lengths = session.streams[0].prompt_lengths
    assert (len(set(lengths)) > 1) == (prompts == PROMPTS)  # padding only where meant


class Recorder(FuseRule):
    """Wraps a rule and keeps what it saw and returned at every step."""

    def __init__(self, rule: FuseRule) -> None:
        self.rule, self.key, self.steps = rule, rule.key, []

    def __call__(self, logits: list[torch.Tensor]) -> torch.Tensor:
        combined = self.rule(logits)
        self.steps.append(combined.clone())
        return combined


@torch.inference_mode()
def _full_forward_logits(collaborator: Collaborator, ids: list[int]) -> torch.Tensor:
    return collaborator.model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def test_fused_logits_equal_the_hand_computed_average_at_every_step(lively_models):
    collaborators = _load(lively_models)
    recorder = Recorder(average())
    session = JointDecoder(collaborators, DecodingConfig(max_new_tokens=6)).open(PROMPTS[:2])
    _decode_alone(session, recorder)
    assert len(recorder.steps) == 6
    for row in range(2):
        prompt_ids = session.streams[0].ids[row][: session.streams[0].prompt_lengths[row]]
        generated = session.streams[0].generated(row)
        for step, fused in enumerate(recorder.steps[: len(generated) + 1]):
            # no cache, no padding: each model reads the whole prefix from scratch
            prefix = prompt_ids + generated[:step]
            by_hand = torch.stack([_full_forward_logits(c, prefix) for c in collaborators]).mean(dim=0)
            torch.testing.assert_close(fused[row], by_hand, atol=1e-4, rtol=1e-4)


def test_each_step_feeds_one_token_per_row_and_model(lively_models):
    """With a KV cache per model, a step's cost does not grow with the length."""
    collaborators = _load(lively_models)
    fed: dict[int, list[int]] = {i: [] for i in range(3)}
    hooks = [
        c.model.register_forward_pre_hook(
            lambda module, args, kwargs, i=i: fed[i].append(kwargs["input_ids"].numel()), with_kwargs=True
        )
        for i, c in enumerate(collaborators)
    ]
    try:
        session = JointDecoder(collaborators, DecodingConfig(max_new_tokens=40)).open(PROMPTS)
        for stream in session.streams:
            stream.eos_ids = set()  # decode the full 40 steps
        _decode_alone(session, average())
    finally:
        for hook in hooks:
            hook.remove()
    for counts in fed.values():
        prefill, steps = counts[0], counts[1:]
        assert prefill == 3 * max(session.streams[0].prompt_lengths)
        assert steps == [3] * 40  # one token per row per step, whatever the length so far


def test_sampling_is_reproducible_per_example(lively_models):
    collaborators = _load(lively_models)
    decoder = JointDecoder(collaborators, DecodingConfig(max_new_tokens=12, temperature=1.0, top_p=0.9))
    together = decoder.run_batch(PROMPTS, average(), [1, 2, 3])
    alone = decoder.run_batch(PROMPTS[1:2], average(), [2])
    reseeded = decoder.run_batch(PROMPTS[1:2], average(), [99])
    assert alone[0].raw_text == together[1].raw_text
    assert reseeded[0].raw_text != alone[0].raw_text


def test_results_go_through_the_generation_cache(lively_models, tmp_path):
    collaborators = _load(lively_models)
    cache = GenerationCache(tmp_path / "cache.sqlite")
    decoder = JointDecoder(collaborators, DecodingConfig(max_new_tokens=8), cache=cache)
    first = decoder.generate(PROMPTS, average(), [0, 0, 0])
    second = decoder.generate(PROMPTS, average(), [0, 0, 0])
    other_rule = decoder.generate(PROMPTS, identity(1), [0, 0, 0])
    assert not any(o.cached for o in first) and all(o.cached for o in second)
    assert [o.raw_text for o in first] == [o.raw_text for o in second]
    assert not any(o.cached for o in other_rule)  # the rule is part of the key
    assert second[0].usage == first[0].usage and len(first[0].usage) == 3


def _assert_stream_is_valid(session: DecodingSession, model: int, row: int) -> None:
    """The stream's cached logits equal a fresh forward over its live tokens, which spell the text."""
    stream = session.streams[model]
    fresh = _full_forward_logits(stream.collaborator, stream.ids[row])[: stream.vocab_size]
    torch.testing.assert_close(stream.logits[row], fresh, atol=1e-4, rtol=1e-4)
    # a byte token that is half of a character adds nothing until the next one completes it
    # (and a stray continuation byte of a random model never does: it is left out of the text)
    spelled = stream.tokenizer.decode(stream.generated(row), skip_special_tokens=True).replace("\ufffd", "")
    assert "\ufffd" not in session.texts[row] and spelled == session.texts[row]


def test_a_character_split_across_byte_tokens_is_handed_over_whole(lively_models):
    from moco_lit.decoding import ModelStream

    stream = ModelStream(_load(lively_models[:1])[0], ["Say it:"])
    pieces = stream.tokenizer("é€", add_special_tokens=False)["input_ids"]
    assert len(pieces) == 5  # byte-level tokens: 2 bytes of é, 3 of €
    texts = []
    for token in pieces:
        texts.append(stream.token_text(0, token))
        stream.append([[token]])
    assert texts == ["", "é", "", "", "€"]  # nothing until a character is complete, then all of it


class Alternate(SwitchRule):
    """Hands the pen over every ``span`` steps, whatever the models propose (so both write on any
    weights), recording who wrote."""

    def __init__(self, span: int, reads_text: bool) -> None:
        self.span = span
        self.reads_text = reads_text
        self.key = f"alternate({span},{reads_text})"
        self.authors: set[int] = set()

    def __call__(self, view) -> list[int]:
        author = (view.step // self.span) % 2
        self.authors.update(author for active in view.active if active)
        return [author] * len(view.active)


@pytest.mark.parametrize("reads_text", [False, True], ids=["own-ids", "re-tokenised"])
def test_mixed_tokenizers_hand_over_text_and_keep_both_caches_valid(
    lively_models, other_tokenizer_model, reads_text
):
    collaborators = _load([lively_models[0], other_tokenizer_model])
    decoder = JointDecoder(collaborators, DecodingConfig(max_new_tokens=30))
    session = decoder.open(PROMPTS)
    rule = Alternate(3, reads_text)
    rule.reset(len(PROMPTS))
    for step in range(30):
        if session.finished():
            break
        session.switch_step(rule, step)
    assert rule.authors == {0, 1}  # both models wrote
    for row in range(len(PROMPTS)):
        assert session.texts[row] == "".join(text for _, text in session.segments[row])
        for model in range(2):
            _assert_stream_is_valid(session, model, row)
    # re-tokenising the shared text made the other model rebuild some tokens, not the whole answer
    assert sum(session.streams[1].fed) < 2 * sum(session.new_tokens)


def test_patches_from_two_models_keep_the_chosen_one(lively_models, other_tokenizer_model):
    collaborators = _load([lively_models[0], other_tokenizer_model])
    session = JointDecoder(collaborators, DecodingConfig(max_new_tokens=40)).open(PROMPTS[:2])
    for _round in range(3):
        rows = session.active_rows()
        first = session.write_patch(0, rows, 4)
        second = session.write_patch(1, rows, 4)
        # keep model 1's patch on row 0 and model 0's elsewhere: model 0 must drop its own patch
        kept = [second[i] if row == 0 else first[i] for i, row in enumerate(rows)]
        session.commit(
            rows,
            [p.text for p in kept],
            author=[1 if row == 0 else 0 for row in rows],
            ended=[p.ended for p in kept],
            tokens=[p.tokens for p in kept],
        )
    for model in range(2):
        session.sync(model)
        for row in range(2):
            _assert_stream_is_valid(session, model, row)
    assert session.segments[0][0][0] == 1 and session.segments[1][0][0] == 0


# -- Co-LLM's deferral head and threshold warm-up ---------------------------------------------


def _fixed_head(logits: list[float]):
    return lambda hidden: torch.tensor(logits)[:, None]


def test_deferral_head_defers_exactly_above_the_threshold():
    from moco_lit.methods.api.collm_rules import DeferralHead

    own, mentor = torch.randn(4, 10), torch.randn(4, 10)
    # sigmoid: 0.88, 0.12, 0.5, 0.62 against a threshold of 0.5
    rule = DeferralHead(_fixed_head([2.0, -2.0, 0.0, 0.5]), threshold=0.5)
    fused = rule.fuse([own, mentor], [torch.zeros(4, 3), torch.zeros(4, 3)], 0, [True] * 4)
    for row, deferred in enumerate([True, False, False, True]):
        expected = torch.log_softmax(mentor if deferred else own, dim=-1)[row]
        torch.testing.assert_close(fused[row], expected)
    assert [rule.row_details(r)["deferred_tokens"] for r in range(4)] == [1, 0, 0, 1]
    compose = DeferralHead(_fixed_head([2.0, -2.0, 0.0, 0.5]), strategy="compose")
    mixed = compose.fuse([own, mentor], [torch.zeros(4, 3)] * 2, 0, [True] * 4).exp()
    p = torch.sigmoid(torch.tensor([2.0, -2.0, 0.0, 0.5]))[:, None]
    torch.testing.assert_close(mixed, (1 - p) * own.softmax(-1) + p * mentor.softmax(-1))


def test_threshold_warmup_schedules():
    from moco_lit.methods.api.collm_rules import warmup_threshold

    def values(schedule: str, warmup: int = 5, total: int = 8) -> list[float]:
        return [warmup_threshold(0.5, schedule, warmup, total, step) for step in range(total)]

    assert values("none") == [0.5] * 8
    assert values("linear") == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5, 0.5, 0.5, 0.5])
    cosine = values("cosine")
    assert cosine[0] == 1.0 and cosine[5:] == [0.5] * 3
    assert cosine[2] == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi * 2 / 5)))
    assert all(a > b for a, b in zip(cosine[:5], cosine[1:5]))  # falls through the warm-up
    assert values("linear", warmup=15, total=3) == pytest.approx([1.0, 0.75, 0.5])  # capped at the total
    with pytest.raises(UserError):
        warmup_threshold(0.5, "step", 5, 8, 0)


@pytest.mark.parametrize("bias, alone", [(30.0, 1), (-30.0, 0)])
def test_deferral_head_decodes_as_the_model_it_always_picks(lively_models, bias, alone):
    from moco_lit.methods.api.collm_rules import DeferralHead

    collaborators = _load(lively_models[:2])
    decoder = JointDecoder(collaborators, DecodingConfig(max_new_tokens=12))
    head = lambda hidden: torch.full((hidden.shape[0],), bias)  # noqa: E731
    joint = decoder.run_batch(PROMPTS, DeferralHead(head), [0, 1, 2])
    single = decoder.run_batch(PROMPTS, identity(alone), [0, 1, 2])
    assert [o.text for o in joint] == [o.text for o in single]
    assert all((o.details["deferred_tokens"] > 0) == (alone == 1) for o in joint)


def test_warmup_keeps_the_generator_on_the_first_token(lively_models):
    from moco_lit.methods.api.collm_rules import DeferralHead

    collaborators = _load(lively_models[:2])
    decoder = JointDecoder(collaborators, DecodingConfig(max_new_tokens=6))
    # p = 0.9 at every step: above the threshold 0.5, but below the warm-up's 1.0 at step 0
    rule = DeferralHead(
        lambda hidden: torch.full((hidden.shape[0],), math.log(9)), schedule="linear", warmup_steps=3
    )
    decoder.run_batch(PROMPTS, rule, [0, 1, 2])
    for trace in rule.trace:
        assert [deferred for _, _, deferred in trace[:3]] == [False, True, True][: len(trace)]
        assert [threshold for _, threshold, _ in trace[:3]] == pytest.approx([1.0, 0.75, 0.5][: len(trace)])


def test_write_patch_takes_one_size_per_row(lively_models):
    collaborators = _load(lively_models[:1])
    session = JointDecoder(collaborators, DecodingConfig(max_new_tokens=40)).open(PROMPTS)
    for stream in session.streams:
        stream.eos_ids = set()
    patches = session.write_patch(0, [0, 1, 2], [1, 3, 5])
    assert [p.tokens for p in patches] == [1, 3, 5]
    assert all(p.logprob < 0 for p in patches)
    assert session.writing_rows() == [0, 1, 2] and session.remaining(0) == 40
