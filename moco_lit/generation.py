"""Batched text generation over resident collaborators — the only place that calls ``model.generate``.

Requests are rendered with the collaborator's chat template, looked up in the generation cache,
and only the misses are generated: sorted by length (so padding is small), left-padded, with the
model's KV cache. Sampling is reproducible per example: each row draws its randomness from its own
seeded generator (Gumbel-max over the tempered, top-p filtered distribution), so a sample does not
depend on which other prompts shared its batch. The text after the last ``</think>`` is the answer.

Besides ``model.generate``, :func:`token_loop` decodes one model's batch with the same logits
processors over any :class:`TokenSteps` (a transformers model whose ended rows leave its KV cache,
or llama.cpp): the records are the same, only the forward passes change.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, GenerationConfig, LogitsProcessorList

from moco_lit.backend import Backend, Request, cut_at_stop, eos_ids_of, until_eos
from moco_lit.cache import GenerationCache, cache_key
from moco_lit.collaborators import Collaborator, Prompt
from moco_lit.errors import UserError
from moco_lit.llamacpp_backend import LlamaCppBackend
from moco_lit.processes import THREADS_ENV, ThreadGovernor
from moco_lit.vllm_backend import VllmBackend

log = logging.getLogger(__name__)

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


BACKENDS = ("hf", "vllm", LlamaCppBackend.name)

AUTO_BATCH_SIZE = 64
"""Where ``generation_batch_size: auto`` starts (halved on every out-of-memory batch)."""


def _out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "not enough memory" in text


@dataclass
class GenerationEngine:
    """Generates for many prompts at once, consulting ``cache`` (None = no cache) first.

    ``backend`` "vllm" generates plain model outputs with vLLM (:mod:`moco_lit.vllm_backend`);
    "llama_cpp" runs collaborators loaded from GGUF files with llama.cpp
    (:mod:`moco_lit.llamacpp_backend`; its outputs are cached apart from the HF path's).
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

    @torch.inference_mode()
    def _generate_batch(
        self, collaborator: Collaborator, batch: list[Request], decoding: DecodingConfig
    ) -> dict[str, dict]:
        model, tokenizer = collaborator.model, collaborator.tokenizer
        inputs = left_padded([r.ids for r in batch], tokenizer.pad_token_id, collaborator.device)
        eos_ids = eos_ids_of(model, tokenizer)
        config = GenerationConfig(
            max_new_tokens=decoding.max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos_ids,
            use_cache=True,
            stop_strings=list(collaborator.stop_strings) or None,
        )
        recorder = LogprobRecorder()
        top5 = Top5Recorder(decoding, getattr(model.generation_config, "top_k", None) or 0)
        processors = LogitsProcessorList([recorder, top5])
        if not decoding.greedy:
            processors.append(SeededSampler([r.seed ^ r.sample for r in batch], decoding))
        if self._llama is not None and self._llama.serves(collaborator):
            steps: TokenSteps | None = self._llama.steps(collaborator, decoding.max_new_tokens)
        elif self.finished_rows_leave:
            steps = HfSteps(model)
        else:
            steps = None
        if steps is not None:
            stopped = _stop_check(tokenizer, collaborator.stop_strings)
            new_ids = token_loop(
                steps, inputs, decoding.max_new_tokens, processors, eos_ids, tokenizer.pad_token_id, stopped
            )
        else:
            stop = {"tokenizer": tokenizer} if collaborator.stop_strings else {}
            sequences = model.generate(
                **inputs, generation_config=config, logits_processor=processors, **stop
            )
            new_ids = sequences[:, inputs["input_ids"].shape[1] :]
        logprobs = recorder.finish(new_ids)
        top5_steps = top5.finish()
        results = {}
        for row, request in enumerate(batch):
            all_ids = new_ids[row].tolist()
            ids = until_eos(all_ids, eos_ids)
            # the row's own steps: its tokens and the step that ended it
            own_steps = min(len(ids) + 1, len(all_ids))
            raw = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), collaborator.stop_strings)
            count = max(len(ids), 1)
            results[request.key] = {
                "raw_text": raw,
                "prompt_tokens": request.length,
                "new_tokens": len(ids),
                "mean_logprob": float(logprobs[row, : len(ids)].sum()) / count,
                "top5_confidence": float(top5_steps[row, :own_steps].mean()) if own_steps else 0.0,
            }
        return results


def _reduced_precision(collaborator: Collaborator) -> str | None:
    """``"bfloat16"``/``"float16"`` for a model loaded in a reduced precision, else None."""
    dtype = getattr(getattr(collaborator, "model", None), "dtype", None)
    if isinstance(dtype, torch.dtype) and dtype in (torch.bfloat16, torch.float16):
        return str(dtype).removeprefix("torch.")
    return None


def context_length(model) -> int | None:
    """The most positions ``model`` was built for (None when its config does not say)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


PAST_CONTEXT_FACTOR = 8  # rotary models: how far past their context a prompt may go
_warned_past_context: set[str] = set()


def _learned_positions(model) -> bool:
    """True for models with a learned position table (GPT-2 style), which cannot run past it."""
    config = getattr(model, "config", None)
    rotary = ("rope_parameters", "rope_theta", "rope_scaling", "rotary_dim", "rotary_pct")
    return not any(hasattr(config, name) for name in rotary)


def check_prompt_lengths(
    collaborator: Collaborator, rows: Sequence[Sequence[int]], texts: Sequence[str]
) -> None:
    """Refuse, before any forward pass, a prompt the model cannot take; the rule (never a cut,
    which would silently ask another question):

    - within the model's context (``max_position_embeddings``): runs;
    - longer, on a model with learned positions: refused (there is no position for it);
    - longer, on a rotary model: runs past its trained context as ``generate`` does (one warning
      per model), up to ``PAST_CONTEXT_FACTOR`` times the context; longer still is refused (a
      multi-megabyte prompt would allocate gigabytes).
    """
    limit = context_length(collaborator.model)
    if limit is None:
        return
    hard = limit if _learned_positions(collaborator.model) else PAST_CONTEXT_FACTOR * limit
    for ids, text in zip(rows, texts):
        if len(ids) > hard:
            start = " ".join(text.split())[:60]
            allowed = (
                f"its context of {limit} tokens"
                if hard == limit
                else f"{hard} tokens ({PAST_CONTEXT_FACTOR}x its context of {limit})"
            )
            raise UserError(
                f"a prompt of {len(ids)} tokens is longer than {collaborator.name} takes, {allowed} "
                f"(it begins {start!r}); shorten that input: such prompts are refused, not cut"
            )
        if len(ids) >= limit and collaborator.name not in _warned_past_context:
            _warned_past_context.add(collaborator.name)
            log.warning(
                "%s: a prompt of %d tokens runs past the model's context of %d tokens",
                collaborator.name,
                len(ids),
                limit,
            )


def left_padded(rows: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` for ``rows``, padded on the left (generation continues
    from the right edge), as the tokenizer's own left padding would give."""
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


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


class LogprobRecorder:
    """Records the model's own log-probability of each token it emits (before any sampling change).

    At step t the processor sees the raw scores of step t and, in ``input_ids``, the token chosen at
    step t-1; holding one step of log-probabilities keeps memory at one batch × vocabulary.
    """

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, new_ids: torch.Tensor) -> torch.Tensor:
        steps = list(self.steps)
        if self.previous is not None and len(steps) < new_ids.shape[1]:
            steps.append(self.previous.gather(1, new_ids[:, len(steps) : len(steps) + 1]).squeeze(1))
        if not steps:
            return torch.zeros(new_ids.shape[0], 0)
        return torch.stack(steps, dim=1).cpu()


class Top5Recorder:
    """Records, per step, MoCo's step confidence: the largest probability after the top 5 logits
    of the sampling distribution (tempered and top-p filtered; raw when greedy) are renormalised.

    Top-p drops tokens from the bottom, so only which of the top 5 survive matters: a token stays
    while the probability above it is below ``top_p`` (the rule of ``top_p_filter``). As in
    transformers' sampling, which MoCo uses, top-p acts on the distribution renormalised over the
    model's ``top_k`` (its generation config; transformers' default 50) likeliest tokens.
    """

    def __init__(self, decoding: DecodingConfig, top_k: int = 50) -> None:
        self.decoding = decoding
        self.top_k = top_k
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps.append(top5_step_confidence(scores, self.decoding, self.top_k).cpu())
        return scores

    def finish(self) -> torch.Tensor:
        """Step confidences, batch × steps."""
        return torch.stack(self.steps, dim=1) if self.steps else torch.zeros(0, 0)


def top5_step_confidence(scores: torch.Tensor, decoding: DecodingConfig, top_k: int = 50) -> torch.Tensor:
    """Per row: max of softmax over the top 5 of the tempered, top-k, top-p filtered ``scores``."""
    logits = scores.float()
    if not decoding.greedy:
        logits = logits / decoding.temperature
    top, _ = torch.topk(logits, k=min(5, logits.shape[-1]), dim=-1)
    weights = torch.exp(top - top[:, :1])  # relative to the top token, which is always kept
    if not decoding.greedy and decoding.top_p < 1.0:
        pool = torch.topk(logits, k=min(top_k, logits.shape[-1]), dim=-1).values if top_k > 0 else logits
        probs = torch.exp(top - torch.logsumexp(pool, dim=-1, keepdim=True))
        above = probs.cumsum(dim=-1) - probs
        weights = weights * (above < decoding.top_p)
    return 1.0 / weights.sum(dim=-1)


class SeededSampler:
    """Temperature + top-p sampling as Gumbel-max with one seeded generator per row.

    Greedy decoding over ``logits / T + Gumbel noise`` samples exactly from ``softmax(logits / T)``;
    drawing the noise from a per-row generator makes every row's sample independent of its batch.
    """

    def __init__(self, seeds: Sequence[int], decoding: DecodingConfig) -> None:
        self.seeds = list(seeds)
        self.decoding = decoding
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.generators is None:
            self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in self.seeds]
        logits = scores.float() / self.decoding.temperature
        if self.decoding.top_p < 1.0:
            logits = top_p_filter(logits, self.decoding.top_p)
        uniform = torch.stack([torch.rand(logits.shape[1], generator=g) for g in self.generators])
        gumbel = -torch.log((-torch.log(uniform.clamp_min(1e-20))).clamp_min(1e-20))
        return logits + gumbel.to(logits.device)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches ``top_p`` (always the top one)."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


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
