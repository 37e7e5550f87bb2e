"""Whether collaborators share one token id space, as rules that combine logits need."""

from __future__ import annotations

from collections.abc import Sequence

from moco_lit.collaborators import Collaborator
from moco_lit.errors import UserError


def same_vocabulary(a: Collaborator, b: Collaborator) -> bool:
    """True when both tokenizers map every token string to the same id (one id space)."""
    if a is b or a.tokenizer is b.tokenizer:
        return True
    return a.tokenizer.get_vocab() == b.tokenizer.get_vocab()


def check_same_vocabulary(collaborators: Sequence[Collaborator], method: str) -> None:
    """Raise a ``UserError`` naming the first two collaborators whose tokenizers differ."""
    for other in collaborators[1:]:
        if other.model is None or collaborators[0].model is None:
            raise UserError(f"{method} combines logits and needs language models, not scripted collaborators")
        if not same_vocabulary(collaborators[0], other):
            first, second = collaborators[0], other
            raise UserError(
                f"{method} combines next-token logits in one id space, but {first.name!r} "
                f"(tokenizer {type(first.tokenizer).__name__}, {len(first.tokenizer)} tokens) and "
                f"{second.name!r} (tokenizer {type(second.tokenizer).__name__}, {len(second.tokenizer)} "
                "tokens) have different vocabularies; use collaborators that share a tokenizer "
                "(one model family), or a text-level method such as nudging"
            )
