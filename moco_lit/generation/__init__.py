"""Batched text generation over resident collaborators — the only place that calls ``model.generate``.

- ``config``: what a request asks for (:class:`DecodingConfig`) and gives back (:class:`Generation`);
- ``engine``: :class:`GenerationEngine` — prompts rendered, looked up in the generation cache,
  only the misses generated (sorted by length, in batches; the vLLM and llama.cpp backends);
- ``hf``: one batch through ``model.generate`` or the token loop, and the prompt-length check;
- ``loop``: one model's token loop, where a row that has ended leaves the batch;
- ``sampling``: seeded per-row sampling and the log-probability and top-5 confidence recorders.
- ``backend``: the :class:`Backend` protocol and :class:`Request`; ``vllm`` and ``llama_cpp``: the
  optional backends behind it.
"""

from moco_lit.generation.backend import cut_at_stop, eos_ids_of, until_eos
from moco_lit.generation.config import (
    THINK_END,
    DecodingConfig,
    Generation,
    GenerationStats,
    example_seed,
    strip_thinking,
)
from moco_lit.generation.engine import AUTO_BATCH_SIZE, BACKENDS, GenerationEngine
from moco_lit.generation.hf import (
    PAST_CONTEXT_FACTOR,
    check_prompt_lengths,
    context_length,
    generate_batch,
    left_padded,
)
from moco_lit.generation.loop import HfSteps, TokenSteps, token_loop
from moco_lit.generation.sampling import (
    LogprobRecorder,
    SeededSampler,
    Top5Recorder,
    top5_step_confidence,
    top_p_filter,
)

__all__ = [
    "AUTO_BATCH_SIZE",
    "BACKENDS",
    "PAST_CONTEXT_FACTOR",
    "THINK_END",
    "DecodingConfig",
    "Generation",
    "GenerationEngine",
    "GenerationStats",
    "HfSteps",
    "LogprobRecorder",
    "SeededSampler",
    "TokenSteps",
    "Top5Recorder",
    "check_prompt_lengths",
    "context_length",
    "cut_at_stop",
    "eos_ids_of",
    "example_seed",
    "generate_batch",
    "left_padded",
    "strip_thinking",
    "token_loop",
    "top5_step_confidence",
    "top_p_filter",
    "until_eos",
]
