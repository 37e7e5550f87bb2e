"""What a generation request asks for (:class:`DecodingConfig`) and gives back (:class:`Generation`,
counted in :class:`GenerationStats`), and the per-example seed. The text after the last
``</think>`` is the answer."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

THINK_END = "</think>"


@dataclass(frozen=True)
class DecodingConfig:
    """How to ask a model. ``temperature`` 0 means greedy (this struct's default; methods default
    to MoCo's sampling, see ``CollaborationModule``). ``enable_thinking`` is passed to the chat
    template (Qwen3's thinking switch; templates without it ignore it); None leaves the template's
    own default."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    enable_thinking: bool | None = False
    # ask for ``Generation.top5_confidence`` (HF backend): cached outputs without it are generated again
    top5_confidence: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def cache_fields(self) -> dict:
        fields = asdict(self)
        # the switch acts through the rendered prompt, which is part of every key already
        del fields["enable_thinking"]
        # the measure is recorded beside the output, which it does not change
        del fields["top5_confidence"]
        if self.greedy:  # greedy output does not depend on top_p
            fields["top_p"] = 1.0
        return fields


@dataclass
class Generation:
    """One model output. ``text`` is the answer (after the last ``</think>``), ``raw_text`` all of it."""

    text: str
    raw_text: str
    prompt_tokens: int
    new_tokens: int
    mean_logprob: float = 0.0
    cached: bool = False
    # MoCo's confidence: the mean over the output's steps (its end-of-sequence step included) of
    # the largest probability in the renormalised top 5 of the tempered, top-p filtered logits.
    # None when not measured (scripted collaborators' outputs carry their confidence here too)
    top5_confidence: float | None = None

    @property
    def confidence(self) -> float:
        """Mean probability of the generated tokens under the model (geometric mean)."""
        return math.exp(self.mean_logprob)

    @classmethod
    def from_record(cls, record: dict, cached: bool, **extra) -> Generation:
        """Rebuild an output from its cache record (``extra``: fields of subclasses)."""
        return cls(
            text=strip_thinking(record["raw_text"]),
            raw_text=record["raw_text"],
            prompt_tokens=record["prompt_tokens"],
            new_tokens=record["new_tokens"],
            mean_logprob=record.get("mean_logprob", 0.0),
            cached=cached,
            top5_confidence=record.get("top5_confidence"),
            **extra,
        )

    def to_record(self) -> dict:
        return {
            "raw_text": self.raw_text,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "mean_logprob": self.mean_logprob,
            **({} if self.top5_confidence is None else {"top5_confidence": self.top5_confidence}),
        }


@dataclass
class GenerationStats:
    calls: int = 0
    prompt_tokens: int = 0
    new_tokens: int = 0
    cache_hits: int = 0
    generated: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.new_tokens


def strip_thinking(text: str) -> str:
    return text.rsplit(THINK_END, 1)[-1].strip()


def example_seed(base_seed: int, *parts: object) -> int:
    """A stable 63-bit seed from a base seed and anything that identifies a request (id, round, model)."""
    digest = hashlib.sha256(repr((base_seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
