"""One model's token loop: :func:`token_loop` decodes a batch with the same logits processors as
``model.generate`` over any :class:`TokenSteps` (a transformers model whose ended rows leave its KV
cache, or llama.cpp): the records are the same, only the forward passes change."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Protocol

import torch
from transformers import DynamicCache


class TokenSteps(Protocol):
    """A model driven one token at a time for a batch of prompts whose rows may leave it."""

    def start(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Read the left-padded prompts; the next-token logits of every row (rows × vocabulary)."""
        ...

    def advance(self, keep: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Keep only the rows at positions ``keep`` of the current ones, append ``tokens`` (one per
        kept row) and return their next-token logits."""
        ...


class HfSteps:
    """A transformers causal LM over a KV cache from which finished rows are dropped.

    Every row keeps its attention mask and its positions (counted over its own tokens, as
    ``generate`` counts them), so removing a row changes nothing for the others.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.cache = DynamicCache(config=model.config)
        parameters = inspect.signature(model.forward).parameters
        # transformers 5 renamed past_key_values to cache
        self.cache_arg = "cache" if "cache" in parameters else "past_key_values"
        # only the last position's logits: the prompt's others would cost a vocabulary-wide product each
        self.last_only = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        self.mask = torch.zeros(0)
        self.next_position = torch.zeros(0)

    def start(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        self.mask = inputs["attention_mask"]
        positions = (self.mask.cumsum(-1) - 1).masked_fill(self.mask == 0, 0)
        self.next_position = positions[:, -1:] + 1
        return self._forward(inputs["input_ids"], positions)

    def advance(self, keep: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if len(keep) < self.mask.shape[0]:
            keep = keep.to(self.mask.device)
            self.cache.batch_select_indices(keep)
            self.mask, self.next_position = self.mask[keep], self.next_position[keep]
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(keep), 1)], dim=1)
        logits = self._forward(tokens.to(self.mask.device)[:, None], self.next_position)
        self.next_position = self.next_position + 1
        return logits

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids,
            attention_mask=self.mask,
            position_ids=positions,
            use_cache=True,
            **{self.cache_arg: self.cache},
            **self.last_only,
        )
        return out.logits[:, -1]


def token_loop(
    steps: TokenSteps,
    inputs: dict[str, torch.Tensor],
    max_new_tokens: int,
    processors,
    eos_ids: Sequence[int],
    pad_id: int,
    stopped=None,
) -> torch.Tensor:
    """Greedy decoding over ``processors``' scores, as ``model.generate`` does it, except that a
    row that has ended leaves the batch: the model computes only the rows still writing.

    ``processors`` see the whole batch every step, as in ``generate`` (an ended row's scores are
    zeros, its token the pad id), so the recorders and per-row samplers work unchanged.
    ``stopped(row_ids)`` ends a row on its new tokens (stop strings). Returns the new ids, batch
    × steps, ended rows padded.
    """
    input_ids = inputs["input_ids"]
    rows = input_ids.shape[0]
    logits = steps.start(inputs)
    active = torch.arange(rows)
    ended = torch.zeros(rows, dtype=torch.bool)
    written: list[list[int]] = [[] for _ in range(rows)]
    columns: list[torch.Tensor] = []
    eos = set(eos_ids)
    for step in range(max_new_tokens):
        scores = logits.new_zeros(rows, logits.shape[-1], dtype=torch.float32)
        scores[active.to(scores.device)] = logits.float()
        tokens = processors(input_ids, scores).argmax(dim=-1).cpu()
        tokens[ended] = pad_id
        columns.append(tokens)
        input_ids = torch.cat([input_ids, tokens[:, None].to(input_ids.device)], dim=1)
        keep = []
        for place, row in enumerate(active.tolist()):
            token = int(tokens[row])
            written[row].append(token)
            if token in eos or (stopped is not None and stopped(written[row])):
                ended[row] = True
            else:
                keep.append(place)
        if not keep or step == max_new_tokens - 1:
            break
        kept = torch.tensor(keep)
        active = active[kept]
        logits = steps.advance(kept, tokens[active])
    return torch.stack(columns, dim=1) if columns else torch.zeros(rows, 0, dtype=torch.long)


def _stop_check(tokenizer, stop_strings: Sequence[str]):
    """Whether a row's new tokens end in (or run past) a stop string; None without stop strings."""
    if not stop_strings:
        return None
    # the stop string can only have been completed by the last token: look at a short tail
    tail = max(len(tokenizer.encode(s, add_special_tokens=False)) for s in stop_strings) + 2

    def stopped(ids: list[int]) -> bool:
        text = tokenizer.decode(ids[-tail:], skip_special_tokens=True)
        return any(stop in text for stop in stop_strings)

    return stopped
