"""What the generation engine hands a backend and gets back, and the token rules every backend shares.

``GenerationEngine`` (``engine.py``) renders prompts, keys the cache and counts tokens; a
``Backend`` only turns the cache misses of one collaborator into cache records. The HF path is
``hf.py``; ``vllm.py`` and ``llama_cpp.py`` are the others. Both cut outputs at the first end-of-sequence
id and at the collaborator's stop strings with the functions below, so their records agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from moco_lit.collaborators import Collaborator
    from moco_lit.generation.config import DecodingConfig


@dataclass
class Request:
    """One prompt to generate for: its place in the call, rendering, seed, sample index and cache key;
    ``ids`` are filled in by whoever tokenizes it."""

    index: int
    rendered: str
    seed: int
    sample: int
    key: str = ""
    ids: list[int] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.ids)


class Backend(Protocol):
    """Generates cache records (``raw_text``, ``prompt_tokens``, ``new_tokens``, ``mean_logprob``)."""

    def serves(self, collaborator: Collaborator) -> bool:
        """Whether this backend can generate for ``collaborator`` (else the engine's HF path does)."""
        ...

    def run(self, collaborator: Collaborator, requests: list[Request], decoding: DecodingConfig) -> dict:
        """One record per request, keyed by ``request.key``."""
        ...


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """``text`` up to the first stop string (the model went on to write the next turn)."""
    ends = [text.find(stop) for stop in stop_strings if stop in text]
    return text[: min(ends)] if ends else text


def eos_ids_of(model, tokenizer) -> list[int]:
    """Every id that ends a generation: the model's configured ones and the tokenizer's."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in ids if i is not None]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def until_eos(ids: list[int], eos_ids: list[int]) -> list[int]:
    """``ids`` before the first end-of-sequence id."""
    for position, token in enumerate(ids):
        if token in eos_ids:
            return ids[:position]
    return ids
