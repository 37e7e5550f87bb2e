"""knowledge_card: end to end on tiny models; the dev-best answerer reads every card (or the others')."""

from __future__ import annotations

import pytest

from moco_lit.errors import UserError
from moco_lit.methods.text.knowledge_card import KnowledgeCard
from tests.conftest import run_records
from tests.methods.discussion_agents import agents, metrics, prompt_log, read_prompts, record_asks


def test_knowledge_card_runs_on_tiny_models(run_on_tiny_models):
    code, cli = run_on_tiny_models("knowledge_card")
    assert code == 0 and bool(cli.model.calibrated)
    rows = run_records(cli)
    assert len(rows) == 2 and all(r["calls"] == 4 and len(r["details"]["cards"]) == 3 for r in rows)
    assert metrics(cli)["cost/calls"] == 8


@pytest.mark.parametrize("exclude_self", [False, True])
def test_the_answerer_reads_every_card(run_cli, monkeypatch, tmp_path, exclude_self):
    log = prompt_log(monkeypatch, tmp_path)
    asks = record_asks(monkeypatch)
    code, cli = run_cli(
        "test",
        "--model",
        "knowledge_card",
        "--model.collaborators",
        agents("wrong_a", "right", "wrong_b"),
        "--model.exclude_self",
        str(exclude_self).lower(),
        "--data.limit",
        "3",
        "--data.dev_limit",
        "3",
    )
    rows = run_records(cli)
    writers = ["wrong_a", "wrong_b"] if exclude_self else ["wrong_a", "right", "wrong_b"]
    assert all(r["answered_by"] == "right" and r["score"] == 1.0 for r in rows)
    for row in rows:
        cards = row["details"]["cards"]
        assert list(cards) == writers
        (answer_prompt,) = read_prompts(log, "right", containing=cards["wrong_a"])
        assert all(card in answer_prompt for card in cards.values())
        assert answer_prompt.count("\n- ") == len(writers)
    # the answerer writes no card it would not read: one card call per writer, then one answer call
    test_asks = [(m, step, n) for m, step, n in asks if step != "dev"]
    writer_indices = [0, 2] if exclude_self else [0, 1, 2]
    assert test_asks == [(m, "cards", 3) for m in writer_indices] + [(1, "answer", 3)]


def test_exclude_self_needs_another_writer():
    with pytest.raises(UserError, match="at least 2 collaborators"):
        KnowledgeCard(["callable:tests.scripted.oracle"], exclude_self=True)
