"""Optional llama.cpp backend for collaborators loaded from GGUF files (``--generation_backend llama_cpp``).

The package-shipped checkpoints are quantised GGUF files that ``models fetch`` dequantises to
float32 for transformers; llama.cpp runs the very same file natively (quantised matrix kernels).
Only the forward passes move: the engine's :func:`~moco_lit.generation.loop.token_loop` keeps choosing
the tokens, with the same processors as the HF path (log-probabilities, top-5 confidence, per-row
seeded sampling), the same prompt ids (the collaborator's tokenizer), EOS ids and stop strings, so a
record has the HF path's format. Its numbers are llama.cpp's, though: greedy outputs agree with the
float32 path only up to the first near-tie, so the engine caches them under their own key.

Several prompts share one ``llama_decode`` per step (one sequence id each), and a row that has
ended leaves the batch. Collaborators it does not serve fall back to the HF path with one warning:
no GGUF file behind them (a hub model, a trained folder), a PEFT adapter, or weights changed in
memory (a merge or training step).
"""

from __future__ import annotations

import ctypes
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moco_lit.collaborators import Collaborator, weights_fingerprint
from moco_lit.errors import UserError
from moco_lit.model_files import resolve_model

log = logging.getLogger(__name__)

_MODELS: dict[str, Any] = {}  # GGUF path -> loaded llama_model, once per process
_QUIET: list[Any] = []
UNIFIED_CACHE = False  # the no-op log callback, kept alive while llama.cpp may call it


def import_llama_cpp() -> Any:
    """The ``llama_cpp`` module, or a UserError saying how to get it."""
    try:
        import llama_cpp
    except ImportError as err:
        raise UserError(
            "generation backend 'llama_cpp' needs llama-cpp-python, which is not installed: "
            "pip install 'moco-lit[llama]' (it compiles llama.cpp: a C++ compiler and a few minutes), "
            "or use --generation_backend hf"
        ) from err
    return llama_cpp


def gguf_file(collaborator: Collaborator) -> Path | None:
    """The GGUF file a collaborator was loaded from: its spec, or the file ``models fetch`` kept
    beside the converted folder (``gguf/`` and ``conversion.json``); None when there is none."""
    spec = collaborator.spec.path
    if spec.endswith(".gguf"):
        path = Path(spec).expanduser()
        return path if path.is_file() else None
    folder = Path(resolve_model(spec))
    record = folder / "conversion.json"
    if not record.is_file():
        return None
    name = json.loads(record.read_text()).get("file")
    path = folder / "gguf" / name if name else None
    return path if path is not None and path.is_file() else None


class LlamaCppBackend:
    """Forward passes of GGUF-backed collaborators with llama.cpp, for the engine's token loop."""

    name = "llama_cpp"

    def __init__(self) -> None:
        self.llama_cpp = import_llama_cpp()
        self._served: dict[str, Path | None] = {}

    def serves(self, collaborator: Collaborator) -> bool:
        """Whether llama.cpp runs it (else the engine's HF path does, after one warning)."""
        if collaborator.model is None:
            return False
        if collaborator.name not in self._served:
            self._served[collaborator.name] = self._gguf_for(collaborator)
        path = self._served[collaborator.name]
        if path is not None and collaborator.fingerprint != self._fingerprint(collaborator):
            log.warning("%s: weights changed in memory, generating with HF from now on", collaborator.name)
            self._served[collaborator.name] = path = None
        return path is not None

    def steps(self, collaborator: Collaborator, max_new_tokens: int) -> LlamaSteps:
        path = self._served[collaborator.name]
        assert path is not None, "steps() for a collaborator the backend does not serve"
        return LlamaSteps(self.llama_cpp, self._model(path), max_new_tokens, torch.get_num_threads())

    def _gguf_for(self, collaborator: Collaborator) -> Path | None:
        reason = None
        if collaborator.spec.adapter:
            reason = "it has a PEFT adapter"
        path = gguf_file(collaborator) if reason is None else None
        if reason is None and path is None:
            reason = "it was not loaded from a GGUF file"
        if reason is not None:
            log.warning("%s: %s, generating with HF (llama_cpp runs GGUF files)", collaborator.name, reason)
        return path

    @staticmethod
    def _fingerprint(collaborator: Collaborator) -> str:
        return weights_fingerprint(resolve_model(collaborator.spec.path), None)

    def _model(self, path: Path) -> Any:
        key = str(path.resolve())
        if key not in _MODELS:
            llama_cpp = self.llama_cpp
            if not _QUIET:  # llama.cpp logs every load and context to stderr otherwise
                _QUIET.append(llama_cpp.llama_log_callback(lambda level, text, data: None))
                llama_cpp.llama_log_set(_QUIET[0], ctypes.c_void_p())
                llama_cpp.llama_backend_init()
            model = llama_cpp.llama_model_load_from_file(key.encode(), llama_cpp.llama_model_default_params())
            if not model:
                raise UserError(f"llama.cpp could not load {key!r}; is it a GGUF file of a supported model?")
            _MODELS[key] = model
        return _MODELS[key]


class LlamaSteps:
    """One batch of prompts in one llama.cpp context: one sequence id per row, all rows' new
    tokens in one ``llama_decode`` per step; ended rows leave the batch and free their cache."""

    def __init__(self, llama_cpp: Any, model: Any, max_new_tokens: int, threads: int) -> None:
        self.llama_cpp = llama_cpp
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.threads = max(1, threads)
        self.vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        self.context: Any = None
        self.rows: list[int] = []  # sequence id of each current row
        self.lengths: list[int] = []  # tokens in each current row's cache

    def start(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        prompts = [
            ids[mask.bool()].tolist()
            for ids, mask in zip(inputs["input_ids"].cpu(), inputs["attention_mask"].cpu())
        ]
        self._open(prompts)
        self.rows = list(range(len(prompts)))
        self.lengths = [len(p) for p in prompts]
        pieces = [(row, position, token) for row, p in enumerate(prompts) for position, token in enumerate(p)]
        logits: dict[int, torch.Tensor] = {}
        for first in range(0, len(pieces), self.batch_tokens):
            chunk = pieces[first : first + self.batch_tokens]
            wanted = [len(prompts[row]) - 1 == position for row, position, _ in chunk]
            self._decode(chunk, wanted)
            # the outputs come in the order of the tokens that asked for them
            ended = [row for (row, _, _), last in zip(chunk, wanted) if last]
            logits.update(zip(ended, self._outputs(len(ended))))
        return torch.stack([logits[row] for row in range(len(prompts))])

    def advance(self, keep: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        kept = keep.tolist()
        memory = self.llama_cpp.llama_get_memory(self.context)
        for place, row in enumerate(self.rows):
            if place not in kept:  # ended: its cache cells go back to the pool
                self.llama_cpp.llama_memory_seq_rm(memory, row, -1, -1)
        self.rows = [self.rows[place] for place in kept]
        self.lengths = [self.lengths[place] for place in kept]
        chunk = [(row, length, int(token)) for row, length, token in zip(self.rows, self.lengths, tokens)]
        self._decode(chunk, [True] * len(chunk))
        self.lengths = [length + 1 for length in self.lengths]
        return self._outputs(len(chunk))

    def _open(self, prompts: list[list[int]]) -> None:
        llama_cpp = self.llama_cpp
        params = llama_cpp.llama_context_default_params()
        # one stream of cells per sequence (a unified pool would make every row attend over the
        # cells of all rows, masked: attention cost times the batch size), each long enough for
        # the longest prompt and its answer
        per_row = -(-(max(len(p) for p in prompts) + self.max_new_tokens + 1) // 256) * 256
        params.n_ctx = per_row * len(prompts)
        self.batch_tokens = min(sum(len(p) for p in prompts), 2048)
        params.n_batch = params.n_ubatch = max(self.batch_tokens, len(prompts))
        params.n_seq_max = len(prompts)
        params.kv_unified = UNIFIED_CACHE
        params.n_threads = params.n_threads_batch = self.threads
        self.context = llama_cpp.llama_init_from_model(self.model, params)
        if not self.context:
            raise RuntimeError(
                f"llama.cpp could not create a context of {params.n_ctx} cells (out of memory)"
            )
        self.batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)

    def _decode(self, chunk: list[tuple[int, int, int]], wanted: list[bool]) -> None:
        batch = self.batch
        batch.n_tokens = len(chunk)
        for index, ((row, position, token), logits) in enumerate(zip(chunk, wanted)):
            batch.token[index] = token
            batch.pos[index] = position
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = row
            batch.logits[index] = logits
        status = self.llama_cpp.llama_decode(self.context, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed ({status}): not enough memory for this batch")

    def _outputs(self, count: int) -> torch.Tensor:
        """The logits of the last decode's ``count`` outputs, count × vocabulary (a copy)."""
        pointer = self.llama_cpp.llama_get_logits(self.context)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(count, self.vocab)).copy())

    def close(self) -> None:
        if self.context is not None:
            self.llama_cpp.llama_batch_free(self.batch)
            self.llama_cpp.llama_free(self.context)
            self.context = None

    def __del__(self) -> None:
        self.close()
