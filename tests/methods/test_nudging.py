"""nudging: end to end on tiny models (same and mixed tokenizers), the hand-over rule, dev search."""

from __future__ import annotations

import pytest
import torch

from moco_lit.collaborators import load_collaborator
from moco_lit.decoding import JointDecoder, StepView
from moco_lit.generation import DecodingConfig
from moco_lit.methods.api.nudging import GAMMA_GRID, Nudging
from moco_lit.methods.api.nudging_rules import ThresholdSwitch
from tests.conftest import collaborators_arg, run_records
from tests.test_decoding import PROMPTS, build_model, lively_models  # noqa: F401  (fixture)


def _nudging_cli(run_cli, collaborators: list[str], *extra: str):
    return run_cli(
        "test",
        "--model",
        "nudging",
        "--model.collaborators",
        collaborators_arg(collaborators),
        "--model.max_new_tokens",
        "8",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
        "--data.dev_limit",
        "3",
        *extra,
    )


def test_nudging_runs_on_tiny_models(run_cli, tiny_models):
    code, cli = _nudging_cli(run_cli, tiny_models[:2])
    assert code == 0
    records = run_records(cli)
    assert len(records) == 3 and all(r["calls"] == 2 for r in records)
    for record in records:
        details = record["details"]
        assert details["gamma"] == 0.4 and details["nudging_model"] == "tiny1"
        assert "".join(text for _, text in details["segments"]).strip() == record["output"]
        assert details["segments"][0][0] == "tiny1"  # the nudging model writes the first token


def test_mixed_tokenizers_produce_valid_text(run_cli, tiny_models, tmp_path):
    # a tokenizer that really differs (see tests/test_decoding.py on other_vocab_model)
    other = build_model(tmp_path / "other", 280, seed=7, spread=0.3)
    code, cli = _nudging_cli(run_cli, [tiny_models[0], other], "--model.max_new_tokens", "12")
    records = run_records(cli)
    assert code == 0 and len(records) == 3
    for record in records:
        assert isinstance(record["output"], str) and record["output"]
        assert "".join(text for _, text in record["details"]["segments"]).strip() == record["output"]


def _view(top1: float, helper_piece: str) -> StepView:
    """One row whose base model puts ``top1`` on its best token (vocabulary of 10)."""
    rest = (1 - top1) / 9
    base = torch.tensor([[top1] + [rest] * 9]).log()
    return StepView([base, torch.zeros(1, 10)], [], [[""], [helper_piece]], [True], 0)


def test_the_base_hands_over_exactly_when_its_top1_is_below_gamma():
    rule = ThresholdSwitch(gamma=0.4)
    rule.reset(1)
    steps = [
        (0.9, "a", 1),  # first token: always the nudging model
        (0.9, "b", 1),  # the nudger's word is not finished (no space): it goes on
        (0.9, " c", 0),  # a new word and a confident base: the base takes over
        (0.41, " d", 0),
        (0.39, "e", 1),  # top-1 below gamma: hand over
        (0.2, " f", 1),  # still unsure: the nudger goes on, even across words
        (0.4, " g", 0),  # confident again (top-1 = gamma) at a word boundary
        (0.4, "h", 0),
    ]
    authors = [rule(_view(top1, piece))[0] for top1, piece, _ in steps]
    assert authors == [expected for _, _, expected in steps]


def test_decoding_follows_the_rule_on_real_logits(lively_models):  # noqa: F811
    collaborators = [load_collaborator(path) for path in lively_models[:2]]
    decoder = JointDecoder(collaborators, DecodingConfig(max_new_tokens=40))
    # the variant options: on these models MoCo's rule rarely gives the base the pen back
    rule = ThresholdSwitch(gamma=0.25, word_break="whitespace", reads_text=False)
    outputs = decoder.run_batch(PROMPTS, rule, [0, 0, 0])
    handovers = 0
    for row, trace in enumerate(rule.trace):
        for (before, _), (author, top1) in zip(trace, trace[1:]):
            if before == 0:  # the base was writing: it hands over exactly below gamma
                assert (author == 1) == (top1 < 0.25)
                handovers += author == 1
            if author == 0:
                assert top1 >= 0.25
        assert outputs[row].details["handovers"] == sum(
            1 for (a, _), (b, _) in zip(trace, trace[1:]) if a == 0 and b == 1
        )
    assert handovers > 0 and any(a == 0 for trace in rule.trace for a, _ in trace)


def test_search_picks_gamma_and_nudging_model_on_dev(run_cli, tiny_models):
    code, cli = _nudging_cli(
        run_cli, tiny_models, "--model.search_gamma", "true", "--model.search_nudging", "true"
    )
    model: Nudging = cli.model
    assert bool(model.calibrated)
    # MoCo's grid order, gamma by gamma; the first strictly better score above 0 wins, else the last
    assert model.candidates == [(g, m) for g in GAMMA_GRID for m in (1, 2)]
    scores = model.search_scores
    above = [i for i, s in enumerate(scores) if s > 0 and s > max([0.0, *scores[:i]])]
    expected = model.candidates[above[-1] if above else -1]
    assert (float(model.gamma), int(model.nudging_model)) == expected
    records = run_records(cli)
    assert all(r["details"]["gamma"] == float(model.gamma) for r in records)


def test_configured_setting_wins_dev_ties_as_an_option(run_cli, tiny_models):
    code, cli = _nudging_cli(
        run_cli,
        tiny_models,
        *("--model.search_gamma", "true", "--model.search_nudging", "true"),
        *("--model.search_ties", "configured"),
    )
    model: Nudging = cli.model
    assert model.candidates[0] == (0.4, 1)  # the configured setting first: it wins ties
    scores = model.search_scores
    assert (float(model.gamma), int(model.nudging_model)) == model.candidates[scores.index(max(scores))]


def test_an_unknown_tie_rule_is_one_line(tiny_models):
    from moco_lit.errors import UserError

    with pytest.raises(UserError, match="search_ties"):
        Nudging(collaborators=list(tiny_models[:2]), search_ties="best")
