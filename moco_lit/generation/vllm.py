"""Optional vLLM backend for plain generation (``--generation_backend vllm``).

The engine keeps rendering, caching and counting; only the generation of cache misses for a
model-backed collaborator moves here. Prompts are the collaborator's own rendering tokenized exactly
as the HF path does (no added special tokens), decoding stops at the same EOS ids, and the text is
decoded with the collaborator's tokenizer, so records have the HF path's format and cache keys.
Each row samples with its own seed (``SamplingParams.seed``) and so does not depend on its batch.

One ``vllm.LLM`` per (model folder, dtype, device) per process. Collaborators it cannot serve:
weights changed in place (a merge or training step: vLLM's copy would be stale) fall back to the HF
path; a PEFT adapter is refused (merge it into a folder first), since a LoRARequest route could not
be checked against the HF output here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from moco_lit.collaborators import Collaborator, weights_fingerprint
from moco_lit.errors import UserError
from moco_lit.generation.backend import Request, cut_at_stop, eos_ids_of, until_eos
from moco_lit.model_files import resolve_model

if TYPE_CHECKING:
    from moco_lit.generation.config import DecodingConfig

log = logging.getLogger(__name__)

# share of the GPU memory free at load time that one vLLM engine may take (weights + KV cache);
# the collaborators' HF copies stay resident, and several engines may share the device
MEMORY_SHARE_ENV = "MOCO_LIT_VLLM_MEMORY_SHARE"
DEFAULT_MEMORY_SHARE = 0.4

_LLMS: dict[tuple[str, str, str], Any] = {}


def import_vllm() -> Any:
    """The ``vllm`` module, or a UserError saying how to get it."""
    try:
        import vllm
    except ImportError as err:
        raise UserError(
            "generation backend 'vllm' needs the vllm package, which is not installed: "
            "install vllm on a CUDA machine, or use --generation_backend hf"
        ) from err
    return vllm


def release_engines() -> None:
    """Forget every loaded vLLM engine (frees its GPU memory once nothing else holds it)."""
    _LLMS.clear()


class VllmBackend:
    """Generates the cache misses of model-backed collaborators with vLLM."""

    def __init__(self, progress: bool = True) -> None:
        self.vllm = import_vllm()
        self.progress = progress
        self._stale_warned: set[str] = set()

    def serves(self, collaborator: Collaborator) -> bool:
        """Whether vLLM can generate for it (else the engine uses the HF path)."""
        if collaborator.model is None:
            return False
        if collaborator.spec.adapter:
            raise UserError(
                f"collaborator {collaborator.name!r} has a PEFT adapter, which the vllm backend does "
                "not serve: merge it into a model folder (peft's merge_and_unload + save_pretrained) "
                "or use --generation_backend hf"
            )
        if collaborator.fingerprint != weights_fingerprint(self._path(collaborator), None):
            # a merge or training step changed the weights in memory; vLLM only has the files
            if collaborator.name not in self._stale_warned:
                self._stale_warned.add(collaborator.name)
                log.warning("%s: weights changed in memory, generating with HF", collaborator.name)
            return False
        return True

    def run(self, collaborator: Collaborator, requests: list[Request], decoding: DecodingConfig) -> dict:
        """Cache records (raw_text, prompt_tokens, new_tokens, mean_logprob) keyed by request key."""
        tokenizer = collaborator.tokenizer
        eos_ids = eos_ids_of(collaborator.model, tokenizer)
        encoded = tokenizer([r.rendered for r in requests], add_special_tokens=False)["input_ids"]
        prompts = []
        for request, ids in zip(requests, encoded):
            request.ids = ids
            prompts.append({"prompt_token_ids": ids})
        params = [self._sampling_params(request, decoding, eos_ids) for request in requests]
        outputs = self._llm(collaborator).generate(prompts, params, use_tqdm=self.progress)
        return {
            request.key: self._record(collaborator, request, output, eos_ids)
            for request, output in zip(requests, outputs)
        }

    def _sampling_params(self, request: Request, decoding: DecodingConfig, eos_ids: list[int]) -> Any:
        # the HF path draws a row's sample from seed ^ sample; greedy rows need no seed
        return self.vllm.SamplingParams(
            max_tokens=decoding.max_new_tokens,
            temperature=0.0 if decoding.greedy else decoding.temperature,
            top_p=1.0 if decoding.greedy else decoding.top_p,
            seed=None if decoding.greedy else request.seed ^ request.sample,
            stop_token_ids=list(eos_ids),
            logprobs=0,  # the chosen token's log-probability only
        )

    def _record(self, collaborator: Collaborator, request: Request, output: Any, eos_ids: list[int]) -> dict:
        completion = output.outputs[0]
        generated = list(completion.token_ids)
        ids = until_eos(generated, eos_ids)
        return {
            "raw_text": cut_at_stop(
                collaborator.tokenizer.decode(ids, skip_special_tokens=True), collaborator.stop_strings
            ),
            "prompt_tokens": len(output.prompt_token_ids or []) or request.length,
            "new_tokens": len(ids),
            "mean_logprob": _chosen_logprob_sum(completion, generated, len(ids)) / max(len(ids), 1),
        }

    def _llm(self, collaborator: Collaborator) -> Any:
        path = self._path(collaborator)
        dtype = str(collaborator.model.dtype).removeprefix("torch.")
        key = (path, dtype, str(collaborator.device))
        if key not in _LLMS:
            options: dict[str, Any] = {"model": path, "tokenizer": path, "dtype": dtype, "seed": 0}
            share = _memory_utilization()
            if share is not None:
                options["gpu_memory_utilization"] = share
            log.info("loading %s in vLLM (%s)", collaborator.name, dtype)
            _LLMS[key] = self.vllm.LLM(**options)
        return _LLMS[key]

    @staticmethod
    def _path(collaborator: Collaborator) -> str:
        return resolve_model(collaborator.spec.path)


def _chosen_logprob_sum(completion: Any, generated: Sequence[int], count: int) -> float:
    """Sum of the first ``count`` chosen tokens' log-probabilities (the stop token left out)."""
    steps = getattr(completion, "logprobs", None)
    if steps:
        return float(sum(step[token].logprob for step, token in zip(steps[:count], generated[:count])))
    # without per-token entries only the total is known; it includes a stop token if there was one
    return float(completion.cumulative_logprob or 0.0)


def _memory_utilization() -> float | None:
    """vLLM's ``gpu_memory_utilization`` (a fraction of the whole device) for a share of what is free."""
    if not torch.cuda.is_available():
        return None
    share = float(os.environ.get(MEMORY_SHARE_ENV, DEFAULT_MEMORY_SHARE))
    free, total = torch.cuda.mem_get_info()
    return round(share * free / total, 4)
