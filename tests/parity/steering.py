"""Logit hooks that steer the tiny models of a token-level parity test the same way on both sides.

A parity test subclasses :class:`Steering` with its own ``attach(model, tokenizer)`` and puts it
on moco_lit's pooled copies with :func:`steer_pool` (a fixture body) and on MoCo's copies from
its patched loader. :func:`banned_tokens` is the ban both tests share.
"""

from __future__ import annotations

from collections.abc import Iterator


def banned_tokens(tokenizer) -> list[int]:
    """Tokens that never win: special tokens other than the end of sequence, and tokens that
    decode to part of a character (MoCo writes U+FFFD for each such piece, moco_lit the whole
    character: a separate, known difference)."""
    special = set(tokenizer.all_special_ids) - {tokenizer.eos_token_id}
    return [i for i in range(len(tokenizer)) if i in special or "\ufffd" in tokenizer.decode([i])]


class Steering:
    """The hooks put on every copy of the test's models; ``attach`` adds them for one model."""

    def __init__(self) -> None:
        self.handles: list = []

    def attach(self, model, tokenizer) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def steer_pool(steer: Steering, paths: list[str]) -> Iterator[Steering]:
    """Attach ``steer`` to the pooled copy of each model moco_lit's run will use; yield it, then
    take the hooks off (the body of a yield fixture)."""
    from moco_lit.collaborators import load_collaborator

    for path in paths:
        collaborator = load_collaborator(path)
        steer.attach(collaborator.model, collaborator.tokenizer)
    yield steer
    steer.remove()
