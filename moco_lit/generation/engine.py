"""Batched text generation over resident collaborators.

Requests are rendered with the collaborator's chat template, looked up in the generation cache,
and only the misses are generated: sorted by length (so padding is small), left-padded, with the
model's KV cache. Sampling is reproducible per example: each row draws its randomness from its own
seeded generator (Gumbel-max over the tempered, top-p filtered distribution), so a sample does not
depend on which other prompts shared its batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from moco_lit.cache import GenerationCache, cache_key
from moco_lit.collaborators import Collaborator, Prompt
from moco_lit.errors import UserError
from moco_lit.generation.backend import Backend, Request
from moco_lit.generation.config import DecodingConfig, Generation, GenerationStats, example_seed
from moco_lit.generation.hf import _reduced_precision, check_prompt_lengths, generate_batch
from moco_lit.generation.llama_cpp import LlamaCppBackend
from moco_lit.generation.vllm import VllmBackend
from moco_lit.processes import THREADS_ENV, ThreadGovernor

log = logging.getLogger("moco_lit.generation")  # one logger for the package's warnings


BACKENDS = ("hf", "vllm", LlamaCppBackend.name)

AUTO_BATCH_SIZE = 64
"""Where ``generation_batch_size: auto`` starts (halved on every out-of-memory batch)."""


def _out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "not enough memory" in text


@dataclass
class GenerationEngine:
    """Generates for many prompts at once, consulting ``cache`` (None = no cache) first.

    ``backend`` "vllm" generates plain model outputs with vLLM (:mod:`moco_lit.generation.vllm`);
    "llama_cpp" runs collaborators loaded from GGUF files with llama.cpp
    (:mod:`moco_lit.generation.llama_cpp`; its outputs are cached apart from the HF path's).
    ``finished_rows_leave``: the HF path decodes with :func:`token_loop`, where a row that has
    ended stops costing compute, instead of ``model.generate``.
    ``threads`` "auto" sets torch's thread count from the machine's load before every batch
    (:class:`~moco_lit.processes.ThreadGovernor`; ``MOCO_LIT_THREADS`` or ``OMP_NUM_THREADS``
    fix it), a number fixes it, None leaves it to whoever set it.
    """

    cache: GenerationCache | None = None
    # prompts per forward batch; "auto": start at AUTO_BATCH_SIZE and halve whenever a batch runs
    # out of memory (on a GPU or the CPU), keeping the size that fits for the rest of the run
    batch_size: int | str = 16
    progress: bool = True
    stats: GenerationStats = field(default_factory=GenerationStats)
    backend: str = "hf"
    threads: int | str | None = None
    finished_rows_leave: bool = False
    _vllm: Backend | None = field(default=None, init=False, repr=False)
    _llama: LlamaCppBackend | None = field(default=None, init=False, repr=False)
    _governor: ThreadGovernor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"generation backend {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        self.auto_batch = self.batch_size == "auto"
        if self.auto_batch:
            self.batch_size = AUTO_BATCH_SIZE
        elif not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise UserError(f"--model.generation_batch_size must be >= 1 or auto, got {self.batch_size!r}")
        if self.backend == "vllm":
            self._vllm = VllmBackend(progress=self.progress)
        if self.backend == LlamaCppBackend.name:
            self._llama = LlamaCppBackend()
        if self.threads == "auto":
            self._governor = ThreadGovernor()
        elif self.threads is not None:
            if not isinstance(self.threads, int) or self.threads < 1:
                raise UserError(f"generation threads must be >= 1, auto or None, got {self.threads!r}")
            self._governor = ThreadGovernor({THREADS_ENV: str(self.threads)})

    def generate(
        self,
        collaborator: Collaborator,
        prompts: Sequence[Prompt],
        decoding: DecodingConfig = DecodingConfig(),
        seeds: Sequence[int] | None = None,
        sample: int = 0,
    ) -> list[Generation]:
        """One output per prompt. ``seeds`` (one per prompt) make sampling reproducible per example."""
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
        requests = [
            Request(i, collaborator.render(prompt, decoding.enable_thinking), seed, sample)
            for i, (prompt, seed) in enumerate(zip(prompts, seeds))
        ]
        fields = decoding.cache_fields()
        if collaborator.stop_strings:  # outputs cut at a stop string are other outputs
            fields = {**fields, "stop": list(collaborator.stop_strings)}
        if self._llama is not None and self._llama.serves(collaborator):
            # other kernels, other outputs: never mixed with the HF path's in the cache
            fields = {**fields, "backend": LlamaCppBackend.name}
        elif (dtype := _reduced_precision(collaborator)) is not None:
            # the same weights in bfloat16/float16 answer otherwise (float32 keys stay as they were)
            fields = {**fields, "dtype": dtype}
        for request in requests:
            seed = 0 if decoding.greedy else request.seed
            request.key = cache_key(collaborator.fingerprint, request.rendered, fields, seed, request.sample)
        found = self.cache.get_many(r.key for r in requests) if self.cache is not None else {}
        if decoding.top5_confidence:  # outputs cached before the measure was recorded lack it
            found = {key: record for key, record in found.items() if "top5_confidence" in record}
        missing = [r for r in requests if r.key not in found]
        fresh = self._run(collaborator, missing, decoding) if missing else {}
        if self.cache is not None and fresh:
            self.cache.put_many(fresh)
        outputs = []
        for request in requests:
            record = found.get(request.key) or fresh[request.key]
            outputs.append(Generation.from_record(record, cached=request.key in found))
        self._count(outputs)
        return outputs

    def sample(
        self,
        collaborator: Collaborator,
        prompts: Sequence[Prompt],
        decoding: DecodingConfig,
        num_samples: int,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Generation]]:
        """``num_samples`` outputs per prompt (all in one pass over the model); result[i][k]."""
        flat_prompts = [p for p in prompts for _ in range(num_samples)]
        flat_seeds = [example_seed(s, k) for s in (seeds or [0] * len(prompts)) for k in range(num_samples)]
        flat = self.generate(collaborator, flat_prompts, decoding, flat_seeds)
        return [flat[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]

    def _count(self, outputs: list[Generation]) -> None:
        self.stats.calls += len(outputs)
        self.stats.prompt_tokens += sum(o.prompt_tokens for o in outputs)
        self.stats.new_tokens += sum(o.new_tokens for o in outputs)
        self.stats.cache_hits += sum(o.cached for o in outputs)
        self.stats.generated += sum(not o.cached for o in outputs)

    def _run(self, collaborator: Collaborator, requests: list[Request], decoding: DecodingConfig) -> dict:
        if collaborator.model is None:
            return {r.key: _scripted(collaborator, r, decoding) for r in requests}
        # vLLM does not expose the filtered distribution the top-5 confidence is measured on
        if self._vllm is not None and not decoding.top5_confidence and self._vllm.serves(collaborator):
            return self._vllm.run(collaborator, requests, decoding)
        # tokenized once, in one call: the ids order the batches by length and then fill them
        encoded = collaborator.tokenizer([r.rendered for r in requests], add_special_tokens=False)
        for request, ids in zip(requests, encoded["input_ids"]):
            request.ids = ids
        check_prompt_lengths(collaborator, [r.ids for r in requests], [r.rendered for r in requests])
        ordered = sorted(requests, key=lambda r: -r.length)
        results: dict[str, dict] = {}
        bar = tqdm(
            total=len(ordered),
            desc=f"generate {collaborator.name}",
            leave=False,
            unit="prompt",
            disable=not self.progress or len(ordered) < 4 * self.batch_size,
        )
        done = 0
        while done < len(ordered):
            batch = ordered[done : done + self.batch_size]
            if self._governor is not None and collaborator.device.type == "cpu":
                self._governor.apply()
            try:
                results.update(self._generate_batch(collaborator, batch, decoding))
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not (self.auto_batch and self.batch_size > 1 and _out_of_memory(error)):
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                log.warning(
                    "generation_batch_size auto: out of memory, %d prompts per batch now", self.batch_size
                )
                continue
            done += len(batch)
            bar.update(len(batch))
        bar.close()
        return results

    def _generate_batch(
        self, collaborator: Collaborator, batch: list[Request], decoding: DecodingConfig
    ) -> dict[str, dict]:
        return generate_batch(collaborator, batch, decoding, self._llama, self.finished_rows_leave)


def _scripted(collaborator: Collaborator, request: Request, decoding: DecodingConfig) -> dict:
    """Ask a scripted collaborator: ``respond(rendered)`` or, when sampling, ``respond(rendered, seed)``.

    It may return the text, or ``(text, confidence)`` to stand in for either confidence measure.
    """
    respond = collaborator.respond
    takes_seed = respond.__code__.co_argcount >= 2 if hasattr(respond, "__code__") else False
    seed = 0 if decoding.greedy else request.seed ^ request.sample
    reply = respond(request.rendered, seed) if takes_seed else respond(request.rendered)
    text, confidence = reply if isinstance(reply, tuple) else (reply, 1.0)
    return {
        "raw_text": text,
        "prompt_tokens": len(request.rendered.split()),
        "new_tokens": len(text.split()),
        "mean_logprob": math.log(max(confidence, 1e-12)),
        "top5_confidence": confidence,
    }
