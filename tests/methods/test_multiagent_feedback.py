"""multiagent_feedback: end to end on tiny models; who reviews whom, what authors read, the summary."""

from __future__ import annotations

from collections import Counter

import pytest

from moco_lit.errors import UserError
from moco_lit.methods.text.multiagent_feedback import MultiagentFeedback
from tests.conftest import run_records
from tests.methods.discussion_agents import agents, metrics, prompt_log, read_prompts, record_asks


def test_multiagent_feedback_runs_on_tiny_models(run_on_tiny_models):
    code, cli = run_on_tiny_models("multiagent_feedback")
    assert code == 0 and bool(cli.model.calibrated)
    rows = run_records(cli)
    # 3 first answers; per later round 3 x 2 reviews + 3 revisions; 1 summary
    assert len(rows) == 2 and all(r["calls"] == 3 + 2 * (6 + 3) + 1 for r in rows)
    assert all(len(r["details"]["rounds"]) == 3 and len(r["details"]["feedback"]) == 2 for r in rows)
    assert metrics(cli)["n"] == 2


def test_authors_revise_on_the_feedback_they_received(run_cli, monkeypatch, tmp_path):
    log = prompt_log(monkeypatch, tmp_path)
    asks = record_asks(monkeypatch)
    names = ["wrong_a", "wrong_b", "right", "wrong_c"]
    code, cli = run_cli(
        "test",
        "--model",
        "multiagent_feedback",
        "--model.collaborators",
        agents(*names),
        "--model.feedback_count",
        "2",
        "--data.limit",
        "3",
        "--data.dev_limit",
        "3",
    )
    rows = run_records(cli)
    assert cli.model.dev_best == 2
    assert all(r["answered_by"] == "right" and r["score"] == 1.0 for r in rows)
    assert all(r["calls"] == 4 + 2 * (4 * 2 + 4) + 1 for r in rows)
    for row in rows:
        answers, feedback = row["details"]["rounds"], row["details"]["feedback"]
        for number, reviews in enumerate(feedback):
            for author, received in reviews.items():
                assert len(received) == 2 and author not in received
                for reviewer, text in received.items():
                    # the reviewer read the author's answer, the author read the review
                    (review_prompt,) = read_prompts(log, reviewer, containing=answers[number][author])
                    assert text.split()[-1].startswith(reviewer)
                    (revise_prompt,) = read_prompts(log, author, containing=text)
                    assert all(other in revise_prompt for other in received.values())
                    assert answers[number][author] in revise_prompt
        (summary,) = read_prompts(log, "right", containing=answers[-1]["wrong_a"])
        assert all(text in summary for text in answers[-1].values())
    # every model reviews in one batched call and revises in another, per round
    per_step = Counter((m, step) for m, step, _ in asks if step != "dev")
    assert set(per_step.values()) == {1}
    reviews_asked = sum(n for m, step, n in asks if step == "feedback2")
    assert reviews_asked == 3 * 4 * 2


def test_reviewers_are_others_and_reproducible():
    method = MultiagentFeedback(["callable:tests.scripted.oracle"] * 5, feedback_count=3)
    drawn = [method.reviewers("q1", author, 2) for author in range(5)]
    assert all(len(r) == 3 and author not in r for author, r in enumerate(drawn))
    assert drawn == [method.reviewers("q1", author, 2) for author in range(5)]
    assert len({tuple(method.reviewers(f"q{i}", 0, 2)) for i in range(20)}) > 1


def test_feedback_needs_two_collaborators():
    with pytest.raises(UserError, match="at least 2"):
        MultiagentFeedback(["callable:tests.scripted.oracle"])
