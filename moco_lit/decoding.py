"""Token-level joint decoding over several models — the only place with a token loop.

Every collaborator taking part keeps its **own KV cache** for the whole batch (a
:class:`ModelStream`), so a decoding step feeds each model only the tokens that are new to it: the
cost of a step stays flat instead of growing with the length (MoCo re-runs the whole sequence
through every model at every step). Rows are left-padded; each stream keeps its attention mask and
explicit position ids, so rows of different lengths, finished rows and rolled-back tokens (masked
out in place) never disturb each other.

How methods use it
------------------
``JointDecoder(collaborators, decoding, cache=...).generate(prompts, rule, seeds)`` returns one
:class:`JointGeneration` per prompt (through the generation cache: the key holds every model's
fingerprint, every rendered prompt, the rule's ``key`` and the decoding parameters, so reruns are
free). ``usage`` on each result says how many tokens each model read, for cost accounting
(``CollaborationModule.ask_joint`` does the bookkeeping for a method). The ``rule`` says who decides
the next token:

- a :class:`FuseRule` maps the models' next-token logits (same vocabulary, one id space) to one
  set of logits: :func:`identity`, :func:`average`, :func:`weighted_sum`, :func:`contrast`
  (top-k minus bottom-k), :class:`Deferral` (Co-LLM's deferral probability), :class:`DeferralHead`
  (Co-LLM with a learnt head on the generator's hidden state and a threshold warm-up,
  :func:`warmup_threshold`; rules that read hidden states or the step override ``fuse``). The chosen id is
  appended to every model's cache. Different vocabularies raise a ``UserError`` naming both
  tokenizers (:func:`check_same_vocabulary`).
- a :class:`SwitchRule` picks, per row and step, which model writes the next token
  (:class:`ThresholdSwitch` is nudging's rule). Models then exchange **text**: the author's token is
  appended to its own cache; a model with the same vocabulary receives the ids; any other model
  re-tokenises the joint text and only the tokens that changed at the end are rebuilt (rolled back
  by masking, then fed again), so mixed tokenizer families work.

Patch-level methods (mentor_collab, switch_generation) drive a :class:`DecodingSession` by hand::

    session = decoder.open(prompts, seeds)           # one batch; prefills every model
    while not session.finished():
        rows = session.active_rows()
        patch_a = session.write_patch(0, rows, 16)   # model 0 alone writes up to 16 tokens
        patch_b = session.write_patch(1, rows, 16)   # model 1 writes from the same joint prefix
        keep = my_chooser(patch_a, patch_b)          # any decision (a judge, an MLP, ...)
        session.commit(rows, [p.text for p in kept], author=..., ended=[p.ended for p in kept])
    results = session.results()

A :class:`PatchRule` packages such a loop (``run(session)``) so that ``generate`` / ``ask_joint``
run it through the generation cache and cost accounting like any other rule.
``write_patch`` advances only the writer's cache (one size or one per row; ``Patch.logprob`` is
the writer's log-probability of it); ``commit`` appends the kept text to the joint
text and brings every other stream in line (a stream whose own patch was rejected rolls it back).
``session.streams[m].logits`` / ``hidden`` give a model's next-token logits / last hidden state at
the joint prefix after a ``sync(m)``, for choosers that look at them. Sampling is reproducible per
row: each row (and each model proposing in it) has its own seeded Gumbel-max generator
(``generation.SeededSampler``), so a row's output does not depend on the rest of its batch.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from moco_lit.cache import GenerationCache, cache_key
from moco_lit.collaborators import Collaborator, Prompt
from moco_lit.errors import UserError
from moco_lit.generation import (
    DecodingConfig,
    Generation,
    SeededSampler,
    check_prompt_lengths,
    eos_ids_of,
    example_seed,
    strip_thinking,
)

if TYPE_CHECKING:
    pass

# bump when a change to the engine changes outputs, so cached joint generations are not reused
ENGINE_VERSION = 1
FUSED = -1  # author of text chosen from combined logits (in ``DecodingSession.segments``)


# -- results ----------------------------------------------------------------------------------


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


def _joint_from_record(record: dict, cached: bool) -> JointGeneration:
    return JointGeneration.from_record(
        record,
        cached,
        usage=[tuple(u) for u in record.get("usage", [])],
        details=record.get("details", {}),
    )


# -- combination rules ------------------------------------------------------------------------


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


@dataclass
class Deferral(FuseRule):
    """Co-LLM: when the generator's probability of ``defer_token`` exceeds ``threshold`` the mentor
    decides (``defer``), or both distributions are mixed (``compose``: mentor weighted by that
    probability). The deferral token itself is never emitted."""

    defer_token: int
    threshold: float = 0.5
    strategy: str = "defer"
    generator: int = 0
    mentor: int = 1

    @property
    def key(self) -> str:  # type: ignore[override]
        return f"deferral({self.defer_token},{self.threshold},{self.strategy},{self.generator},{self.mentor})"

    def __call__(self, logits: list[torch.Tensor]) -> torch.Tensor:
        own = torch.log_softmax(logits[self.generator], dim=-1)
        defer = own[:, self.defer_token].exp()
        own = own.clone()
        own[:, self.defer_token] = -math.inf
        mentor = torch.log_softmax(logits[self.mentor], dim=-1)
        mentor[:, self.defer_token] = -math.inf
        if self.strategy == "compose":
            mix = (1 - defer)[:, None] * own.exp() + defer[:, None] * mentor.exp()
            return mix.clamp_min(1e-30).log()
        use_mentor = (defer > self.threshold)[:, None]
        return torch.where(use_mentor, mentor, own)


THRESHOLD_SCHEDULES = ("none", "linear", "cosine")


def warmup_threshold(
    threshold: float, schedule: str, warmup_steps: int, total_steps: int, step: int
) -> float:
    """Co-LLM's deferral threshold at ``step``: from 1.0 (never defer) down to ``threshold`` over
    ``min(warmup_steps, total_steps)`` steps, ``linear`` (end points included) or ``cosine`` (half a
    cosine wave); ``none`` is ``threshold`` throughout. After the warm-up it stays at ``threshold``."""
    if schedule not in THRESHOLD_SCHEDULES:
        raise UserError(f"threshold warm-up schedule must be one of {THRESHOLD_SCHEDULES}, got {schedule!r}")
    warmup = min(warmup_steps, total_steps)
    if schedule == "none" or step >= warmup:
        return threshold
    if schedule == "linear":
        return 1.0 if warmup == 1 else 1.0 + (threshold - 1.0) * step / (warmup - 1)
    return threshold + (1.0 - threshold) * 0.5 * (1 + math.cos(math.pi * step / warmup))


class DeferralHead(FuseRule):
    """Co-LLM with a learnt deferral head: ``p = sigmoid(head(h))`` on the generator's last hidden
    state ``h``. ``defer``: the mentor decides the token where ``p`` exceeds the (warmed-up)
    threshold, the generator elsewhere; ``compose``: ``(1 - p) * P_generator + p * P_mentor``.
    ``fingerprint`` names the head's weights in the cache key."""

    def __init__(
        self,
        head: Callable[[torch.Tensor], torch.Tensor],
        threshold: float = 0.5,
        strategy: str = "defer",
        schedule: str = "none",
        warmup_steps: int = 15,
        total_steps: int = 512,
        generator: int = 0,
        mentor: int = 1,
        fingerprint: str = "",
    ) -> None:
        if strategy not in ("defer", "compose"):
            raise UserError(f"deferral strategy must be defer or compose, got {strategy!r}")
        warmup_threshold(threshold, schedule, warmup_steps, total_steps, 0)  # validates the schedule
        self.head, self.threshold, self.strategy = head, threshold, strategy
        self.schedule, self.warmup_steps, self.total_steps = schedule, warmup_steps, total_steps
        self.generator, self.mentor, self.fingerprint = generator, mentor, fingerprint
        self.trace: list[list[tuple[float, float, bool]]] = []  # per row: (p, threshold, deferred)

    @property
    def key(self) -> str:  # type: ignore[override]
        return (
            f"deferral_head({self.fingerprint},{self.threshold},{self.strategy},{self.schedule},"
            f"{self.warmup_steps},{self.total_steps},{self.generator},{self.mentor})"
        )

    def threshold_at(self, step: int) -> float:
        return warmup_threshold(self.threshold, self.schedule, self.warmup_steps, self.total_steps, step)

    def reset(self, batch_size: int) -> None:
        self.trace = [[] for _ in range(batch_size)]

    def fuse(
        self, logits: list[torch.Tensor], hidden: list[torch.Tensor], step: int, active: list[bool]
    ) -> torch.Tensor:
        if len(self.trace) != len(active):
            self.reset(len(active))
        with torch.inference_mode():
            prob = torch.sigmoid(self.head(hidden[self.generator]).float().reshape(-1))
        own = torch.log_softmax(logits[self.generator].float(), dim=-1)
        mentor = torch.log_softmax(logits[self.mentor].float(), dim=-1).to(own.device)
        prob = prob.to(own.device)
        threshold = self.threshold_at(step)
        deferred = prob > threshold
        for row, is_active in enumerate(active):
            if is_active:
                self.trace[row].append((float(prob[row]), threshold, bool(deferred[row])))
        if self.strategy == "compose":
            mix = (1 - prob)[:, None] * own.exp() + prob[:, None] * mentor.exp()
            return mix.clamp_min(1e-30).log()
        return torch.where(deferred[:, None], mentor, own)

    def row_details(self, row: int) -> dict[str, Any]:
        steps = self.trace[row] if row < len(self.trace) else []
        return {
            "deferred_tokens": sum(1 for _, _, deferred in steps if deferred),
            "mean_deferral_prob": round(sum(p for p, _, _ in steps) / max(len(steps), 1), 4),
        }


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


@dataclass
class ThresholdSwitch(SwitchRule):
    """Nudging's rule: ``base`` writes while its top-1 probability is at least ``gamma``; below, the
    ``helper`` takes over and finishes its word (keeps writing until its next token opens a new
    word and the base is confident again). The helper writes the first token of an answer.

    ``word_break`` says which helper tokens open a new word: ``space`` (MoCo's rule), a token
    holding a space character; ``whitespace``, any whitespace (a newline or a tab too)."""

    gamma: float
    base: int = 0
    helper: int = 1
    word_break: str = "space"
    reads_text: bool = True
    nudging: list[bool] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    trace: list[list[tuple[int, float]]] = field(default_factory=list)

    @property
    def key(self) -> str:  # type: ignore[override]
        return (
            f"threshold_switch(gamma={self.gamma},base={self.base},helper={self.helper},"
            f"word_break={self.word_break},reads_text={self.reads_text})"
        )

    def reset(self, batch_size: int) -> None:
        self.nudging = [True] * batch_size
        self.accepted = [0] * batch_size
        self.trace = [[] for _ in range(batch_size)]

    def __call__(self, view: StepView) -> list[int]:
        top1 = torch.softmax(view.logits[self.base].float(), dim=-1).max(dim=-1).values.tolist()
        authors = []
        for row, active in enumerate(view.active):
            author = self._choose(row, top1[row], view.pieces[self.helper][row]) if active else self.base
            if active:
                self.trace[row].append((author, top1[row]))
            authors.append(author)
        return authors

    def _choose(self, row: int, top1: float, helper_piece: str) -> int:
        if self.word_break == "space":
            opens_word = " " in helper_piece
        else:
            opens_word = any(ch.isspace() for ch in helper_piece)
        if self.nudging[row] and (self.accepted[row] == 0 or not opens_word or top1 < self.gamma):
            self.accepted[row] += 1
            return self.helper
        if top1 >= self.gamma:
            self.nudging[row], self.accepted[row] = False, 0
            return self.base
        self.nudging[row], self.accepted[row] = True, 1
        return self.helper

    def row_details(self, row: int) -> dict[str, Any]:
        authors = [author for author, _ in self.trace[row]]
        handovers = sum(1 for a, b in zip(authors, authors[1:]) if a != b and b == self.helper)
        return {"helper_tokens": authors.count(self.helper), "handovers": handovers}


def module_fingerprint(module: torch.nn.Module | None) -> str:
    """A short hash of a module's weights, for cache keys of rules that run a trained head."""
    if module is None:
        return "none"
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# -- vocabularies -----------------------------------------------------------------------------


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


# -- one model's state over a batch -----------------------------------------------------------


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


# -- one batch decoded jointly ----------------------------------------------------------------


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


# -- the engine -------------------------------------------------------------------------------


@dataclass
class JointDecoder:
    """Decodes prompts jointly with ``collaborators`` under a rule, through the generation cache."""

    collaborators: Sequence[Collaborator]
    decoding: DecodingConfig = DecodingConfig()
    cache: GenerationCache | None = None
    batch_size: int = 16

    def open(self, prompts: Sequence[Prompt], seeds: Sequence[int] | None = None) -> DecodingSession:
        """Start a batch by hand (patch-level methods); prefills every model."""
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        return DecodingSession(self.collaborators, prompts, self.decoding, seeds)

    def generate(
        self,
        prompts: Sequence[Prompt],
        rule: FuseRule | SwitchRule | PatchRule,
        seeds: Sequence[int] | None = None,
    ) -> list[JointGeneration]:
        """One output per prompt under ``rule`` (cached results first)."""
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
        keys = [self._key(prompt, rule, seed) for prompt, seed in zip(prompts, seeds)]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        missing = sorted(
            {i for i, key in enumerate(keys) if key not in found},
            key=lambda i: -len(self.collaborators[0].render(prompts[i], self.decoding.enable_thinking)),
        )
        fresh: dict[str, dict] = {}
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            outputs = self.run_batch([prompts[i] for i in chunk], rule, [seeds[i] for i in chunk])
            fresh.update((keys[i], out.to_record()) for i, out in zip(chunk, outputs))
        if self.cache is not None and fresh:
            self.cache.put_many(fresh)
        return [_joint_from_record(found.get(key) or fresh[key], cached=key in found) for key in keys]

    def run_batch(
        self, prompts: Sequence[Prompt], rule: FuseRule | SwitchRule | PatchRule, seeds: Sequence[int]
    ) -> list[JointGeneration]:
        """Decode one batch without the cache."""
        session = self.open(prompts, seeds)
        if isinstance(rule, PatchRule):
            rule.reset(len(prompts))
            rule.run(session)
            return session.results(lambda row: {**rule.row_details(row), "segments": session.segments[row]})
        if isinstance(rule, SwitchRule):
            rule.reset(len(prompts))
            step = 0
            while not session.finished():
                session.switch_step(rule, step)
                step += 1
            return session.results(lambda row: {**rule.row_details(row), "segments": session.segments[row]})
        rule.reset(len(prompts))
        while not session.finished():
            session.fuse_step(rule)
        tokenizer = session.streams[0].tokenizer
        for row in range(len(prompts)):
            session.texts[row] = tokenizer.decode(session.streams[0].generated(row), skip_special_tokens=True)
        return session.results(rule.row_details)

    def _key(self, prompt: Prompt, rule: FuseRule | SwitchRule | PatchRule, seed: int) -> str:
        fingerprints = "|".join(c.fingerprint for c in self.collaborators)
        rendered = "\x1e".join(c.render(prompt, self.decoding.enable_thinking) for c in self.collaborators)
        fields = {**self.decoding.cache_fields(), "rule": rule.key, "engine": ENGINE_VERSION}
        return cache_key(fingerprints, rendered, fields, 0 if self.decoding.greedy else seed, 0)
