"""The engine's own token loop (rows that have ended leave the batch) gives model.generate's records."""

from __future__ import annotations

import pytest
import torch

from moco_lit.collaborators import load_collaborator
from moco_lit.generation import DecodingConfig, GenerationEngine
from tests.conftest import collaborators_arg
from tests.lively import save_lively_gpt2, save_lively_model

PROMPTS = [
    "What is 3 times 4?",
    "Reverse the letters abcd.",
    "Which letter comes after q?",
    "Hi",
    "Name a colour.",
    "Count from one to five, slowly, one number after another.",
    "ok",
    "Spell the word table backwards and then forwards again.",
]
NEW_TOKENS = 14


@pytest.fixture(scope="module")
def lively_model(tiny_models, tmp_path_factory) -> str:
    return save_lively_model(tmp_path_factory.mktemp("lively"), tiny_models[0])


@pytest.fixture
def ends_early(lively_model, monkeypatch):
    """The lively model with ~6% of its vocabulary as end-of-sequence ids: rows end after
    different numbers of steps."""
    collaborator = load_collaborator(lively_model)
    vocabulary = len(collaborator.tokenizer)
    ends = torch.randperm(vocabulary, generator=torch.Generator().manual_seed(0))[: vocabulary // 16]
    eos = sorted(set(ends.tolist()) - {collaborator.tokenizer.pad_token_id})
    monkeypatch.setattr(collaborator.model.generation_config, "eos_token_id", eos)
    return collaborator


def records(collaborator, decoding: DecodingConfig, leave: bool, batch_size: int = 8) -> list:
    engine = GenerationEngine(batch_size=batch_size, finished_rows_leave=leave)
    return engine.generate(collaborator, PROMPTS, decoding, seeds=list(range(100, 100 + len(PROMPTS))))


@pytest.mark.parametrize(
    "decoding",
    [
        DecodingConfig(max_new_tokens=NEW_TOKENS, top5_confidence=True),
        DecodingConfig(max_new_tokens=NEW_TOKENS, temperature=1.0, top5_confidence=True),
        DecodingConfig(max_new_tokens=NEW_TOKENS, temperature=0.7, top_p=0.9, top5_confidence=True),
    ],
    ids=["greedy", "sampling", "top-p"],
)
def test_rows_leaving_the_batch_change_no_record(ends_early, decoding: DecodingConfig):
    expected = records(ends_early, decoding, leave=False)
    got = records(ends_early, decoding, leave=True)
    lengths = [o.new_tokens for o in expected]
    assert len(set(lengths)) > 2 and min(lengths) < NEW_TOKENS  # rows did end at different steps
    for want, have in zip(expected, got):
        assert have.raw_text == want.raw_text
        assert have.new_tokens == want.new_tokens
        assert have.mean_logprob == pytest.approx(want.mean_logprob, abs=1e-5)
        assert have.top5_confidence == pytest.approx(want.top5_confidence, abs=1e-5)


def test_rows_leaving_do_not_depend_on_batch_size(ends_early):
    decoding = DecodingConfig(max_new_tokens=NEW_TOKENS)
    together = [o.raw_text for o in records(ends_early, decoding, leave=True, batch_size=8)]
    alone = [o.raw_text for o in records(ends_early, decoding, leave=True, batch_size=1)]
    assert together == alone


def test_stop_strings_end_a_row_in_the_own_loop(lively_model, monkeypatch):
    collaborator = load_collaborator(lively_model)
    decoding = DecodingConfig(max_new_tokens=NEW_TOKENS)
    plain = records(collaborator, decoding, leave=False)
    # a stop string that some answers write: the text before it, as model.generate's stop
    stop = next(o.raw_text[3:5] for o in plain if len(o.raw_text.strip()) > 6)
    monkeypatch.setattr(type(collaborator), "stop_strings", property(lambda self: (stop,)))
    expected = records(collaborator, decoding, leave=False)
    got = records(collaborator, decoding, leave=True)
    assert any(len(o.raw_text) < len(p.raw_text) for o, p in zip(expected, plain))
    assert [o.raw_text for o in got] == [o.raw_text for o in expected]


def test_the_cli_flag_reaches_the_engine(run_cli, lively_model, tmp_path):
    base = ["--model", "single_model", "--model.collaborators", collaborators_arg([lively_model])]
    base += ["--model.max_new_tokens", "4", "--data.benchmark", "quickstart", "--data.limit", "2"]
    base += ["--cache_path", str(tmp_path / "c.sqlite"), "--wandb", "false", "--progress", "false"]
    code, cli = run_cli("test", *base, "--finished_rows_leave", "true", "--run_dir", str(tmp_path / "a"))
    assert code == 0 and cli.model.engine.finished_rows_leave is True
    code, cli = run_cli("test", *base, "--run_dir", str(tmp_path / "b"))
    assert code == 0 and cli.model.engine.finished_rows_leave is False


def test_a_learned_position_model_gives_the_same_records(tiny_models, tmp_path, monkeypatch):
    """GPT-2's learned position table instead of rotary positions."""
    collaborator = load_collaborator(save_lively_gpt2(tmp_path / "gpt2", tiny_models[0]))
    vocabulary = len(collaborator.tokenizer)
    ends = torch.randperm(vocabulary, generator=torch.Generator().manual_seed(2))[: vocabulary // 16]
    monkeypatch.setattr(
        collaborator.model.generation_config, "eos_token_id", sorted(set(ends.tolist()) - {0})
    )
    for decoding in (DecodingConfig(max_new_tokens=NEW_TOKENS), DecodingConfig(NEW_TOKENS, temperature=1.0)):
        expected = records(collaborator, decoding, leave=False)
        got = records(collaborator, decoding, leave=True)
        assert len({o.new_tokens for o in expected}) > 1
        assert [(o.raw_text, o.new_tokens) for o in got] == [(o.raw_text, o.new_tokens) for o in expected]
