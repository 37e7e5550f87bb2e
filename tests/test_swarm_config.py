"""One spelling of a particle swarm's settings: the ``swarm:`` argument (SwarmConfig) of every
swarm method, with MoCo's two spellings mapped to it only by convert."""

from __future__ import annotations

import inspect
from dataclasses import asdict

import pytest

from moco_lit import methods
from moco_lit.convert import convert_config
from moco_lit.errors import UserError
from moco_lit.search import SwarmConfig
from tests.conftest import collaborators_arg

SWARM_METHODS = ("dare_ties", "model_swarms", "heterogeneous_swarms")
SMALL = ["--model.max_new_tokens", "4", "--data.benchmark", "quickstart", "--data.limit", "3"]


def test_the_defaults_are_moco_s_numeric_swarm_and_every_swarm_method_takes_them():
    numeric_swarm = pytest.importorskip("model_collaboration.utils.numeric_swarm")
    moco = {
        name: p.default
        for name, p in inspect.signature(numeric_swarm.NumericSwarm.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    ours = asdict(SwarmConfig())
    renamed = {"cognitive_coeff": "cognitive", "social_coeff": "social", "repel_coeff": "repel"}
    renamed["starting_velocity_mode"] = "starting_velocity"
    assert {renamed.get(name, name): value for name, value in moco.items()} == {
        name: value for name, value in ours.items() if name not in ("init_low", "init_high")
    }
    for name in SWARM_METHODS:
        parameters = inspect.signature(methods.get(name).__init__).parameters
        assert parameters["swarm"].default == SwarmConfig(), name
        # no second spelling left beside it
        assert not {"inertia", "cognitive_coeff", "cognitive_coefficient", "repel_term_flag"} & set(
            parameters
        )


def test_a_nested_setting_reaches_the_optimiser(run_cli, tiny_models):
    code, cli = run_cli(
        "fit",
        "--model",
        "model_swarms",
        "--model.collaborators",
        collaborators_arg(tiny_models[:2]),
        "--model.max_iterations",
        "1",
        "--model.swarm.cognitive",
        "0.7",
        "--model.swarm.repel_term",
        "false",
        "--trainer.max_epochs",
        "1",
        *SMALL,
    )
    config = cli.model.swarm.config
    assert code == 0 and config == SwarmConfig(cognitive=0.7, repel_term=False)


def test_convert_maps_moco_s_swarm_names_into_the_swarm_argument():
    config = {
        "method": "weight_model_swarms",
        "task": "gsm8k",
        "task_type": "exact_match",
        "model_names": ["a", "b"],
        "hyperparameters": {"cognitive_coefficient": 0.6, "repel_term_flag": False, "patience": 4},
    }
    recipe, _ = convert_config(config)
    swarm = recipe["model"]["init_args"]["swarm"]
    assert swarm == {"cognitive": 0.6, "repel_term": False, "patience": 4}
    assert SwarmConfig(**swarm) == SwarmConfig(cognitive=0.6, repel_term=False, patience=4)
    config = {**config, "method": "weight_dare_ties", "hyperparameters": {"starting_velocity_mode": "zero"}}
    config["hyperparameters"]["base_model_name"] = "base"
    recipe, _ = convert_config(config)
    assert recipe["model"]["init_args"]["swarm"] == {"starting_velocity": "zero"}


def test_bad_swarm_settings_are_user_errors(tiny_models):
    with pytest.raises(UserError, match="swarm.starting_velocity must be random or zero, got 'still'"):
        SwarmConfig(starting_velocity="still")
    with pytest.raises(UserError, match="particles start at the collaborators"):
        methods.get("model_swarms")(tiny_models, swarm=SwarmConfig(starting_velocity="zero"))
