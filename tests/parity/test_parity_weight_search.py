"""Weight-method searches end to end against MoCo's ``run_method``: DARE-TIES ``optimized``, ExPO's
``topk_bottomk`` with k = 2, and LoraHub's objective, bounds, start point, choice and merge.

Dev scores are scripted from the merged weights (minus the squared distance to a goal, as in
``test_parity_weight.py``), random draws are the same on both sides, and MoCo's merges run in
float32 (it casts to bfloat16/float16 on load: a precision choice, not a different algorithm).
"""

from __future__ import annotations

import inspect
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from moco_lit.collaborators import RawText
from moco_lit.convert import map_setting, method_arguments
from tests.parity.test_parity_weight import (  # noqa: F401  (fixtures used by name)
    SMALL,
    Draws,
    ScriptedRandom,
    _adapter_files,
    _adapter_name,
    _Float32Loader,
    assert_same_tensors,
    folder_score,
    folder_tensors,
    goal_score,
    lit_score,
    moco_run,
    swarm_utils,
    untied,
)
from tests.test_merging import make_lora_adapters

# -- DARE-TIES optimized --------------------------------------------------------------------------


def test_dare_ties_optimized_run_method_same_candidates_same_final_merge(
    untied,  # noqa: F811
    moco_run,  # noqa: F811
    run_cli,
    monkeypatch,
):
    """MoCo's ``weight_dare_ties`` (mode optimized) and moco_lit's ``dare_ties``: from the same swarm
    draws, every candidate's softmax weights and dev score, the iteration the search stops at, the
    weights of the global best and the merged model that is tested."""
    weight_dare_ties = pytest.importorskip("model_collaboration.method.weight_dare_ties")
    numeric_swarm = pytest.importorskip("model_collaboration.utils.numeric_swarm")
    from moco_lit.methods.weight.dare_ties import DareTies
    from moco_lit.search import ParticleSwarm

    base, models = untied[0], untied[1:4]
    b, c, d = (folder_tensors(p) for p in models)
    goal = {n: 0.5 * b[n] + 0.3 * c[n] + 0.2 * d[n] for n in b}
    moco_weights: list[list[float]] = []

    def dare_ties_merge(weights, model_path_list, base_model_path, output_path, density=1.0):
        assert (list(model_path_list), base_model_path, density) == (models, base, 1.0)
        moco_weights.append(list(weights))
        swarm_utils.dare_ties_merge(
            weights, model_path_list, base_model_path, output_path, density=density, dtype=torch.float32
        )

    monkeypatch.setattr(weight_dare_ties, "dare_ties_merge", dare_ties_merge)
    monkeypatch.setattr(numeric_swarm, "random", ScriptedRandom(Draws()))
    settings = {"population": 3, "max_iterations": 4, "patience": 3, "restart_patience": 2}
    hyperparameters = {"mode": "optimized", "base_model_name": base, **settings}
    evaluated = moco_run(weight_dare_ties, models, hyperparameters, folder_score(goal))

    lit_draws = Draws()
    monkeypatch.setattr(ParticleSwarm, "_rand", lambda self, *shape: lit_draws.tensor(*shape))
    monkeypatch.setattr(DareTies, "dev_score", lambda self, model, batches: lit_score(self, model, goal))
    args = ["--model.mode", "optimized", "--model.base_model_name", base, "--trainer.max_epochs", "10"]
    # MoCo's names reach moco_lit's arguments through convert's mapping (patience -> swarm.patience)
    accepted = set(method_arguments(DareTies))
    targets = {
        t: v
        for key, value in settings.items()
        for t, v in map_setting("dare_ties", key, value, {}, accepted).items()
    }
    assert targets == {"population": 3, "max_iterations": 4, "swarm.patience": 3, "swarm.restart_patience": 2}
    args += [arg for target, value in targets.items() for arg in (f"--model.{target}", str(value))]
    _, cli = run_cli(
        "fit", "--model", "dare_ties", "--model.collaborators", f"[{', '.join(models)}]", *args, *SMALL
    )
    module: DareTies = cli.model

    # every candidate (3 per iteration until the stop), its weights and its dev score
    lit_weights = [h["recipe"]["weights"] for h in module.history]
    assert len(lit_weights) == len(moco_weights) - 1 == len(evaluated) - 1  # MoCo's last: the final merge
    assert len(lit_weights) == 4 * 3 and module.finished  # max_iterations reached on both sides
    assert_close(lit_weights, moco_weights[:-1], rtol=1e-6, atol=1e-7)
    assert_close([h["score"] for h in module.history], [s for _, s in evaluated[:-1]], rtol=1e-5, atol=0)
    # the same global best, merged and tested
    final = module.final_recipe()
    assert_close(final["weights"], moco_weights[-1], rtol=1e-6, atol=1e-7)
    assert evaluated[-1][0].endswith("final_model")
    assert_same_tensors(folder_tensors(evaluated[-1][0]), dict(module.target))
    (log,) = Path("model_collaboration/logs").glob("*_dare_ties.json")
    assert_close(json.loads(log.read_text())["best_weights"], final["weights"], rtol=1e-6, atol=1e-7)


# -- ExPO topk_bottomk, k = 2 ---------------------------------------------------------------------


def test_expo_topk_bottomk_k2_same_averages_same_alpha_same_merge(untied, moco_run, run_cli, monkeypatch):  # noqa: F811
    """k = 2 of 4 models: the same top and bottom pairs, MoCo's averaged endpoints equal to moco_lit's
    coefficients, the same alpha candidates scored alike, and the same extrapolated model tested.
    (MoCo averages through its float16 linear merge; here in float32, on untied models, where that
    merge is exact.)"""
    weight_expo = pytest.importorskip("model_collaboration.method.weight_expo")
    from moco_lit.methods.weight.expo import Expo

    monkeypatch.setattr(weight_expo, "AutoModelForCausalLM", _Float32Loader)
    averaged: dict[str, list[str]] = {}

    def lora_merge(
        weights, lora_name_list, output_path, gpu_id, directly_load_safetensors=0, base_model=None
    ):
        assert not directly_load_safetensors and weights == [0.5, 0.5]
        averaged[Path(output_path).name] = list(lora_name_list)
        swarm_utils.full_model_linear_merge(weights, lora_name_list, output_path, dtype=torch.float32)

    monkeypatch.setattr(weight_expo, "lora_merge", lora_merge)
    m = [folder_tensors(p) for p in untied]
    # top pair 1 and 3, bottom pair 0 and 2; alpha 0.3 comes closest
    goal = {n: 0.635 * (m[1][n] + m[3][n]) - 0.135 * (m[0][n] + m[2][n]) for n in m[0]}
    hyperparameters = {"mode": "topk_bottomk", "k": 2, "alpha_mode": "optimized", "expo_base_path": "expo/"}
    evaluated = moco_run(weight_expo, untied, hyperparameters, folder_score(goal))
    (log,) = Path("model_collaboration/logs").glob("*_expo.json")
    moco_log = json.loads(log.read_text())

    monkeypatch.setattr(Expo, "dev_score", lambda self, model, batches: lit_score(self, model, goal))
    args = ["--model.mode", "topk_bottomk", "--model.k", "2", "--model.alpha_mode", "optimized"]
    _, cli = run_cli(
        "test", "--model", "expo", "--model.collaborators", f"[{', '.join(untied)}]", *args, *SMALL
    )
    module: Expo = cli.model
    assert_close(module.dev_scores.tolist(), [s for _, s in evaluated[:4]], rtol=1e-5, atol=0)
    ranking = module.dev_ranking()
    assert sorted(ranking[:2]) == [1, 3] and sorted(ranking[2:]) == [0, 2]
    assert averaged["merged_topk"] == [untied[i] for i in ranking[:2]]
    assert averaged["merged_bottomk"] == [untied[i] for i in ranking[2:]]
    target, source = module.endpoints()
    assert target.tolist() == [0, 0.5, 0, 0.5] and source.tolist() == [0.5, 0, 0.5, 0]
    # MoCo's averaged endpoints are moco_lit's coefficients applied to the collaborators
    for folder, coefficients in (("merged_topk", target), ("merged_bottomk", source)):
        moco_average = folder_tensors(str(Path(moco_log["target_model"]).parent / folder))
        lit_average = {n: sum(float(w) * m[i][n] for i, w in enumerate(coefficients)) for n in m[0]}
        assert_same_tensors(moco_average, lit_average)
    assert [h["recipe"]["alpha"] for h in module.history] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert_close([h["score"] for h in module.history], [s for _, s in evaluated[4:9]], rtol=1e-5, atol=0)
    assert module.chosen_alpha == moco_log["alpha"] == 0.3
    assert evaluated[-1][0].endswith("final_model")
    assert_same_tensors(folder_tensors(evaluated[-1][0]), dict(module.target))


# -- LoraHub --------------------------------------------------------------------------------------


class _Candidate:
    def __init__(self, value) -> None:
        self.value = value


class ScriptedNevergrad(types.ModuleType):
    """Stands in for nevergrad: every ``NGOpt`` asks the scripted points in order, records the
    parametrization, budget and losses it is given, and recommends ``recommended``."""

    def __init__(self, points: list[list[float]], recommended: list[float]) -> None:
        super().__init__("nevergrad")
        self.points, self.recommended = points, recommended
        self.runs: list[dict] = []  # one per optimiser built: its settings and the losses told
        self.p = types.SimpleNamespace(Array=self._array)
        self.optimizers = types.SimpleNamespace(NGOpt=self._optimizer, registry={"NGOpt": self._optimizer})

    @staticmethod
    def _array(init, lower, upper):
        return types.SimpleNamespace(init=init, lower=lower, upper=upper)

    def _optimizer(self, parametrization, budget):
        import numpy as np

        module, run = self, {"parametrization": parametrization, "budget": budget, "losses": []}
        self.runs.append(run)

        class Optimizer:
            def ask(self):
                return _Candidate(np.asarray(module.points[len(run["losses"])], dtype=float))

            def tell(self, candidate, loss):
                run["losses"].append((candidate.value.tolist(), float(loss)))

            def provide_recommendation(self):
                return _Candidate(np.asarray(module.recommended, dtype=float))

            def minimize(self, function, verbosity=0):
                for _ in range(budget):
                    candidate = self.ask()
                    self.tell(candidate, function(candidate.value))
                return self.provide_recommendation()

        return Optimizer()


def test_lorahub_same_objective_bounds_start_choice_and_merge(
    untied,  # noqa: F811
    tmp_path,
    moco_run,  # noqa: F811
    run_cli,
    monkeypatch,
):
    """MoCo's ``weight_lorahub`` and moco_lit's ``lorahub`` with nevergrad's place taken by one
    scripted optimiser: the same box (±1.5, start at 0) and budget; for each scripted point the same
    merged adapter scored alike, MoCo's loss 1 − score + coef·mean|w| being 1 − moco_lit's
    objective; NGOpt's recommendation merged and tested by both (the best evaluated point is one
    option away); MoCo's raw prompts and 256 tokens are moco_lit's defaults."""
    import numpy as np

    points = [[0.0, 0.0, 0.0], [1.2, -0.4, 0.3], [0.5, 0.5, -1.0], [-1.5, 1.5, 0.2], [0.9, 0.1, 0.4]]
    recommended = [1.0, -0.2, 0.35]  # not an evaluated point: NGOpt may recommend such a point
    stand_in = ScriptedNevergrad(points, recommended)
    monkeypatch.setitem(sys.modules, "nevergrad", stand_in)
    monkeypatch.delitem(sys.modules, "model_collaboration.method.weight_lorahub", raising=False)
    weight_lorahub = pytest.importorskip("model_collaboration.method.weight_lorahub")
    from moco_lit.methods.weight.lorahub import LoraHub

    adapters = make_lora_adapters(untied[0], tmp_path, 3)
    sources = _adapter_files(adapters)
    goal = {n: 0.9 * sources[0][n] - 0.1 * sources[1][n] + 0.4 * sources[2][n] for n in sources[0]}

    def score_of(tensors: dict[str, torch.Tensor]) -> float:
        return 0.5 + 0.01 * goal_score(tensors.__getitem__, goal)

    # MoCo: every adapter it loads into its model is scored by its tensors
    loaded: list[dict[str, torch.Tensor]] = []
    set_state = weight_lorahub.set_peft_model_state_dict

    def record(model, state_dict, *args, **kwargs):
        loaded.append({name: t.detach().clone() for name, t in state_dict.items()})
        return set_state(model, state_dict, *args, **kwargs)

    eval_module = pytest.importorskip("model_collaboration.data.eval")
    monkeypatch.setattr(weight_lorahub, "set_peft_model_state_dict", record)
    monkeypatch.setattr(eval_module, "get_scores", lambda *args, **kwargs: [score_of(loaded[-1])])
    hyperparameters = {"max_inference_step": len(points), "max_response_length": 2}
    moco_run(weight_lorahub, adapters, hyperparameters, lambda path: 0.0)
    (moco,) = stand_in.runs
    (log,) = Path("model_collaboration/logs").glob("*_lorahub.json")
    assert json.loads(log.read_text())["learned_weights"] == recommended

    monkeypatch.setattr(
        LoraHub,
        "dev_score",
        lambda self, model, batches: score_of({_adapter_name(n): t for n, t in self.target.items()}),
    )
    collaborators = f"[{', '.join(f'{untied[0]}+{a}' for a in adapters)}]"
    args = ["--model.optimizer", "nevergrad", "--model.max_inference_step", str(len(points))]
    _, cli = run_cli("test", "--model", "lorahub", "--model.collaborators", collaborators, *args, *SMALL)
    module: LoraHub = cli.model
    lit = stand_in.runs[1]

    # the same box, start point and budget
    for run in (moco, lit):
        box = run["parametrization"]
        assert np.broadcast_to(box.init, 3).tolist() == [0.0] * 3 and run["budget"] == len(points)
        assert np.broadcast_to(box.lower, 3).tolist() == [-1.5] * 3
        assert np.broadcast_to(box.upper, 3).tolist() == [1.5] * 3
    # the same points evaluated, each merge scored alike: MoCo's loss is 1 − moco_lit's objective
    assert [p for p, _ in moco["losses"]] == [p for p, _ in lit["losses"]] == points
    objectives = [module.objective(h["recipe"], h["score"]) for h in module.history]
    assert_close([1 - o for o in objectives], [loss for _, loss in moco["losses"]], rtol=1e-6, atol=1e-9)
    assert_close([-o for o in objectives], [loss for _, loss in lit["losses"]], rtol=1e-6, atol=1e-9)
    for merged, weights in zip(loaded, points):  # MoCo's merges are Σ w_i·adapter_i
        lit_merge = {n: sum(w * s[n] for w, s in zip(weights, sources)) for n in sources[0]}
        assert_same_tensors(merged, lit_merge)
    # both merge and test NGOpt's recommendation
    assert module.final_recipe()["weights"] == recommended
    assert_same_tensors(loaded[-1], {_adapter_name(n): t for n, t in module.target.items()})
    assert len(loaded) == len(points) + 1
    # the best evaluated point, one option away, is MoCo's lowest loss
    module.final_weights = "best_evaluated"
    best = min(range(len(points)), key=lambda i: moco["losses"][i][1])
    assert module.final_recipe()["weights"] == points[best] != recommended
    # MoCo's bare prompts and 256 tokens are the defaults (the run above sets 2 tokens to stay fast)
    defaults = inspect.signature(LoraHub.__init__).parameters
    assert defaults["prompt"].default == "raw" and defaults["max_new_tokens"].default == 256
    assert isinstance(module.prompt_of({"prompt": "2+2?"}), RawText)
