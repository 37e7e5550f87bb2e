"""The vLLM generation backend: its error without vllm, its records and seeds on a stand-in vllm,
and (on CUDA machines with vllm) greedy outputs equal to the HF backend's."""

from __future__ import annotations

import importlib.util
import random
import sys
import types
from dataclasses import dataclass, field

import pytest
import torch

from moco_lit.cache import GenerationCache
from moco_lit.collaborators import Collaborator, CollaboratorSpec, load_collaborator
from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig, GenerationEngine, eos_ids_of
from moco_lit.generation import vllm as vllm_backend
from tests.conftest import collaborators_arg

PROMPTS = ["What is 3 times 4?", "Reverse the letters abcd.", "Which letter comes after q?"]


# -- a stand-in for the parts of vllm the backend uses (shapes as in vllm.outputs / vllm.logprobs) --


@dataclass
class FakeSamplingParams:
    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: list[int] | None = None
    logprobs: int | None = None


@dataclass
class FakeLogprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class FakeCompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, FakeLogprob]] | None
    finish_reason: str | None = None


@dataclass
class FakeRequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput]
    finished: bool = True


@dataclass
class FakeLLM:
    """Emits tokens drawn from the row's seed (greedy: from its prompt), ending with the first stop id."""

    model: str
    tokenizer: str | None = None
    dtype: str = "auto"
    seed: int = 0
    gpu_memory_utilization: float = 0.9
    calls: list[tuple[list[dict], list[FakeSamplingParams]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        LOADED.append(self)

    def generate(self, prompts, sampling_params, use_tqdm: bool = True) -> list[FakeRequestOutput]:
        self.calls.append((list(prompts), list(sampling_params)))
        return [self._one(i, p, s) for i, (p, s) in enumerate(zip(prompts, sampling_params))]

    def _one(self, index: int, prompt: dict, params: FakeSamplingParams) -> FakeRequestOutput:
        ids = prompt["prompt_token_ids"]
        rng = random.Random(sum(ids) if params.seed is None else params.seed)
        length = 1 + rng.randrange(params.max_tokens)
        tokens = [rng.randrange(40, 300) for _ in range(length)]
        if length < params.max_tokens:  # stopped early: the stop token is part of token_ids
            tokens.append(params.stop_token_ids[0])
        steps = [{t: FakeLogprob(-0.1 * (k + 1), rank=1)} for k, t in enumerate(tokens)]
        completion = FakeCompletionOutput(
            0, f"text {index}", tokens, sum(s[t].logprob for s, t in zip(steps, tokens)), steps
        )
        return FakeRequestOutput(str(index), None, list(ids), [completion])


LOADED: list[FakeLLM] = []


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    LOADED.clear()
    vllm_backend.release_engines()
    yield module
    vllm_backend.release_engines()


# -- without vllm ---------------------------------------------------------------------------------


def test_choosing_vllm_without_it_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(UserError, match="install vllm on a CUDA machine, or use --generation_backend hf"):
        GenerationEngine(backend="vllm")
    with pytest.raises(UserError, match="expected one of hf, vllm, llama_cpp"):
        GenerationEngine(backend="tgi")


def test_the_cli_flag_reaches_the_engine(run_cli, tiny_models, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)
    base = ["--model", "single_model", "--model.collaborators", collaborators_arg(tiny_models[:1])]
    base += ["--model.max_new_tokens", "4", "--data.benchmark", "quickstart", "--data.limit", "2"]
    base += ["--cache_path", str(tmp_path / "c.sqlite")]
    with pytest.raises(UserError, match="--generation_backend hf"):
        run_cli("test", *base, "--generation_backend", "vllm")
    with pytest.raises(UserError, match="generation_backend"):
        run_cli("test", *base, "--generation_backend", "tgi")
    code, cli = run_cli("test", *base)
    assert code == 0 and cli.model.engine.backend == "hf"


# -- on a stand-in vllm ---------------------------------------------------------------------------


def test_records_have_the_hf_format_and_keys(fake_vllm, tiny_models, tmp_path):
    collaborator = load_collaborator(tiny_models[0])
    cache = GenerationCache(tmp_path / "c.sqlite")
    decoding = DecodingConfig(max_new_tokens=6)
    outputs = GenerationEngine(cache=cache, backend="vllm").generate(collaborator, PROMPTS, decoding)
    (llm,) = LOADED
    assert (llm.model, llm.tokenizer, llm.dtype) == (tiny_models[0], tiny_models[0], "float32")
    (prompts, params), *_ = llm.calls
    tokenizer, eos_ids = collaborator.tokenizer, eos_ids_of(collaborator.model, collaborator.tokenizer)
    for prompt, sent, param, output in zip(PROMPTS, prompts, params, outputs):
        # the same token ids the HF path feeds the model: the rendering, no extra special tokens
        ids = tokenizer(collaborator.render(prompt), add_special_tokens=False)["input_ids"]
        assert sent == {"prompt_token_ids": ids}
        assert (param.max_tokens, param.temperature, param.seed, param.logprobs) == (6, 0.0, None, 0)
        assert param.stop_token_ids == eos_ids
        emitted = llm._one(0, sent, param).outputs[0].token_ids
        kept = emitted[:-1] if emitted[-1] in eos_ids else emitted
        assert output.raw_text == tokenizer.decode(kept, skip_special_tokens=True)
        assert (output.prompt_tokens, output.new_tokens) == (len(ids), len(kept))
        # mean over the kept tokens only (the stop token's log-probability left out)
        expected = sum(-0.1 * (k + 1) for k in range(len(kept))) / max(len(kept), 1)
        assert output.mean_logprob == pytest.approx(expected)
    # a later engine finds every record in the cache, under the same keys, without calling vLLM
    again = GenerationEngine(cache=cache, backend="hf").generate(collaborator, PROMPTS, decoding)
    assert all(o.cached for o in again) and [o.to_record() for o in again] == [o.to_record() for o in outputs]
    assert len(llm.calls) == 1


def test_each_row_samples_with_its_own_seed(fake_vllm, tiny_models):
    collaborator = load_collaborator(tiny_models[1])
    sampling = DecodingConfig(max_new_tokens=8, temperature=0.7, top_p=0.9)
    engine = GenerationEngine(backend="vllm")
    together = engine.generate(collaborator, PROMPTS, sampling, seeds=[11, 12, 13], sample=2)
    alone = [
        engine.generate(collaborator, [p], sampling, seeds=[s], sample=2)[0]
        for p, s in zip(PROMPTS, [11, 12, 13])
    ]
    assert [o.raw_text for o in together] == [o.raw_text for o in alone]
    (llm,) = LOADED  # one engine per model folder, however many calls
    params = llm.calls[0][1]
    assert [p.seed for p in params] == [11 ^ 2, 12 ^ 2, 13 ^ 2]
    assert {(p.temperature, p.top_p) for p in params} == {(0.7, 0.9)}
    reseeded = engine.generate(collaborator, PROMPTS, sampling, seeds=[21, 22, 23], sample=2)
    assert [o.raw_text for o in reseeded] != [o.raw_text for o in together]


def test_changed_weights_and_scripted_models_use_hf(fake_vllm, tiny_models):
    collaborator = load_collaborator(tiny_models[2])
    decoding = DecodingConfig(max_new_tokens=5)
    expected = GenerationEngine().generate(collaborator, PROMPTS, decoding)
    merged = Collaborator(
        name="merged",
        spec=collaborator.spec,
        tokenizer=collaborator.tokenizer,
        model=collaborator.model,
        fingerprint=collaborator.fingerprint,
    )
    merged.refresh_fingerprint("merge: task arithmetic")  # vLLM would read the unmerged files
    engine = GenerationEngine(backend="vllm")
    assert [o.raw_text for o in engine.generate(merged, PROMPTS, decoding)] == [o.raw_text for o in expected]
    scripted = load_collaborator("callable:tests.scripted.oracle")
    assert engine.generate(scripted, ["What is 2 + 2?"], decoding)[0].raw_text
    assert LOADED == []


def test_adapters_are_refused(fake_vllm, tiny_models):
    collaborator = load_collaborator(tiny_models[0])
    adapted = Collaborator(
        name="tiny0+lora",
        spec=CollaboratorSpec(path=tiny_models[0], adapter="/some/adapter"),
        tokenizer=collaborator.tokenizer,
        model=collaborator.model,
    )
    with pytest.raises(UserError, match="PEFT adapter.*merge_and_unload.*--generation_backend hf"):
        GenerationEngine(backend="vllm").generate(adapted, PROMPTS, DecodingConfig(max_new_tokens=4))


# -- real vLLM ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
    reason="needs CUDA and vllm",
)
def test_real_vllm_greedy_equals_hf(tiny_models):
    spec = {"path": tiny_models[0], "dtype": "float32"}  # float32: no near-ties flipped by rounding
    collaborator = load_collaborator(spec, "cuda")
    decoding = DecodingConfig(max_new_tokens=12)
    hf = GenerationEngine(progress=False).generate(collaborator, PROMPTS, decoding)
    vllm = GenerationEngine(backend="vllm", progress=False).generate(collaborator, PROMPTS, decoding)
    assert [o.raw_text for o in vllm] == [o.raw_text for o in hf]
    assert [(o.prompt_tokens, o.new_tokens) for o in vllm] == [(o.prompt_tokens, o.new_tokens) for o in hf]
    for ours, theirs in zip(vllm, hf):
        assert ours.mean_logprob == pytest.approx(theirs.mean_logprob, abs=1e-3)
