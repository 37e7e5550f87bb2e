"""stackelberg: MoCo's bandit leader (tests/parity/test_parity_stackelberg.py) and the top-fraction leader."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, collaborators_arg


def test_the_difficulty_leader_picks_the_hardest_instructions_and_followers_duel_there(run_cli):
    # multiplier is right on multiplication only, so the other skills are the hard instructions
    players = ["callable:tests.scripted.multiplier", "callable:tests.methods.test_sparta.fool"]
    players.append("callable:tests.methods.test_sparta.sage")
    args = ["--model", "stackelberg", "--model.collaborators", collaborators_arg(players)]
    args += [
        "--model.leader_type",
        "difficulty",
        "--model.leader_fraction",
        "0.5",
        "--model.num_iterations",
        "3",
    ]
    args += ["--data.benchmark", "quickstart", "--data.dev_limit", "12"]
    _, fitted = run_cli("fit", *args)
    model = fitted.model
    chosen = model.leader_choice
    assert len(chosen) == 6 and not any(i.startswith("multiply") for i in chosen)
    assert int(model.rating_updates) == 3 * 6  # three iterations, one duel per chosen instruction
    assert model.ratings[1] < model.ratings[2]  # the judges still prefer the right answers
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    _, tested = run_cli("test", *args, "--data.limit", "3", "--ckpt_path", checkpoint)
    # the dev-best collaborator (sage: right on everything) answers the test alone
    assert tested.model.tested_model == 2 and tested.model.ratings.tolist() == model.ratings.tolist()


def test_recipe_parses(run_cli):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "-c", str(ROOT / "recipes/text/stackelberg.yaml"), "--print_config")
    assert exit_info.value.code == 0
