"""One model's state over a batch: its own KV cache, attention mask and position ids
(:class:`ModelStream`), and the per-row token choice (:class:`TokenPicker`)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from moco_lit.collaborators import Collaborator
from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig, SeededSampler, check_prompt_lengths, eos_ids_of


class TokenPicker:
    """Greedy argmax, or per-row seeded temperature/top-p sampling (Gumbel-max)."""

    def __init__(self, decoding: DecodingConfig, seeds: Sequence[int]) -> None:
        self.sampler = None if decoding.greedy else SeededSampler(seeds, decoding)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.sampler is not None:
            logits = self.sampler(None, logits)  # type: ignore[arg-type]
        return logits.argmax(dim=-1)


REPLACEMENT = "\ufffd"  # what a tokenizer decodes an incomplete UTF-8 byte sequence to


class ModelStream:
    """One collaborator's KV cache, attention mask and token history over a batch of rows.

    Column ``j`` of the cache holds the same column of ``mask``; a row's token at index ``i`` of
    ``ids[row]`` sits at column ``columns[row][i]`` with position id ``i``. Rolling back a token
    masks its column out (the space is not reclaimed), so rows roll back independently.
    """

    def __init__(self, collaborator: Collaborator, rendered: Sequence[str]) -> None:
        if collaborator.model is None:
            raise UserError(
                f"collaborator {collaborator.name!r} is scripted; token-level decoding needs language models"
            )
        self.collaborator = collaborator
        self.model = collaborator.model
        self.tokenizer = collaborator.tokenizer
        self.device = collaborator.device
        self.vocab_size = len(self.tokenizer)
        self.eos_ids = set(eos_ids_of(self.model, self.tokenizer))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.ids: list[list[int]] = [
            self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in rendered
        ]
        check_prompt_lengths(collaborator, self.ids, rendered)
        self.prompt_lengths = [len(ids) for ids in self.ids]
        self.columns: list[list[int]] = [[] for _ in rendered]
        self.fed = [0] * len(rendered)  # generated tokens run through the model, per row
        self.forward_tokens = 0  # every column run through the model, padding included
        self.mask = torch.zeros(len(rendered), 0, dtype=torch.long, device=self.device)
        self.cache: Any = None
        self.logits = torch.empty(0)
        self.hidden = torch.empty(0)
        self._keep_logits_arg = _accepts(self.model, "logits_to_keep")
        # transformers 5 renamed past_key_values to cache
        self._cache_arg = "cache" if _accepts(self.model, "cache") else "past_key_values"
        pending, self.ids = self.ids, [[] for _ in rendered]
        self._feed(pending)

    @property
    def batch_size(self) -> int:
        return len(self.ids)

    def generated(self, row: int) -> list[int]:
        return self.ids[row][self.prompt_lengths[row] :]

    def token_text(self, row: int, token: int) -> str:
        """The text ``token`` adds after the row's generated tokens (decoded with some context).

        A byte token that leaves a character incomplete adds nothing yet (its bytes decode to
        U+FFFD); the token that completes the character adds all of it, so the joint text handed
        to other tokenizers never holds half a character.
        """
        if token in self.eos_ids:
            return ""
        context = self.generated(row)[-6:]
        before = self.tokenizer.decode(context, skip_special_tokens=True)
        after = self.tokenizer.decode([*context, token], skip_special_tokens=True)
        if after.startswith(before):
            return after[len(before) :].rstrip(REPLACEMENT)
        # the token completed a character: `before` ended in U+FFFD where `after` has the character
        common = next(
            (i for i, (x, y) in enumerate(zip(before, after)) if x != y), min(len(before), len(after))
        )
        return after[common:].rstrip(REPLACEMENT)

    def append(self, tokens: Sequence[Sequence[int]]) -> None:
        """Feed each row its new tokens (an empty list leaves a row as it is) in one forward pass."""
        self._feed(tokens)

    def sync(self, targets: Sequence[Sequence[int] | None]) -> None:
        """Make each row's generated ids equal ``targets[row]`` (None: leave the row alone).

        Only the tail after the longest common prefix is rolled back and fed again; when nothing new
        is left to feed, the last kept token is fed again so the row's next-token logits are fresh.
        """
        feeds: list[list[int]] = []
        for row, target in enumerate(targets):
            if target is None:
                feeds.append([])
                continue
            current, target = self.generated(row), list(target)
            common = _common_prefix(current, target)
            if common == len(current) == len(target):
                feeds.append([])
                continue
            keep = self.prompt_lengths[row] + common - (1 if common == len(target) else 0)
            full = self.ids[row][: self.prompt_lengths[row]] + target
            self._rollback(row, len(self.ids[row]) - keep)
            feeds.append(full[keep:])
        self._feed(feeds)

    @torch.inference_mode()
    def _rollback(self, row: int, count: int) -> None:
        for _ in range(count):
            self.mask[row, self.columns[row].pop()] = 0
            self.ids[row].pop()

    @torch.inference_mode()
    def _feed(self, tokens: Sequence[Sequence[int]]) -> None:
        width = max((len(t) for t in tokens), default=0)
        if width == 0:
            return
        rows = len(tokens)
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        new_mask = torch.zeros(rows, width, dtype=torch.long)
        positions = torch.zeros(rows, width, dtype=torch.long)
        start = self.mask.shape[1]
        for row, new in enumerate(tokens):
            if not new:
                continue
            offset = width - len(new)
            first = len(self.ids[row])
            input_ids[row, offset:] = torch.tensor(new, dtype=torch.long)
            new_mask[row, offset:] = 1
            positions[row, offset:] = torch.arange(first, first + len(new))
            positions[row, :offset] = first  # padding: any position, it is masked out
            self.columns[row].extend(range(start + offset, start + width))
            if self.logits.numel():  # the prompt is not a generated token
                self.fed[row] += len(new)
            self.ids[row].extend(new)
        self.mask = torch.cat([self.mask, new_mask.to(self.device)], dim=1)
        kwargs = {"logits_to_keep": 1} if self._keep_logits_arg else {}
        kwargs[self._cache_arg] = self.cache
        captured: list[torch.Tensor] = []
        # the output head's input is the last hidden state; catching it there keeps one position
        # instead of every layer's states (output_hidden_states)
        hook = self.model.get_output_embeddings().register_forward_hook(
            lambda module, args, output: captured.append(args[0][:, -1])
        )
        try:
            out = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=self.mask,
                position_ids=positions.to(self.device),
                use_cache=True,
                **kwargs,
            )
        finally:
            hook.remove()
        self.cache = out.cache if "cache" in out else out.past_key_values
        self.forward_tokens += rows * width
        logits = out.logits[:, -1, : self.vocab_size].float()
        hidden = captured[-1].float() if captured else torch.zeros(rows, 0, device=logits.device)
        fresh = torch.tensor([bool(t) for t in tokens], device=logits.device)[:, None]
        if self.logits.numel():
            logits = torch.where(fresh, logits, self.logits)
            hidden = torch.where(fresh, hidden, self.hidden)
        self.logits, self.hidden = logits, hidden


def _accepts(model: Any, name: str) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count
