"""Weight methods against MoCo's own code: the same tensors from the same state dicts, and the same
search trajectory from the same random draws and the same scripted dev scores.

MoCo merges on disk (``save_pretrained`` folders), so the fixtures are tiny Llamas saved in a
temporary folder. MoCo casts to bfloat16/float16 on load; where a MoCo function takes no dtype the
test hands it float32 (a precision choice, not a different algorithm), so tensors compare with
``assert_close``. Where randomness cannot be aligned (Python's ``random`` on MoCo's side, a
seeded torch generator on moco_lit's), both sides are fed the same scripted draws.
"""

from __future__ import annotations

import gc
import os
import string
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

swarm_utils = pytest.importorskip(
    "model_collaboration.utils.swarm", reason="MoCo (modelco==1.1.2) is not installed: parity tests skipped"
)

from moco_lit.merging import (  # noqa: E402
    adapter_weights,
    dare,
    dare_mask,
    merge_dare_ties,
    merge_extrapolate,
    merge_linear,
    merge_task_arithmetic,
    model_weights,
    tensor_seed,
    ties,
    writable_tensors,
)
from tests.test_merging import load_tiny, make_lora_adapters  # noqa: E402

# -- fixtures: tiny models on disk ------------------------------------------------------------------


def _save_llama(folder: Path, seed: int, tied: bool) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    from moco_lit.quickstart import build_tokenizer, prompt_wording_corpus

    tokenizer = build_tokenizer(prompt_wording_corpus() + list(string.printable), vocab_size=400)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def untied(tmp_path_factory) -> list[str]:
    """Four tiny Llamas with separate input and output embeddings (MoCo's linear merge is exact
    on those; see the tied case below)."""
    root = tmp_path_factory.mktemp("untied")
    return [_save_llama(root / f"m{i}", seed=10 + i, tied=False) for i in range(4)]


@pytest.fixture(scope="module")
def tied(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("tied")
    return [_save_llama(root / f"t{i}", seed=20 + i, tied=True) for i in range(2)]


def folder_tensors(path: str) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model, as float32, by state-dict name."""
    return {name: t.float().clone() for name, t in load_tiny(path).state_dict().items()}


def assert_same_tensors(moco: dict[str, torch.Tensor], lit: dict[str, torch.Tensor]) -> None:
    assert set(lit) <= set(moco), set(lit) - set(moco)
    for name, tensor in lit.items():
        assert_close(tensor.float(), moco[name].float(), rtol=1e-5, atol=1e-6, msg=name)


def lit_merge(template: str, run) -> dict[str, torch.Tensor]:
    """Run a moco_lit merge into a copy of ``template`` and return the written tensors."""
    target = writable_tensors(load_tiny(template))
    run(target)
    return {name: t.clone() for name, t in target.items()}


# -- merge functions ------------------------------------------------------------------------------


def test_linear_average_equals_moco_full_model_linear_merge(untied, tmp_path):
    weights = [0.5, 0.3, 0.2]
    out = str(tmp_path / "moco")
    swarm_utils.full_model_linear_merge(weights, untied[:3], out, dtype=torch.float32)
    sources = [model_weights(load_tiny(p), p) for p in untied[:3]]
    lit = lit_merge(untied[0], lambda target: merge_linear(target, sources, weights))
    assert_same_tensors(folder_tensors(out), lit)


def test_moco_linear_merge_counts_tied_embeddings_twice_and_moco_lit_does_not(tied, tmp_path):
    """MoCo 1.1.2 scales and adds every state-dict key; a tied embedding is two keys for one
    tensor, so it is scaled by w² and the other models are added twice. moco_lit merges each
    tensor once (the weighted average every other tensor gets)."""
    weights = [0.5, 0.5]
    out = str(tmp_path / "moco")
    swarm_utils.full_model_linear_merge(weights, tied, out, dtype=torch.float32)
    first, second = (folder_tensors(p) for p in tied)
    sources = [model_weights(load_tiny(p), p) for p in tied]
    lit = lit_merge(tied[0], lambda target: merge_linear(target, sources, weights))
    moco = folder_tensors(out)
    name = "model.embed_tokens.weight"
    assert_close(moco[name], 0.25 * first[name] + 1.0 * second[name])  # w0²·E0 + 2·w1·E1
    assert_close(lit[name], 0.5 * first[name] + 0.5 * second[name])
    assert "lm_head.weight" not in lit  # the tied tensor is written once
    others = {n: t for n, t in lit.items() if n != name}
    assert others
    assert_same_tensors(moco, others)  # every untied tensor agrees


def test_task_arithmetic_equals_moco_linear_merge_of_base_and_models(untied, tmp_path):
    # base + Σ w_i (x_i − base) is MoCo's linear merge with weights (1 − Σw, w_1, w_2)
    weights = [0.7, -0.4]
    out = str(tmp_path / "moco")
    swarm_utils.full_model_linear_merge([1 - sum(weights), *weights], untied[:3], out, dtype=torch.float32)
    base, *models = (model_weights(load_tiny(p), p) for p in untied[:3])
    lit = lit_merge(untied[0], lambda target: merge_task_arithmetic(target, base, models, weights))
    assert_same_tensors(folder_tensors(out), lit)


def _random_deltas(count: int, shape=(5, 7), seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    deltas = [torch.randn(shape, generator=generator) for _ in range(count)]
    deltas[0][0] = 0.0  # zeros agree with no sign
    deltas[1][1] = -deltas[0][1]  # opposite entries: a zero total elects +
    return deltas


def test_ties_sums_agreeing_weighted_entries_as_moco():
    deltas, weights = _random_deltas(3), [0.5, 0.3, 0.2]
    moco = swarm_utils._ties_sign_consensus_merge([d * w for d, w in zip(deltas, weights)])
    assert_close(ties(deltas, weights), moco)
    # the paper's disjoint mean stays one option away, and really differs
    assert not torch.allclose(ties(deltas, weights, disjoint_mean=True), moco)


def test_dare_with_the_same_mask_equals_moco_sparsify(monkeypatch):
    delta, density, seed = _random_deltas(2, (40, 30))[1], 0.6, 123
    mask = dare_mask(delta.shape, 1 - density, seed)
    drawn = []

    def bernoulli(probabilities, generator=None):
        drawn.append(float(probabilities.flatten()[0]))
        return mask.to(probabilities.dtype)

    monkeypatch.setattr(torch, "bernoulli", bernoulli)
    moco = swarm_utils._dare_sparsify(delta, density)
    assert drawn == [pytest.approx(density)]  # MoCo's keep probability is the density
    assert_close(dare(delta, 1 - density, seed), moco)
    assert not torch.allclose(dare(delta, 1 - density, seed, rescale="inverse_density"), moco)


@pytest.mark.parametrize("density", [1.0, 0.6])
def test_dare_ties_merge_equals_moco_with_the_same_masks(untied, tmp_path, monkeypatch, density):
    base_path, model_paths, weights, seed = untied[0], untied[1:3], [0.6, 0.4], 5
    names = list(folder_tensors(base_path))
    # MoCo draws one Bernoulli mask per (model, tensor) in that order, in each of its two passes
    expected_calls = [(i, name) for i in range(len(model_paths)) for name in names] * 2
    calls = []

    def bernoulli(probabilities, generator=None):
        model, name = expected_calls[len(calls)]
        calls.append((model, name))
        mask = dare_mask(probabilities.shape, 1 - density, tensor_seed(seed, model, name))
        return mask.to(probabilities.dtype)

    monkeypatch.setattr(torch, "bernoulli", bernoulli)
    out = str(tmp_path / "moco")
    swarm_utils.dare_ties_merge(weights, model_paths, base_path, out, density=density, dtype=torch.float32)
    assert calls == (expected_calls if density < 1 else [])
    base = model_weights(load_tiny(base_path), "base")
    sources = [model_weights(load_tiny(p), p) for p in model_paths]
    lit = lit_merge(
        base_path, lambda target: merge_dare_ties(target, base, sources, weights, density=density, seed=seed)
    )
    assert_same_tensors(folder_tensors(out), lit)


class _Float32Loader:
    """MoCo's ExPO loads in bfloat16 with no dtype argument: the same loader, in float32."""

    @staticmethod
    def from_pretrained(path, **kwargs):
        from transformers import AutoModelForCausalLM

        kwargs.update(torch_dtype=torch.float32)
        kwargs.pop("device_map", None)
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def test_extrapolation_equals_moco_expo(untied, tmp_path, monkeypatch):
    weight_expo = pytest.importorskip("model_collaboration.method.weight_expo")
    monkeypatch.setattr(weight_expo, "AutoModelForCausalLM", _Float32Loader)
    source, target, alpha = untied[0], untied[1], 0.3
    out = str(tmp_path / "moco")
    weight_expo.extrapolate_models(source, target, alpha, out, gpu_id=0)
    source_w, target_w = (model_weights(load_tiny(p), p) for p in (source, target))
    lit = lit_merge(target, lambda t: merge_extrapolate(t, source_w, target_w, alpha))
    assert_same_tensors(folder_tensors(out), lit)


def _adapter_files(paths: list[str]) -> list[dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    # copies: load_file maps the file, and MoCo rewrites its folders in place
    return [
        {name: t.clone() for name, t in load_file(os.path.join(p, "adapter_model.safetensors")).items()}
        for p in paths
    ]


def _adapter_name(parameter: str) -> str:
    """A PEFT parameter name as PEFT saves it (without the adapter's name)."""
    return parameter.replace(".default.", ".")


def lit_adapter_merge(base: str, adapters: list[str], weights: list[float]) -> dict[str, torch.Tensor]:
    """moco_lit's merge of LoRA tensors (Model Swarms' and LoraHub's adapter space)."""
    from peft import PeftModel

    models = [PeftModel.from_pretrained(load_tiny(base), a) for a in adapters]
    target = writable_tensors(models[0], adapters_only=True)
    merge_linear(target, [adapter_weights(m, a) for m, a in zip(models, adapters)], weights)
    return {_adapter_name(name): t.clone() for name, t in target.items()}


def test_lora_combination_equals_moco_fast_merge(untied, tmp_path):
    adapters = make_lora_adapters(untied[0], tmp_path, 3)
    weights = [0.8, -0.3, 0.5]
    moco = swarm_utils.lora_merge(weights, adapters, str(tmp_path / "moco"), 0, directly_load_safetensors=1)
    lit = lit_adapter_merge(untied[0], adapters, weights)
    assert set(lit) == set(moco)
    assert_same_tensors(moco, lit)
    # what MoCo wrote is what it returned
    assert_same_tensors(_adapter_files([str(tmp_path / "moco")])[0], lit)


# -- searches: MoCo's run_method with scripted dev scores ---------------------------------------

SMALL = ["--model.max_new_tokens", "2", "--data.benchmark", "quickstart", "--data.limit", "2"]


def goal_score(get, goal: dict[str, torch.Tensor]) -> float:
    """The scripted dev score of a model: minus its squared distance to ``goal`` (read from its
    tensors, so both sides score a merge by what the merge wrote)."""
    return -sum(float((get(name).float() - value).pow(2).sum()) for name, value in goal.items())


def lit_score(module, model: int, goal: dict[str, torch.Tensor]) -> float:
    weights = module.target if model == module.merged_index else module.sources[model]
    return goal_score(weights.get if isinstance(weights, dict) else weights.tensor, goal)


@pytest.fixture
def moco_run(tmp_path, monkeypatch):
    """``run(module, models, hyperparameters, score_of_folder)`` runs MoCo's ``run_method`` in
    ``tmp_path``: every model MoCo generates with is scored by ``score_of_folder(path)`` (its one
    output is that score, which the patched metric returns). Gives [(path, score)] in call order."""
    eval_module = pytest.importorskip("model_collaboration.data.eval")
    generation = pytest.importorskip("model_collaboration.method.distributed_generation")
    (tmp_path / "model_collaboration" / "logs").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "chdir", lambda path: None)  # run_method moves into its package
    monkeypatch.setattr(gc, "collect", lambda *args: 0)  # MoCo frees memory after each merge: slow here
    monkeypatch.setattr(eval_module, "prepare_inputs", lambda task, task_type, split, ratio=1.0: [split])

    def get_scores(task, task_type, split, outputs, ratio=1.0):
        return [float(output) for output in outputs]

    monkeypatch.setattr(eval_module, "get_scores", get_scores)

    def run(module, models, hyperparameters, score_of_folder) -> list[tuple[str, float]]:
        evaluated: list[tuple[str, float]] = []

        def generate(model_names, inputs, gpu_ids):
            outputs = []
            for path, prompts in zip(model_names, inputs):
                evaluated.append((path, score_of_folder(path)))
                outputs.append([repr(evaluated[-1][1])] * len(prompts))
            return outputs

        monkeypatch.setattr(generation, "distributed_generation", generate)
        module.run_method("parity", "exact_match", [0], list(models), hyperparameters)
        return evaluated

    return run


def folder_score(goal):
    return lambda path: goal_score(folder_tensors(path).__getitem__, goal)


def test_greedy_soup_same_order_same_keeps_same_soup(untied, moco_run, run_cli, monkeypatch):
    weight_greedy_soup = pytest.importorskip("model_collaboration.method.weight_greedy_soup")
    from moco_lit.methods.weight.greedy_soup import GreedySoup

    a, b, c = (folder_tensors(p) for p in untied[:3])
    goal = {n: 0.6 * a[n] + 0.4 * c[n] for n in a}  # ranks a, c, b; a+c helps, adding b hurts
    merges: list[list[str]] = []

    def linear_merge(weights, model_path_list, output_path, dtype=None):
        merges.append(list(model_path_list))
        swarm_utils.full_model_linear_merge(weights, model_path_list, output_path, dtype=torch.float32)

    monkeypatch.setattr(weight_greedy_soup, "full_model_linear_merge", linear_merge)
    evaluated = moco_run(weight_greedy_soup, untied[:3], {}, folder_score(goal))

    monkeypatch.setattr(GreedySoup, "dev_score", lambda self, model, batches: lit_score(self, model, goal))
    _, cli = run_cli(
        "test", "--model", "greedy_soup", "--model.collaborators", f"[{', '.join(untied[:3])}]", *SMALL
    )
    module: GreedySoup = cli.model
    # dev scores of the single models, then of each soup tried, in the same order
    assert_close(module.dev_scores.tolist(), [s for _, s in evaluated[:3]], rtol=1e-5, atol=0)
    tried = [[untied[m] for m, w in enumerate(h["recipe"]["weights"]) if w > 0] for h in module.history]
    assert (
        [sorted(t) for t in tried]
        == [sorted(m) for m in merges[:-1]]
        == [
            sorted([untied[0], untied[2]]),
            sorted(untied[:3]),
        ]
    )
    assert_close([h["score"] for h in module.history], [s for _, s in evaluated[3:5]], rtol=1e-5, atol=0)
    # the same soup is kept and tested: a and c
    assert module.selection.selected == [0, 2] and merges[-1] == [untied[0], untied[2]]
    assert_same_tensors(folder_tensors("model_collaboration/logs/greedy_soup"), dict(module.target))


def test_expo_same_endpoints_same_alpha_search(untied, moco_run, run_cli, monkeypatch):
    import json

    weight_expo = pytest.importorskip("model_collaboration.method.weight_expo")
    from moco_lit.methods.weight.expo import Expo

    monkeypatch.setattr(weight_expo, "AutoModelForCausalLM", _Float32Loader)
    a, b, c = (folder_tensors(p) for p in untied[:3])
    goal = {n: b[n] + 0.27 * (b[n] - c[n]) for n in b}  # best b, worst c; alpha 0.3 comes closest
    hyperparameters = {"alpha_mode": "optimized", "expo_base_path": "expo/"}
    evaluated = moco_run(weight_expo, untied[:3], hyperparameters, folder_score(goal))
    (log,) = Path("model_collaboration/logs").glob("*_expo.json")
    moco_log = json.loads(log.read_text())

    monkeypatch.setattr(Expo, "dev_score", lambda self, model, batches: lit_score(self, model, goal))
    args = ["--model.alpha_mode", "optimized", "--model.collaborators", f"[{', '.join(untied[:3])}]"]
    _, cli = run_cli("test", "--model", "expo", *args, *SMALL)
    module: Expo = cli.model
    assert_close(module.dev_scores.tolist(), [s for _, s in evaluated[:3]], rtol=1e-5, atol=0)
    assert (moco_log["source_model"], moco_log["target_model"]) == (untied[2], untied[1])
    target, source = module.endpoints()
    assert target.tolist() == [0, 1, 0] and source.tolist() == [0, 0, 1]
    # the same candidates, scored alike, and the same alpha chosen
    assert [h["recipe"]["alpha"] for h in module.history] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert_close([h["score"] for h in module.history], [s for _, s in evaluated[3:8]], rtol=1e-5, atol=0)
    assert module.chosen_alpha == moco_log["alpha"] == 0.3
    assert_same_tensors(folder_tensors(evaluated[-1][0]), dict(module.target))


# -- swarms: the same draws on both sides -----------------------------------------------------------


class Draws:
    """One scripted stream of uniform draws in [0, 1), read in order by one side."""

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.values = torch.rand(4000, generator=generator, dtype=torch.float64).tolist()
        self.used = 0

    def next(self) -> float:
        self.used += 1
        return self.values[self.used - 1]

    def tensor(self, *shape: int) -> torch.Tensor:
        """moco_lit's ``ParticleSwarm._rand``: draws in row-major order."""
        count = int(torch.Size(shape).numel())
        return torch.tensor([self.next() for _ in range(count)], dtype=torch.float64).reshape(shape)


class ScriptedRandom:
    """Stands in for MoCo's ``random`` module: ``uniform`` reads the draws, ``randint`` the picks."""

    def __init__(self, draws: Draws, picks: list[int] | None = None) -> None:
        self.draws, self.picks = draws, list(picks or [])

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.draws.next()

    def randint(self, low: int, high: int) -> int:
        return self.picks.pop(0)

    def choice(self, items):
        return items[0]  # MoCo's first global best/worst, overwritten by the first update


def _numeric_state(swarm) -> dict[str, torch.Tensor]:
    return {
        "positions": torch.stack(swarm.particles).double(),
        "velocities": torch.stack(swarm.velocities).double(),
        "personal_best": torch.stack(swarm.personal_bests).double(),
        "global_best": swarm.global_best.double(),
        "global_worst": swarm.global_worst.double(),
    }


def _lit_state(swarm) -> dict[str, torch.Tensor]:
    return {
        "positions": swarm.positions.clone(),
        "velocities": swarm.velocities.clone(),
        "personal_best": swarm.personal_best.clone(),
        "global_best": swarm.global_best.clone(),
        "global_worst": swarm.global_worst.clone(),
    }


def assert_same_trajectory(moco: list[dict], lit: list[dict]) -> None:
    assert len(moco) == len(lit)
    for step, (a, b) in enumerate(zip(moco, lit)):
        for key in a:
            assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=f"update {step + 1}: {key}")


# plateaus make particles restart and the search stop: restart_patience 2, patience 4
PLATEAU_SCORES = [
    [0.1, 0.2, 0.3],
    [0.2, 0.1, 0.4],
    [0.1, 0.3, 0.5],
    [0.05, 0.3, 0.6],
    [0.0, 0.2, 0.6],
    [0.0, 0.1, 0.6],
    [0.0, 0.1, 0.6],
    [0.0, 0.1, 0.6],
]


def test_dare_ties_swarm_moves_as_moco_numeric_swarm(monkeypatch):
    """DARE-TIES' optimiser against MoCo's ``NumericSwarm``: same positions, velocities, bests,
    restarts (a restarted particle sits its update out) and stop (after one update without a new
    global best), from the same draws and scores."""
    numeric_swarm = pytest.importorskip("model_collaboration.utils.numeric_swarm")
    from moco_lit.search import ParticleSwarm

    moco_draws, lit_draws = Draws(), Draws()
    monkeypatch.setattr(numeric_swarm, "random", ScriptedRandom(moco_draws))
    monkeypatch.setattr(ParticleSwarm, "_rand", lambda self, *shape: lit_draws.tensor(*shape))
    settings = {"patience": 4, "restart_patience": 2}
    moco = numeric_swarm.NumericSwarm(dimension=2, population=3, **settings)
    lit = ParticleSwarm(dimension=2, population=3, seed=0, **settings)
    moco_path, lit_path, stops = [_numeric_state(moco)], [_lit_state(lit)], []
    for scores in PLATEAU_SCORES:
        stops.append((moco.update(list(scores)), lit.tell(scores)))
        moco_path.append(_numeric_state(moco))
        lit_path.append(_lit_state(lit))
        if stops[-1][0]:
            break
    assert stops == [(False, False)] * 4 + [(True, True)]  # MoCo's rule: g[-1] <= max(g[-4:-1])
    assert_same_trajectory(moco_path, lit_path)
    # 12 starting draws, 4 per move, 2 per restart: 9 moves and 3 restarts (updates 3 and 4)
    assert moco_draws.used == lit_draws.used == 12 + 9 * 4 + 3 * 2


def _adapter_folder(path: str) -> dict[str, torch.Tensor]:
    return _adapter_files([path])[0]


def test_model_swarms_moves_as_moco_weight_swarm(untied, tmp_path, moco_run, run_cli, monkeypatch):
    """Model Swarms on LoRA adapters (MoCo's fast merge) against MoCo's ``Swarm``: every particle's
    position, velocity and personal best, and the global best and worst, as weights after every
    update; restarts with MoCo's cooldown; MoCo's stop rule; the same global best tested."""
    weight_model_swarms = pytest.importorskip("model_collaboration.method.weight_model_swarms")
    from moco_lit.methods.weight.model_swarms import ModelSwarms
    from moco_lit.search import CoefficientSwarm

    adapters = make_lora_adapters(untied[0], tmp_path, 3)
    sources = _adapter_files(adapters)
    partners = [1, 2, 0]  # the starting velocity of particle i points to model partners[i]

    def scripted(counter: list[int]):
        def score() -> float:
            counter[0] += 1
            iteration, particle = divmod(counter[0] - 1, 3)
            return PLATEAU_SCORES[iteration][particle] if iteration < len(PLATEAU_SCORES) else -1.0

        return score

    # MoCo: snapshots of its folders after every update
    moco_draws, moco_path, moco_counters = Draws(), [], []
    monkeypatch.setattr(swarm_utils, "random", ScriptedRandom(moco_draws, [*partners, 0, 0]))
    update = swarm_utils.Swarm.update

    def recorded_update(self, scores):
        stop = update(self, scores)
        moco_counters.append(list(self.restart_counter))
        base = Path(self.swarm_base_path)
        moco_path.append(
            {
                "positions": [_adapter_folder(str(base / f"model_{i}" / "now")) for i in range(3)],
                "velocities": [_adapter_folder(str(base / f"model_{i}" / "velocity")) for i in range(3)],
                "personal_best": [
                    _adapter_folder(str(base / f"model_{i}" / "personal_best")) for i in range(3)
                ],
                "global_best": [_adapter_folder(str(base / "global_best"))],
                "global_worst": [_adapter_folder(str(base / "global_worst"))],
            }
        )
        return stop

    monkeypatch.setattr(swarm_utils.Swarm, "update", recorded_update)
    moco_score = scripted([0])
    tested = {}

    def score_of_folder(path: str) -> float:
        if "global_best" in path:  # the test run after the search
            tested.update(_adapter_folder(path))
            return 0.0
        return moco_score()

    hyperparameters = {
        "swarm_base_path": str(tmp_path / "swarm") + "/",
        "fast_merge_flag": True,
        "patience": 4,
        "restart_patience": 2,
    }
    moco_run(weight_model_swarms, adapters, hyperparameters, score_of_folder)

    # moco_lit: the same partners and draws; coefficients shown as the weights they stand for
    lit_draws, lit_path, lit_counters = Draws(), [], []
    monkeypatch.setattr(CoefficientSwarm, "_partner", lambda self, particle: partners[particle])
    start_search, tell = ModelSwarms.start_search, CoefficientSwarm.tell

    def start_with_draws(self):
        start_search(self)
        self.swarm._rand = lambda *shape: lit_draws.tensor(*shape)  # after its own set-up draws

    def as_weights(coefficients: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [
            {name: sum(float(c) * s[name] for c, s in zip(row, sources)) for name in sources[0]}
            for row in coefficients.reshape(-1, 3)
        ]

    def recorded_tell(self, scores):
        stop = tell(self, scores)
        lit_counters.append(list(self.cooldown))
        lit_path.append({key: as_weights(value) for key, value in _lit_state(self).items()})
        return stop

    lit_score_of = scripted([0])
    monkeypatch.setattr(ModelSwarms, "start_search", start_with_draws)
    monkeypatch.setattr(CoefficientSwarm, "tell", recorded_tell)
    monkeypatch.setattr(ModelSwarms, "dev_score", lambda self, model, batches: lit_score_of())
    collaborators = f"[{', '.join(f'{untied[0]}+{a}' for a in adapters)}]"
    extra = [
        "--model.swarm.patience",
        "4",
        "--model.swarm.restart_patience",
        "2",
        "--trainer.max_epochs",
        "10",
    ]
    _, cli = run_cli("fit", "--model", "model_swarms", "--model.collaborators", collaborators, *extra, *SMALL)
    module: ModelSwarms = cli.model

    # MoCo's Swarm stops when g[-1] <= g[-4]: after update 7 (the numeric rule would stop at 5)
    assert len(moco_path) == len(lit_path) == 7 and module.finished
    assert moco_draws.used == lit_draws.used == 6 * 3 * 4
    for step, (moco_state, lit_state) in enumerate(zip(moco_path, lit_path)):
        for key in moco_state:
            for particle, (a, b) in enumerate(zip(moco_state[key], lit_state[key])):
                for name in a:
                    assert_close(
                        b[name], a[name], rtol=1e-5, atol=1e-6, msg=f"{step + 1} {key} {particle} {name}"
                    )
    # restarts at updates 3, 4 and 5 (one particle each), each followed by MoCo's cooldown
    assert lit_counters == moco_counters
    assert moco_counters[2:5] == [[3, 0, 0], [2, 3, 0], [1, 2, 3]]
    # the global best (particle 2 at update 4) is what both test
    final = lit_adapter_merge(untied[0], adapters, module.final_recipe()["weights"])
    assert_same_tensors(tested, final)
    assert_same_tensors(tested, {_adapter_name(n): t for n, t in module.target.items()})


def test_model_swarms_numeric_rules_stay_one_option_away():
    """``swarm_rules: numeric`` (moco_lit's earlier Model Swarms) stops two updates sooner on the
    same scores: after one update without a new global best."""
    from moco_lit.search import CoefficientSwarm

    stops = {}
    for rules in ("model_swarms", "numeric"):
        swarm = CoefficientSwarm(3, seed=0, rules=rules, patience=4, restart_patience=2)
        stops[rules] = next(i + 1 for i, scores in enumerate(PLATEAU_SCORES) if swarm.tell(scores))
    assert stops == {"model_swarms": 7, "numeric": 5}
