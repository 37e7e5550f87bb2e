"""Merge rules: a registry by name that every weight search uses; a new rule is one function and
one registry line."""

from __future__ import annotations

import pytest
import torch

from moco_lit import merging
from moco_lit.cli import main
from moco_lit.errors import UserError
from moco_lit.merging import MERGE_RULES, Weights, merge_rule, register_merge_rule
from moco_lit.methods.weight.dare_ties import DareTies
from moco_lit.methods.weight.greedy_soup import GreedySoup
from moco_lit.methods.weight.model_swarms import ModelSwarms
from tests.conftest import collaborators_arg
from tests.test_merging import load_tiny, tensors

SMALL = ["--model.max_new_tokens", "4", "--data.benchmark", "quickstart", "--data.limit", "3"]


def midpoint(target, sources, weights, base, shift: float = 0.0) -> None:
    """Halfway between the smallest and the largest value of the models given a weight, + shift."""
    chosen = [source for source, weight in zip(sources, weights) if weight]
    for name, out in target.items():
        stacked = torch.stack([source.tensor(name).float() for source in chosen])
        out.copy_((stacked.amin(0) + stacked.amax(0)) / 2 + shift)


@pytest.fixture
def midpoint_rule(monkeypatch):
    monkeypatch.setattr(merging, "MERGE_RULES", dict(MERGE_RULES))
    register_merge_rule("midpoint", midpoint, ("shift",))


def test_a_new_rule_is_one_function_and_one_registry_line(midpoint_rule, run_cli, tiny_models):
    code, cli = run_cli(
        "test",
        "--model",
        "greedy_soup",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.merge_rule",
        "midpoint",
        "--model.merge_rule_args",
        "{shift: 0.5}",
        *SMALL,
    )
    model: GreedySoup = cli.model
    assert code == 0 and model.finished
    # the three random models score alike on dev, so all join the soup, merged by the new rule
    assert sorted(model.selection.selected) == [0, 1, 2]
    assert model.final_recipe() == {"op": "midpoint", "weights": [1 / 3] * 3, "shift": 0.5}
    sources = [tensors(load_tiny(path)) for path in tiny_models]
    merged = model.merged.model.state_dict()
    for name in sources[0]:
        stacked = torch.stack([s[name].float() for s in sources])
        expected = (stacked.amin(0) + stacked.amax(0)) / 2 + 0.5
        assert torch.allclose(merged[name].float(), expected), name


def test_model_swarms_materialises_particles_with_the_chosen_rule(midpoint_rule, tiny_models):
    model = ModelSwarms(tiny_models, merge_rule="midpoint", merge_rule_args={"shift": 1.0})
    assert model.rule_recipe([0.2, 0.0, 0.8]) == {"op": "midpoint", "weights": [0.2, 0.0, 0.8], "shift": 1.0}
    default = ModelSwarms(tiny_models)
    assert default.rule_recipe([0.5, 0.5, 0.0]) == {"op": "linear", "weights": [0.5, 0.5, 0.0]}


def test_registered_rules_are_the_merging_functions(tiny_models):
    models = [tensors(load_tiny(path)) for path in tiny_models]
    base, *sources = [Weights.of(m, f"m{i}") for i, m in enumerate(models)]
    weights = [0.7, 0.4]

    def run(rule: str, **params) -> dict[str, torch.Tensor]:
        target = {name: torch.empty_like(t) for name, t in models[0].items()}
        merge_rule(rule).apply(target, sources, weights, base, **params)
        return target

    def direct(function, *args, **params) -> dict[str, torch.Tensor]:
        target = {name: torch.empty_like(t) for name, t in models[0].items()}
        function(target, *args, **params)
        return target

    pairs = [
        (run("linear"), direct(merging.merge_linear, sources, weights)),
        (run("task_arithmetic"), direct(merging.merge_task_arithmetic, base, sources, weights)),
        (
            run("ties", density=0.5),
            direct(merging.merge_dare_ties, base, sources, weights, ties_density=0.5),
        ),
        (
            run("dare_ties", density=0.6, seed=3),
            direct(merging.merge_dare_ties, base, sources, weights, density=0.6, seed=3),
        ),
        (run("extrapolate", alpha=0.2), direct(merging.merge_extrapolate, *sources, 0.2)),
    ]
    for got, expected in pairs:
        assert all(torch.equal(got[name], expected[name]) for name in expected)
    assert sorted(MERGE_RULES) == ["dare_ties", "extrapolate", "linear", "task_arithmetic", "ties"]


def test_unknown_rules_and_parameters_are_user_errors(tiny_models):
    with pytest.raises(UserError, match=r"unknown merge rule 'linaer' \(did you mean linear\?\)"):
        merge_rule("linaer")
    with pytest.raises(
        UserError, match=r"merge rule ties has no parameter 'densty' \(did you mean density\?\)"
    ):
        GreedySoup(tiny_models, merge_rule="ties", merge_rule_args={"densty": 0.5})
    with pytest.raises(UserError, match="needs a base model"):
        merge_rule("task_arithmetic").apply({}, [], [])


def test_an_unknown_rule_on_the_command_line_is_one_line_and_exit_2(tiny_models, tmp_path, capsys):
    argv = ["test", "--model", "model_swarms", "--model.collaborators", collaborators_arg(tiny_models)]
    argv += ["--model.merge_rule", "tiez", "--run_dir", str(tmp_path / "runs"), "--wandb", "false"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "did you mean ties?" in err, err


def test_model_swarms_searches_with_a_new_rule(midpoint_rule, run_cli, tiny_models):
    code, cli = run_cli(
        "fit",
        "--model",
        "model_swarms",
        "--model.collaborators",
        collaborators_arg(tiny_models[:2]),
        "--model.max_iterations",
        "1",
        "--model.merge_rule",
        "midpoint",
        "--model.merge_rule_args",
        "{shift: 0.25}",
        "--trainer.max_epochs",
        "1",
        *SMALL,
    )
    model: ModelSwarms = cli.model
    assert code == 0 and model.merge_space() == "full"
    assert [h["recipe"]["op"] for h in model.history] == ["midpoint", "midpoint"]
    # the particles start at the collaborators: the best one is one model, merged by the rule
    best = model.best["recipe"]
    assert sorted(best["weights"]) == [0.0, 1.0] and best["shift"] == 0.25
    chosen = tensors(load_tiny(tiny_models[best["weights"].index(1.0)]))
    merged = model.merged.model.state_dict()
    assert all(torch.allclose(merged[n].float(), chosen[n].float() + 0.25) for n in chosen)


def test_dare_ties_swarm_can_merge_with_another_rule(tiny_models):
    weights = [0.25, 0.75]
    other = DareTies(
        tiny_models[1:], base_model_name=tiny_models[0], merge_rule="ties", merge_rule_args={"density": 0.5}
    )
    assert other.recipe(weights) == {"op": "ties", "weights": weights, "density": 0.5}
    own = DareTies(tiny_models[1:], base_model_name=tiny_models[0], density=0.8)
    assert own.recipe(weights) == {
        "op": "dare_ties",
        "weights": weights,
        "density": 0.8,
        "ties_density": 1.0,
        "disjoint_mean": False,
        "dare_rescale": "l1",
        "seed": own.hparams.seed,
    }
    with pytest.raises(UserError, match="merge_rule_args is for another merge_rule"):
        DareTies(tiny_models[1:], merge_rule_args={"density": 0.5})
