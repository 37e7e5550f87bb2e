"""The generic rules of joint decoding: who decides the next token.

A :class:`FuseRule` combines the models' next-token logits (one id space) into one set of logits; a
:class:`SwitchRule` picks, per row and step, which model writes the next token; a :class:`PatchRule`
drives a :class:`~moco_lit.decoding.session.DecodingSession` patch by patch. Rules that belong to
one method live beside it (Co-LLM's deferral in ``methods/api/collm_rules.py``, nudging's switch in
``methods/api/nudging_rules.py``); the decoder receives them as objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from moco_lit.decoding.session import DecodingSession


class FuseRule:
    """Combines the models' next-token logits (``[batch, vocab]`` each, one id space) into one.

    Simple rules write ``__call__(logits)``; rules that also read the models' last hidden states,
    the step number or keep per-row state (Co-LLM's :class:`DeferralHead`) override :meth:`fuse`,
    :meth:`reset` and :meth:`row_details`.
    """

    key: str = ""

    def __call__(self, logits: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def fuse(
        self, logits: list[torch.Tensor], hidden: list[torch.Tensor], step: int, active: list[bool]
    ) -> torch.Tensor:
        """The combined logits at ``step`` (0 = first new token); ``hidden[m]`` is ``[batch, width]``."""
        return self(logits)

    def reset(self, batch_size: int) -> None:
        """Called when a batch starts."""

    def row_details(self, row: int) -> dict[str, Any]:
        """Anything worth keeping in the per-example record."""
        return {}


class _Fuse(FuseRule):
    def __init__(self, key: str, combine: Callable[[list[torch.Tensor]], torch.Tensor]) -> None:
        self.key = key
        self.combine = combine

    def __call__(self, logits: list[torch.Tensor]) -> torch.Tensor:
        return self.combine(logits)


def identity(model: int = 0) -> FuseRule:
    """Decode from one model alone (the engine's reference behaviour)."""
    return _Fuse(f"identity({model})", lambda logits: logits[model])


def average() -> FuseRule:
    """Mean of the logits of all models (MoCo's logit fusion)."""
    return _Fuse("average", lambda logits: torch.stack(logits).mean(dim=0))


def weighted_sum(weights: Sequence[float]) -> FuseRule:
    """``sum_m weights[m] * logits[m]``."""
    weights = [float(w) for w in weights]

    def combine(logits: list[torch.Tensor]) -> torch.Tensor:
        return sum(w * x for w, x in zip(weights, logits))

    return _Fuse(f"weighted_sum({weights})", combine)


def contrast(top: Sequence[int], bottom: Sequence[int], strength: float) -> FuseRule:
    """Contrastive logits: ``logits[top[0]] + strength * (sum(top) - sum(bottom))``."""
    top, bottom = list(top), list(bottom)

    def combine(logits: list[torch.Tensor]) -> torch.Tensor:
        offset = sum(logits[m] for m in top) - sum(logits[m] for m in bottom)
        return logits[top[0]] + strength * offset

    return _Fuse(f"contrast(top={top},bottom={bottom},strength={strength})", combine)


class PatchRule:
    """Drives a :class:`DecodingSession` patch by patch (mentor_collab, switch_generation): ``run``
    writes, chooses and commits until the session is finished. May keep per-row state."""

    key: str = ""

    def reset(self, batch_size: int) -> None:
        """Called when a batch starts."""

    def run(self, session: DecodingSession) -> None:
        raise NotImplementedError

    def row_details(self, row: int) -> dict[str, Any]:
        """Anything worth keeping in the per-example record."""
        return {}


@dataclass
class StepView:
    """What a ``SwitchRule`` sees at one step. Lists are per model; tensors are ``[batch, ...]``.

    ``pieces[m][row]`` is the text model m's proposed token would add to the row's joint text.
    """

    logits: list[torch.Tensor]
    proposals: list[torch.Tensor]
    pieces: list[list[str]]
    active: list[bool]
    step: int


class SwitchRule:
    """Chooses, for each row, which model writes the next token. May keep per-row state.

    ``reads_text``: every model, the author included, reads the joint text re-tokenised after each
    step (as MoCo's nudging does) instead of the author keeping its own token ids.
    """

    key: str = ""
    reads_text: bool = False

    def reset(self, batch_size: int) -> None:
        """Called when a batch starts."""

    def __call__(self, view: StepView) -> list[int]:
        raise NotImplementedError

    def row_details(self, row: int) -> dict[str, Any]:
        """Anything worth keeping in the per-example record."""
        return {}


def module_fingerprint(module: torch.nn.Module | None) -> str:
    """A short hash of a module's weights, for cache keys of rules that run a trained head."""
    if module is None:
        return "none"
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
