"""One batch decoded jointly by several models (:class:`DecodingSession`) and its results
(:class:`JointGeneration`); see the package docstring for how methods drive it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from moco_lit.collaborators import Collaborator, Prompt
from moco_lit.decoding.rules import FuseRule, StepView, SwitchRule
from moco_lit.decoding.stream import ModelStream, TokenPicker
from moco_lit.decoding.vocab import same_vocabulary
from moco_lit.generation import DecodingConfig, Generation, example_seed, strip_thinking

FUSED = -1  # author of text chosen from combined logits (in ``DecodingSession.segments``)


@dataclass
class JointGeneration(Generation):
    """A jointly decoded output. ``usage[m]`` = (prompt tokens, generated tokens fed) of model m."""

    usage: list[tuple[int, int]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def per_model(self) -> list[Generation]:
        """One ``Generation`` per model holding only its token counts (for cost accounting)."""
        return [Generation("", "", prompt, fed, cached=self.cached) for prompt, fed in self.usage]

    def to_record(self) -> dict:
        return {**super().to_record(), "usage": self.usage, "details": self.details}


@dataclass
class Patch:
    """Text one model wrote alone: ``ended`` when it stopped on its end-of-sequence token."""

    text: str
    tokens: int
    ended: bool
    logprob: float = 0.0  # summed log-probability of its tokens under the writer


class DecodingSession:
    """One batch of rows decoded jointly by several models; see the module docstring."""

    def __init__(
        self,
        collaborators: Sequence[Collaborator],
        prompts: Sequence[Prompt],
        decoding: DecodingConfig,
        seeds: Sequence[int],
    ) -> None:
        self.collaborators = list(collaborators)
        self.decoding = decoding
        self.streams = [
            ModelStream(c, [c.render(p, decoding.enable_thinking) for p in prompts]) for c in collaborators
        ]
        self.pickers = [
            TokenPicker(decoding, [example_seed(seed, "model", m) for seed in seeds])
            for m in range(len(collaborators))
        ]
        self.fused_picker = TokenPicker(decoding, seeds)
        self.prompts = list(prompts)
        self.seeds = list(seeds)
        self.steps = 0  # fuse steps taken (the step number rules see)
        size = len(prompts)
        self.texts = [""] * size
        self.done = [False] * size
        self.new_tokens = [0] * size
        self.logprob_sums = [0.0] * size
        # who wrote each row's joint text last, and that text in the writer's ids (None: unknown)
        self.writer = [0] * size
        self.writer_ids: list[list[int] | None] = [[] for _ in range(size)]
        self.segments: list[list[list]] = [[] for _ in range(size)]  # [model, text] runs per row
        self._same = [[same_vocabulary(a, b) for b in collaborators] for a in collaborators]

    # -- state --

    def active_rows(self) -> list[int]:
        return [row for row, done in enumerate(self.done) if not done]

    def finished(self) -> bool:
        return not any(self._active_mask())

    def writing_rows(self) -> list[int]:
        """Rows neither finished nor out of ``max_new_tokens``."""
        return [row for row, active in enumerate(self._active_mask()) if active]

    def remaining(self, row: int) -> int:
        """New tokens ``row`` may still get."""
        return max(self.decoding.max_new_tokens - self.new_tokens[row], 0)

    def next_token_texts(self, model: int, rows: Sequence[int]) -> list[str]:
        """The text of model ``model``'s greedy next token at each row's joint prefix ("" = EOS)."""
        self.sync(model)
        stream = self.streams[model]
        best = stream.logits.argmax(dim=-1).tolist()
        return [stream.token_text(row, best[row]) for row in rows]

    def _active_mask(self) -> list[bool]:
        limit = self.decoding.max_new_tokens
        return [not d and n < limit for d, n in zip(self.done, self.new_tokens)]

    # -- id space: one token for all --

    def fuse_step(self, rule: FuseRule) -> torch.Tensor:
        """One step of id-space decoding: combine logits, pick, append the token to every stream."""
        active = self._active_mask()
        vocab = min(s.vocab_size for s in self.streams)
        device = self.streams[0].logits.device
        logits = [s.logits[:, :vocab].to(device) for s in self.streams]
        combined = rule.fuse(logits, [s.hidden for s in self.streams], self.steps, active)
        self.steps += 1
        tokens = self.fused_picker(combined)
        logprobs = torch.log_softmax(combined, dim=-1).gather(1, tokens[:, None]).squeeze(1).tolist()
        chosen = tokens.tolist()
        feeds = []
        first = self.streams[0]
        for row, token in enumerate(chosen):
            if not active[row] or token in first.eos_ids:
                self.done[row] = self.done[row] or active[row]
                feeds.append([])
                continue
            self.new_tokens[row] += 1
            self.logprob_sums[row] += logprobs[row]
            self._extend(row, FUSED, first.token_text(row, token))
            feeds.append([token])
        for stream in self.streams:
            stream.append(feeds)
        for row, feed in enumerate(feeds):
            if feed:  # every stream holds these ids: hand them on as they are
                self.writer[row], self.writer_ids[row] = 0, list(first.generated(row))
        return tokens

    # -- text space: one author per row --

    def switch_step(self, rule: SwitchRule, step: int) -> list[int]:
        """One step of text-handover decoding: every model proposes, ``rule`` picks the author."""
        active = self._active_mask()
        logits = [s.logits for s in self.streams]
        proposals = [picker(x) for picker, x in zip(self.pickers, logits)]
        pieces = [
            [s.token_text(row, int(p[row])) if active[row] else "" for row in range(len(active))]
            for s, p in zip(self.streams, proposals)
        ]
        authors = rule(StepView(logits, proposals, pieces, active, step))
        for row, author in enumerate(authors):
            if not active[row]:
                continue
            token = int(proposals[author][row])
            if token in self.streams[author].eos_ids:
                self.done[row] = True
                continue
            self.logprob_sums[row] += float(torch.log_softmax(logits[author][row], dim=-1)[token])
            self.new_tokens[row] += 1
            self._extend(row, author, pieces[author][row])
            self.writer[row] = author
            self.writer_ids[row] = None if rule.reads_text else [*self.streams[author].generated(row), token]
        for m in range(len(self.streams)):
            self.sync(m)
        return authors

    def next_tokens_after(
        self, model: int, rows: Sequence[int], suffixes: Sequence[str]
    ) -> list[tuple[int, str]]:
        """Model ``model``'s greedy next token after each row's joint text followed by its suffix,
        the whole re-tokenised as text: (id, text, "" for an end of sequence) per row. The stream
        keeps the suffix until its next :meth:`sync`; ``streams[model].hidden`` holds the last
        hidden state there."""
        stream = self.streams[model]
        targets: list[list[int] | None] = [None] * stream.batch_size
        encoded = stream.tokenizer(
            [self.texts[row] + suffix for row, suffix in zip(rows, suffixes)], add_special_tokens=False
        )
        for row, ids in zip(rows, encoded["input_ids"]):
            targets[row] = ids
        stream.sync(targets)
        best = stream.logits.argmax(dim=-1).tolist()
        return [(best[row], stream.token_text(row, best[row])) for row in rows]

    def write_word(self, model: int, rows: Sequence[int], longest: int = 11) -> list[Patch]:
        """Model ``model``'s greedy next word after each row's joint text: its next token, then the
        following ones while they do not open with a space or a newline, at most ``longest`` tokens.
        Each token is predicted from the joint text plus the word so far, re-tokenised (MoCo reads
        text this way). An end of sequence ends the word and sets ``ended``. Nothing is committed."""
        words, counts = dict.fromkeys(rows, ""), dict.fromkeys(rows, 0)
        ended = dict.fromkeys(rows, False)
        eos = self.streams[model].eos_ids
        going = list(rows)
        while going:
            following = []
            nexts = self.next_tokens_after(model, going, [words[r] for r in going])
            for row, (token, text) in zip(going, nexts):
                if token in eos:
                    ended[row] = True
                elif counts[row] == 0 or (text and text[0] not in " \n"):
                    words[row] += text
                    counts[row] += 1
                    if counts[row] < longest and text:
                        following.append(row)
            going = following
        return [Patch(words[r], counts[r], ended[r]) for r in rows]

    def write_patch(self, model: int, rows: Sequence[int], patch_size: int | Sequence[int]) -> list[Patch]:
        """Model ``model`` alone continues ``rows`` from the joint text for up to ``patch_size``
        tokens (one size, or one per row). Only its own stream advances; call :meth:`commit` with
        the text that is kept."""
        self.sync(model)
        stream, picker = self.streams[model], self.pickers[model]
        sizes = dict(zip(rows, [patch_size] * len(rows) if isinstance(patch_size, int) else patch_size))
        texts: dict[int, list[str]] = {row: [] for row in rows}
        counts = dict.fromkeys(rows, 0)
        logprobs = dict.fromkeys(rows, 0.0)
        ended = dict.fromkeys(rows, False)
        for _ in range(max(sizes.values(), default=0)):
            writing = [r for r in rows if not ended[r] and counts[r] < sizes[r]]
            if not writing:
                break
            proposals = picker(stream.logits).tolist()
            log_probs = torch.log_softmax(stream.logits.float(), dim=-1)
            feeds: list[list[int]] = [[] for _ in range(stream.batch_size)]
            for row in writing:
                token = proposals[row]
                if token in stream.eos_ids:
                    ended[row] = True
                    continue
                texts[row].append(stream.token_text(row, token))
                counts[row] += 1
                logprobs[row] += float(log_probs[row, token])
                feeds[row] = [token]
            stream.append(feeds)
        return [Patch("".join(texts[r]), counts[r], ended[r], logprobs[r]) for r in rows]

    def commit(
        self,
        rows: Sequence[int],
        texts: Sequence[str],
        author: int | Sequence[int],
        ended: Sequence[bool] | None = None,
        tokens: Sequence[int] | None = None,
        author_holds_text: bool = True,
    ) -> None:
        """Append ``texts`` to the joint text of ``rows``, written by ``author`` (one per row or one
        for all); ``ended`` rows are finished; ``tokens`` count towards ``max_new_tokens``.

        With ``author_holds_text`` (true right after the author's :meth:`write_patch` of that very
        text) the author's ids are handed to same-vocabulary models as they are; otherwise every
        model re-tokenises the text. Streams catch up lazily, at their next :meth:`sync`.
        """
        authors = [author] * len(rows) if isinstance(author, int) else list(author)
        for i, row in enumerate(rows):
            self._extend(row, authors[i], texts[i])
            self.new_tokens[row] += tokens[i] if tokens is not None else 0
            self.writer[row] = authors[i]
            self.writer_ids[row] = (
                list(self.streams[authors[i]].generated(row)) if author_holds_text else None
            )
            if ended is not None and ended[i]:
                self.done[row] = True

    def sync(self, model: int) -> None:
        """Bring stream ``model`` in line with the joint text of every row, in one forward pass:
        the writer's ids when the vocabularies agree, else the re-tokenised text (either way only
        a changed tail is rebuilt)."""
        stream = self.streams[model]
        targets: list[list[int] | None] = [None] * stream.batch_size
        to_encode = []
        for row, writer in enumerate(self.writer):
            if self.writer_ids[row] is not None and self._same[model][writer]:
                targets[row] = self.writer_ids[row]
            elif self.texts[row] or stream.generated(row):
                to_encode.append(row)
        if to_encode:
            encoded = stream.tokenizer([self.texts[r] for r in to_encode], add_special_tokens=False)
            for row, ids in zip(to_encode, encoded["input_ids"]):
                targets[row] = ids
        stream.sync(targets)

    def _extend(self, row: int, author: int, text: str) -> None:
        self.texts[row] += text
        runs = self.segments[row]
        if runs and runs[-1][0] == author:
            runs[-1][1] += text
        elif text:
            runs.append([author, text])

    # -- results --

    def results(self, details: Callable[[int], dict] | None = None) -> list[JointGeneration]:
        outputs = []
        for row, text in enumerate(self.texts):
            count = self.new_tokens[row]
            outputs.append(
                JointGeneration(
                    text=strip_thinking(text),
                    raw_text=text,
                    prompt_tokens=sum(s.prompt_lengths[row] for s in self.streams),
                    new_tokens=count,
                    mean_logprob=self.logprob_sums[row] / max(count, 1),
                    usage=[(s.prompt_lengths[row], s.fed[row]) for s in self.streams],
                    details=details(row) if details else {},
                )
            )
        return outputs
