"""The llama.cpp backend: its batching and sequence bookkeeping, checked against a stand-in for the
``llama_cpp`` module whose forward pass is a tiny transformers model (always runs), and the real
llama.cpp on the package-shipped SmolLM2 GGUF (skipped where llama-cpp-python or the model is missing).
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from moco_lit.cache import GenerationCache
from moco_lit.collaborators import load_collaborator
from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig, GenerationEngine
from tests.lively import save_lively_model

PROMPTS = [
    "What is 3 times 4?",
    "Reverse the letters abcd.",
    "Which letter comes after q?",
    "Hi",
    "Count from one to five, slowly, one number after another.",
    "ok",
]
NEW_TOKENS = 12


class FakeLlamaCpp:
    """The few ``llama_cpp`` calls the backend makes. ``llama_decode`` checks that every token
    continues its sequence at the right position and answers the flagged ones with the logits of
    ``model`` over that whole sequence (no padding, no cache)."""

    def __init__(self, model) -> None:
        self.model = model
        self.vocabulary = model.config.vocab_size
        self.sequences: dict[int, list[int]] = {}
        self.removed: list[int] = []
        self.decodes: list[int] = []  # tokens per llama_decode call
        self.contexts: list[SimpleNamespace] = []
        self.loaded: list[bytes] = []
        self.llama_log_callback = lambda function: function

    def llama_log_set(self, callback, data) -> None:
        pass

    def llama_backend_init(self) -> None:
        pass

    def llama_model_default_params(self):
        return SimpleNamespace()

    def llama_model_load_from_file(self, path: bytes, params):
        self.loaded.append(path)
        return "model"

    def llama_model_get_vocab(self, model):
        return "vocabulary"

    def llama_vocab_n_tokens(self, vocabulary) -> int:
        return self.vocabulary

    def llama_context_default_params(self):
        return SimpleNamespace()

    def llama_init_from_model(self, model, params):
        self.contexts.append(params)
        self.sequences = {}
        return "context"

    def llama_batch_init(self, tokens: int, embedding: int, sequences: int):
        return SimpleNamespace(
            n_tokens=0,
            token=[0] * tokens,
            pos=[0] * tokens,
            n_seq_id=[0] * tokens,
            seq_id=[[0] for _ in range(tokens)],
            logits=[False] * tokens,
        )

    def llama_decode(self, context, batch) -> int:
        assert batch.n_tokens <= self.contexts[-1].n_batch
        self.decodes.append(batch.n_tokens)
        outputs = []
        for index in range(batch.n_tokens):
            assert batch.n_seq_id[index] == 1
            sequence = self.sequences.setdefault(batch.seq_id[index][0], [])
            assert batch.pos[index] == len(sequence), "a token out of place in its sequence"
            sequence.append(batch.token[index])
            if batch.logits[index]:
                with torch.no_grad():
                    outputs.append(self.model(torch.tensor([sequence])).logits[0, -1])
        flat = torch.stack(outputs).flatten().tolist()
        self.outputs = (ctypes.c_float * len(flat))(*flat)
        return 0

    def llama_get_logits(self, context):
        return ctypes.cast(self.outputs, ctypes.POINTER(ctypes.c_float))

    def llama_get_memory(self, context):
        return "memory"

    def llama_memory_seq_rm(self, memory, sequence: int, start: int, end: int) -> bool:
        self.removed.append(sequence)
        del self.sequences[sequence]
        return True

    def llama_batch_free(self, batch) -> None:
        pass

    def llama_free(self, context) -> None:
        pass


@pytest.fixture
def gguf_model(tiny_models, tmp_path) -> str:
    """A tiny model folder laid out as ``models fetch`` leaves a converted GGUF checkpoint."""
    folder = Path(save_lively_model(tmp_path / "converted", tiny_models[0]))
    (folder / "gguf").mkdir()
    (folder / "gguf" / "tiny.gguf").write_bytes(b"GGUF")
    (folder / "conversion.json").write_text(json.dumps({"file": "tiny.gguf", "dtype": "float32"}))
    return str(folder)


@pytest.fixture
def fake_llama(gguf_model, monkeypatch) -> FakeLlamaCpp:
    collaborator = load_collaborator(gguf_model)
    # rows end after different numbers of steps: ~6% of the vocabulary ends a sequence
    vocabulary = len(collaborator.tokenizer)
    ends = torch.randperm(vocabulary, generator=torch.Generator().manual_seed(1))[: vocabulary // 16]
    eos = sorted(set(ends.tolist()) - {collaborator.tokenizer.pad_token_id})
    monkeypatch.setattr(collaborator.model.generation_config, "eos_token_id", eos)
    fake = FakeLlamaCpp(collaborator.model)
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    return fake


@pytest.mark.parametrize(
    "decoding",
    [
        DecodingConfig(max_new_tokens=NEW_TOKENS, top5_confidence=True),
        DecodingConfig(max_new_tokens=NEW_TOKENS, temperature=1.0, top_p=0.9, top5_confidence=True),
    ],
    ids=["greedy", "sampling"],
)
def test_batched_sequences_give_the_hf_records(fake_llama, gguf_model, decoding):
    collaborator = load_collaborator(gguf_model)
    seeds = list(range(len(PROMPTS)))
    expected = GenerationEngine(batch_size=4).generate(collaborator, PROMPTS, decoding, seeds)
    got = GenerationEngine(batch_size=4, backend="llama_cpp").generate(collaborator, PROMPTS, decoding, seeds)
    assert len({o.new_tokens for o in expected}) > 1  # rows ended at different steps
    for want, have in zip(expected, got):
        assert (have.raw_text, have.new_tokens) == (want.raw_text, want.new_tokens)
        assert have.mean_logprob == pytest.approx(want.mean_logprob, abs=1e-4)
        assert have.top5_confidence == pytest.approx(want.top5_confidence, abs=1e-4)
    assert fake_llama.loaded == [str((Path(gguf_model) / "gguf" / "tiny.gguf").resolve()).encode()]
    # two batches (4 rows, then 2): every row's prompt in one call, then one call per step holding
    # one token per row still writing, so the calls shrink as rows end and give their cache back
    assert [c.n_seq_max for c in fake_llama.contexts] == [4, 2]
    prompts = [d for d in fake_llama.decodes if d > 4]
    assert len(prompts) == 2 and sum(prompts) == sum(o.prompt_tokens for o in expected)
    assert fake_llama.removed and {1, 2, 3} & set(fake_llama.decodes)


def test_its_outputs_are_cached_apart_from_the_hf_path(fake_llama, gguf_model, tmp_path):
    collaborator = load_collaborator(gguf_model)
    decoding = DecodingConfig(max_new_tokens=NEW_TOKENS)
    cache = tmp_path / "generations.sqlite"
    GenerationEngine(cache=GenerationCache(cache), backend="llama_cpp").generate(
        collaborator, PROMPTS, decoding
    )
    hf = GenerationEngine(cache=GenerationCache(cache))
    hf.generate(collaborator, PROMPTS, decoding)
    assert hf.stats.cache_hits == 0
    again = GenerationEngine(cache=GenerationCache(cache), backend="llama_cpp")
    again.generate(collaborator, PROMPTS, decoding)
    assert again.stats.cache_hits == len(PROMPTS)


def test_a_model_without_a_gguf_file_falls_back_to_hf(fake_llama, tiny_models, tmp_path, caplog):
    collaborator = load_collaborator(tiny_models[1])
    decoding = DecodingConfig(max_new_tokens=6)
    cache = tmp_path / "generations.sqlite"
    with caplog.at_level(logging.WARNING):
        engine = GenerationEngine(cache=GenerationCache(cache), backend="llama_cpp")
        engine.generate(collaborator, PROMPTS, decoding)
    assert "not loaded from a GGUF file" in caplog.text
    assert fake_llama.decodes == []
    hf = GenerationEngine(cache=GenerationCache(cache))
    hf.generate(collaborator, PROMPTS, decoding)
    assert hf.stats.cache_hits == len(PROMPTS)  # the HF path's records, under the HF path's keys


def test_choosing_it_without_llama_cpp_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp raises ImportError
    with pytest.raises(UserError, match=r"pip install 'moco-lit\[llama\]'"):
        GenerationEngine(backend="llama_cpp")


REAL_HOME = Path(os.environ.get("MOCO_LIT_HOME", Path.home() / ".cache" / "moco_lit")).expanduser()
SMOLLM2 = REAL_HOME / "models" / "smollm2-135m-instruct"


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")
@pytest.mark.skipif(
    not (SMOLLM2 / "conversion.json").is_file(), reason="needs `models fetch smollm2-135m-instruct`"
)
def test_real_llama_cpp_agrees_with_the_float32_path_on_smollm2(monkeypatch):
    monkeypatch.setenv("MOCO_LIT_HOME", str(REAL_HOME))
    collaborator = load_collaborator("smollm2-135m-instruct")
    questions = ["What is 2 + 3?", "Name the capital of France.", "Is ice cold? Answer yes or no.", "Say hi."]
    decoding = DecodingConfig(max_new_tokens=8)
    hf = GenerationEngine(batch_size=4).generate(collaborator, questions, decoding)
    llama = GenerationEngine(batch_size=4, backend="llama_cpp").generate(collaborator, questions, decoding)
    # the same file, other kernels (4-bit dot products): answers may part at a near-tie, so the
    # check is that they start alike, not that they are equal
    starts = [h.raw_text.split()[:1] == g.raw_text.split()[:1] for h, g in zip(hf, llama)]
    assert sum(starts) >= 3, [(h.raw_text, g.raw_text) for h, g in zip(hf, llama)]
    assert all(g.new_tokens > 0 and g.mean_logprob < 0 for g in llama)


def test_its_runs_get_their_own_run_id():
    from moco_lit.runs import experiment_config, run_id_for

    config = {"model": {"class_path": "m", "init_args": {}}, "data": {"benchmark": "gsm8k"}}
    ids = {
        b: run_id_for(experiment_config({**config, "generation_backend": b}))
        for b in ("hf", "vllm", "llama_cpp")
    }
    assert ids["hf"] == ids["vllm"] == run_id_for(experiment_config(config))  # the same outputs
    assert ids["llama_cpp"] != ids["hf"]  # a resume never mixes the two backends' records
