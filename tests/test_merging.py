"""merging and weight_search: hand-computed expectations on hand-written tensors and tiny models."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from moco_lit.errors import UserError
from moco_lit.merging import (
    Weights,
    adapter_weights,
    dare,
    lora_delta,
    lora_full_weights,
    merge_dare_ties,
    merge_extrapolate,
    merge_linear,
    merge_task_arithmetic,
    model_weights,
    ties,
    trim_to_density,
    writable_tensors,
)
from moco_lit.search import BoundedSwarm, CoefficientSwarm, GreedySelection, NevergradSearch

# -- helpers shared with the weight methods' tests -----------------------------------------------


def load_tiny(path: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def make_lora_adapters(base: str, folder: Path, count: int) -> list[str]:
    """``count`` LoRA adapters (random A and B, rank 2, q/v projections) on ``base``, saved by PEFT."""
    from peft import LoraConfig, get_peft_model

    paths = []
    for i in range(count):
        torch.manual_seed(100 + i)
        config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        model = get_peft_model(load_tiny(base), config)
        model.save_pretrained(folder / f"adapter{i}")
        paths.append(str(folder / f"adapter{i}"))
    return paths


def distance_score(module, model: int, goal: dict[str, torch.Tensor]) -> float:
    """A dev score read from the weights themselves: minus the squared distance to ``goal``."""
    weights = module.target if model == module.merged_index else module.sources[model]
    get = weights.get if isinstance(weights, dict) else weights.tensor
    return -sum(float((get(name).float() - value).pow(2).sum()) for name, value in goal.items())


def tensors(model) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in writable_tensors(model).items()}


# -- weight arithmetic ---------------------------------------------------------------------------


def test_average_of_two_models_is_the_tensor_mean(tiny_models):
    a, b, out = (load_tiny(p) for p in tiny_models)
    merge_linear(writable_tensors(out), [model_weights(a), model_weights(b)], [0.5, 0.5])
    sa, sb = a.state_dict(), b.state_dict()
    for name, value in out.state_dict().items():
        assert torch.allclose(value, (sa[name] + sb[name]) / 2, atol=1e-7), name
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(sa[name], sb[name])  # the two models really differ


D1 = torch.tensor([1.0, -2.0, 3.0, 0.5])
D2 = torch.tensor([2.0, 1.5, -1.0, -0.5])
D3 = torch.tensor([-1.0, 1.2, -4.0, 0.25])


def test_ties_on_three_task_vectors():
    # sums [2, 0.7, -2, 0.25] elect [+, +, -, +]; the disjoint mean averages the deltas that agree
    assert torch.allclose(ties([D1, D2, D3], disjoint_mean=True), torch.tensor([1.5, 1.35, -2.5, 0.375]))
    # MoCo's merge (the default) sums them
    assert torch.allclose(ties([D1, D2, D3]), torch.tensor([3.0, 2.7, -5.0, 0.75]))
    # trimmed to the top half by magnitude: [0,-2,3,0], [2,1.5,0,0], [0,1.2,-4,0]
    assert torch.equal(trim_to_density(D1, 0.5), torch.tensor([0.0, -2.0, 3.0, 0.0]))
    assert torch.allclose(
        ties([D1, D2, D3], density=0.5, disjoint_mean=True), torch.tensor([2.0, 1.35, -4.0, 0.0])
    )
    # weighted: [.5,-1,1.5,.25], [.5,.375,-.25,-.125], [-.25,.3,-1,.0625] elect [+, -, +, +];
    # MoCo 1.1.2's merge (the default) sums the agreeing weighted entries
    summed = ties([D1, D2, D3], [0.5, 0.25, 0.25])
    assert torch.allclose(summed, torch.tensor([1.0, -1.0, 1.5, 0.3125]))
    # the weighted disjoint mean divides by the weight of the agreeing models
    weighted = ties([D1, D2, D3], [0.5, 0.25, 0.25], disjoint_mean=True)
    assert torch.allclose(weighted, torch.tensor([1.0 / 0.75, -1.0 / 0.5, 1.5 / 0.5, 0.3125 / 0.75]))


def test_dare_ties_merge_adds_ties_of_task_vectors_to_the_base():
    base = {"w": torch.tensor([0.5, 0.5, 0.5, 0.5])}
    models = [Weights.of({"w": base["w"] + d}, f"m{i}") for i, d in enumerate((D1, D2, D3))]
    out = {"w": torch.zeros(4)}
    merge_dare_ties(out, Weights.of(base), models, [1 / 3] * 3, disjoint_mean=True)
    assert torch.allclose(out["w"], base["w"] + torch.tensor([1.5, 1.35, -2.5, 0.375]))
    merge_dare_ties(out, Weights.of(base), models, [1 / 3] * 3)  # MoCo's sum of agreeing entries
    assert torch.allclose(out["w"], base["w"] + torch.tensor([3.0, 2.7, -5.0, 0.75]) / 3)


def test_dare_ties_reuses_its_buffers_across_tensors_of_any_shape():
    # the merge keeps its temporaries in buffers shared across tensors (large, then small, then
    # larger again): each tensor must equal a fresh TIES of its own task vectors, inputs untouched
    generator = torch.Generator().manual_seed(0)
    shapes = {"big": (6, 5), "small": (3,), "bigger": (7, 6), "empty-agreement": (2, 2)}
    base = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    deltas = [
        {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()} for _ in range(3)
    ]
    deltas[0]["empty-agreement"] = deltas[1]["empty-agreement"] = deltas[2]["empty-agreement"] = torch.zeros(
        2, 2
    )
    models = [Weights.of({n: base[n] + d[n] for n in shapes}, f"m{i}") for i, d in enumerate(deltas)]
    before = [{n: models[i].tensor(n).clone() for n in shapes} for i in range(3)]
    weights = [0.5, 0.3, 0.2]
    out = {name: torch.zeros(shape) for name, shape in shapes.items()}
    merge_dare_ties(out, Weights.of(base), models, weights, ties_density=0.6)
    for name in shapes:
        task_vectors = [models[i].tensor(name) - base[name] for i in range(3)]
        expected = base[name] + ties(task_vectors, weights, density=0.6)
        assert torch.allclose(out[name], expected, atol=1e-6), name
        assert all(torch.equal(models[i].tensor(name), before[i][name]) for i in range(3))
    assert torch.allclose(out["empty-agreement"], base["empty-agreement"])  # nothing agrees: the base


def test_dare_with_no_drop_is_task_arithmetic(tiny_models):
    base, a, b = (model_weights(load_tiny(p)) for p in tiny_models)
    arithmetic, dropped = tensors(load_tiny(tiny_models[0])), tensors(load_tiny(tiny_models[0]))
    merge_task_arithmetic(arithmetic, base, [a, b], [0.7, 0.4])
    merge_dare_ties(dropped, base, [a, b], [0.7, 0.4], density=1.0, sign_election=False, seed=3)
    for name in arithmetic:
        assert torch.allclose(arithmetic[name], dropped[name], atol=1e-6), name
        expected = (
            base.tensor(name)
            + 0.7 * (a.tensor(name) - base.tensor(name))
            + 0.4 * (b.tensor(name) - base.tensor(name))
        )
        assert torch.allclose(arithmetic[name], expected, atol=1e-6)


def test_dare_rescales_to_the_l1_norm_or_the_expectation_and_is_seeded():
    delta = torch.full((200_000,), 2.0)
    out = dare(delta, 0.3, seed=11, rescale="inverse_density")
    assert abs(float((out == 0).float().mean()) - 0.3) < 0.01
    assert torch.allclose(out[out != 0], torch.tensor(2.0 / 0.7))
    assert abs(float(out.mean()) - 2.0) < 0.02
    assert torch.equal(out, dare(delta, 0.3, seed=11, rescale="inverse_density"))
    assert not torch.equal(out, dare(delta, 0.3, seed=12, rescale="inverse_density"))
    # MoCo's rescale (the default): the same mask, scaled so the L1 norm is the task vector's
    signed = torch.linspace(-1.0, 2.0, 1000)
    l1 = dare(signed, 0.4, seed=5)
    mask = dare(signed, 0.4, seed=5, rescale="inverse_density") != 0
    assert torch.equal(l1 != 0, mask)
    assert torch.allclose(l1.abs().sum(), signed.abs().sum())
    assert torch.allclose(l1[mask], signed[mask] * signed.abs().sum() / signed[mask].abs().sum())


def test_expo_with_alpha_zero_returns_the_target(tiny_models):
    source, toward = model_weights(load_tiny(tiny_models[0])), model_weights(load_tiny(tiny_models[1]))
    out = tensors(load_tiny(tiny_models[2]))
    merge_extrapolate(out, source, toward, 0.0)
    assert all(torch.equal(out[n], toward.tensor(n)) for n in out)
    merge_extrapolate(out, source, toward, 0.5)
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.allclose(out[name], 1.5 * toward.tensor(name) - 0.5 * source.tensor(name), atol=1e-6)


def test_mismatched_architectures_name_the_tensor(tiny_models, tmp_path):
    from tests.conftest import _save_tiny

    wider = _save_tiny(tmp_path / "wider", vocab_size=400, seed=0, hidden=48)
    out = tensors(load_tiny(tiny_models[0]))
    other = model_weights(load_tiny(wider), "wider")
    with pytest.raises(UserError, match=r"wider: tensor 'model.embed_tokens.weight' has shape \[\d+, 48\]"):
        merge_linear(out, [model_weights(load_tiny(tiny_models[1])), other], [0.5, 0.5])
    with pytest.raises(UserError, match="has no tensor 'extra'"):
        merge_linear(
            {"w": torch.zeros(2), "extra": torch.zeros(1)}, [Weights.of({"w": torch.ones(2)})], [1.0]
        )


def test_lora_views_match_peft(tiny_models, tmp_path):
    from peft import PeftModel

    path = make_lora_adapters(tiny_models[0], tmp_path, 1)[0]
    peft_model = PeftModel.from_pretrained(load_tiny(tiny_models[0]), path)
    full = lora_full_weights(peft_model, "lora")
    merged = PeftModel.from_pretrained(load_tiny(tiny_models[0]), path).merge_and_unload().state_dict()
    for name in full.names:
        assert torch.allclose(full.tensor(name), merged[name], atol=1e-6), name
    layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    delta = lora_delta(
        layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.scaling["default"]
    )
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.allclose(full.tensor(name), layer.base_layer.weight + delta, atol=1e-6)
    adapters = adapter_weights(peft_model)
    assert adapters.names and all(".lora_" in n for n in adapters.names)


# -- optimisers ---------------------------------------------------------------------------------


def test_greedy_selection_skips_what_lowers_the_score():
    selection = GreedySelection([2, 0, 1], start_score=0.5)
    assert selection.ask() == [2, 0]
    assert selection.tell(0.4) is False  # worse: 0 is skipped
    assert selection.ask() == [2, 1]
    assert selection.tell(0.5) is True  # a tie keeps the model (MoCo's rule)
    assert selection.finished and selection.selected == [2, 1] and selection.skipped == [0]


def _quadratic(positions: torch.Tensor, goal: torch.Tensor) -> list[float]:
    return (-(positions - goal).pow(2).sum(dim=1)).tolist()


def test_coefficient_swarm_improves_a_toy_objective_and_resumes_exactly():
    goal = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    swarm = CoefficientSwarm(3, seed=4, patience=0)
    first = max(_quadratic(swarm.ask(), goal))
    assert torch.equal(swarm.ask(), torch.eye(3, dtype=torch.float64))
    for step in range(12):
        swarm.tell(_quadratic(swarm.ask(), goal))
        if step == 5:
            resumed = CoefficientSwarm(3, seed=99)
            resumed.load_state_dict(swarm.state_dict())
    for _ in range(6):
        resumed.tell(_quadratic(resumed.ask(), goal))
    assert swarm.global_best_score > first + 0.1
    assert torch.equal(resumed.global_best, swarm.global_best)


def test_bounded_swarm_stays_in_bounds_and_starts_at_zero():
    swarm = BoundedSwarm(dimension=2, population=4, bound=1.5, seed=0, patience=0)
    assert torch.equal(swarm.ask()[0], torch.zeros(2, dtype=torch.float64))
    goal = torch.tensor([5.0, -5.0], dtype=torch.float64)
    for _ in range(10):
        positions = swarm.ask()
        assert positions.abs().max() <= 1.5
        swarm.tell(_quadratic(positions, goal))
    assert swarm.global_best_score > _quadratic(torch.zeros(1, 2, dtype=torch.float64), goal)[0]


def test_nevergrad_search_resumes_by_replay():
    pytest.importorskip("nevergrad")
    goal = torch.tensor([0.4, -0.7], dtype=torch.float64)
    search = NevergradSearch(dimension=2, budget=12, bound=1.5, seed=1)
    for step in range(12):
        search.tell(_quadratic(search.ask(), goal))
        if step == 5:
            resumed = NevergradSearch(dimension=2, budget=12, bound=1.5, seed=1)
            resumed.load_state_dict(search.state_dict())
    while not resumed.finished:
        resumed.tell(_quadratic(resumed.ask(), goal))
    assert resumed.best == search.best and math.isfinite(search.best[1])
