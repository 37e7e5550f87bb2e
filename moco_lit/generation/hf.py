"""The transformers path: one batch through ``model.generate`` (the only place that calls it) or
the token loop, left padding, and the check that refuses a prompt longer than the model takes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from transformers import GenerationConfig, LogitsProcessorList

from moco_lit.collaborators import Collaborator
from moco_lit.errors import UserError
from moco_lit.generation.backend import Request, cut_at_stop, eos_ids_of, until_eos
from moco_lit.generation.config import DecodingConfig
from moco_lit.generation.llama_cpp import LlamaCppBackend
from moco_lit.generation.loop import HfSteps, TokenSteps, _stop_check, token_loop
from moco_lit.generation.sampling import LogprobRecorder, SeededSampler, Top5Recorder

log = logging.getLogger("moco_lit.generation")  # one logger for the package's warnings


@torch.inference_mode()
def generate_batch(
    collaborator: Collaborator,
    batch: list[Request],
    decoding: DecodingConfig,
    llama: LlamaCppBackend | None = None,
    finished_rows_leave: bool = False,
) -> dict[str, dict]:
    """Generate one batch of tokenized requests (``request.ids``): with ``model.generate``, or with
    :func:`token_loop` over llama.cpp (when ``llama`` serves the collaborator) or over ``HfSteps``
    (``finished_rows_leave``). Returns the cache record of each request by its key."""
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
    if llama is not None and llama.serves(collaborator):
        steps: TokenSteps | None = llama.steps(collaborator, decoding.max_new_tokens)
    elif finished_rows_leave:
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
        sequences = model.generate(**inputs, generation_config=config, logits_processor=processors, **stop)
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
