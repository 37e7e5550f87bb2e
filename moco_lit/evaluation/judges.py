"""Models that score outputs: a reward model, a verifier LM and a sentence encoder.

Each judge is loaded once per process: ``Judge.load(model, device=..., batch_size=...)`` returns
the cached instance for ``(class, model, device)``, so a run that scores many batches (or many
benchmarks) never reloads the weights. A judge needed for one phase only (labelling the dev set)
comes from ``Judge.for_phase(...)``, which releases it afterwards (``Judge.release``: out of the
cache, model freed). All scoring is batched and runs under ``inference_mode``.
Any ``from_pretrained`` name or local folder works, which is how the tests use tiny local models.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.nn.functional as F
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from moco_lit.errors import UserError, load_failure
from moco_lit.model_files import resolve_model

__all__ = [
    "DEFAULT_ENCODER",
    "DEFAULT_REWARD_MODEL",
    "DEFAULT_VERIFIER",
    "EmbeddingJudge",
    "Judge",
    "RewardModelJudge",
    "VerifierJudge",
    "VERIFIER_PROMPT",
    "clear_judges",
    "parse_verdict",
]

DEFAULT_REWARD_MODEL = "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2"
DEFAULT_VERIFIER = "TIGER-Lab/general-verifier"
DEFAULT_ENCODER = "roberta-base"

# The verifier was trained to end with "Final Decision: Yes/No", so the prompt asks for that tag.
VERIFIER_PROMPT = (
    "User: ### Question: {question}\n\n"
    "### Reference Answer: {reference}\n\n"
    "### Candidate Answer: {response}\n\n"
    "Decide whether the candidate answer means the same as the reference answer for this question. "
    "Judge only equivalence; do not solve the question again. "
    'Reply with "Final Decision: Yes" if they are equivalent and "Final Decision: No" otherwise. '
    "Assistant:"
)

J = TypeVar("J", bound="Judge")
_LOADED: dict[tuple[type, str, str], Judge] = {}


def _cache_key(cls: type, model: str, device: str | torch.device) -> tuple[type, str, str]:
    """(kind, the folder or hub id ``model`` resolves to, device): a short name and its folder are one judge."""
    return (cls, resolve_model(model), str(torch.device(device)))


def clear_judges() -> None:
    """Forget every loaded judge (frees their memory once nothing else holds them)."""
    _LOADED.clear()


def _load_tokenizer(model: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise UserError(
            f"cannot load the tokenizer of judge model {model!r}: {load_failure(error)}"
        ) from error


class Judge:
    """Base class: the process-wide cache and the batching helper."""

    def __init__(self, model: str, device: str | torch.device = "cpu", batch_size: int = 8) -> None:
        self.model_name = model
        self.model: torch.nn.Module | None = None  # set by each kind of judge; None once released
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))

    @classmethod
    def load(cls: type[J], model: str, device: str | torch.device = "cpu", **kwargs: int) -> J:
        """The judge for ``(cls, model, device)``, built on first use and reused afterwards.

        ``model`` may be a fetched short name or a ``.gguf`` file, as for collaborators."""
        key = _cache_key(cls, model, device)
        if key not in _LOADED:
            _LOADED[key] = cls(key[1], device=device, **kwargs)
        return _LOADED[key]  # type: ignore[return-value]

    @classmethod
    def is_loaded(cls, model: str, device: str | torch.device = "cpu") -> bool:
        """Whether the judge for ``(cls, model, device)`` is in the process-wide cache."""
        return _cache_key(cls, model, device) in _LOADED

    @classmethod
    @contextmanager
    def for_phase(cls: type[J], model: str, device: str | torch.device = "cpu", **kwargs: int) -> Iterator[J]:
        """The judge for one phase of a run, released when the phase ends.

        A judge that was loaded before the phase (a scorer of the same model holds it) is left
        loaded: its other user still needs it.
        """
        shared = cls.is_loaded(model, device)
        judge = cls.load(model, device, **kwargs)
        try:
            yield judge
        finally:
            if not shared:
                judge.release()

    def release(self) -> None:
        """Drop this judge from the process-wide cache and free its model; it cannot score again."""
        for key in [key for key, judge in _LOADED.items() if judge is self]:
            del _LOADED[key]
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # hand the weights' memory back to other processes too

    def _batches(self, items: list) -> list[list]:
        return [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]


class RewardModelJudge(Judge):
    """Scalar reward for each (prompt, response) from a sequence-classification model."""

    def __init__(
        self,
        model: str = DEFAULT_REWARD_MODEL,
        device: str | torch.device = "cpu",
        batch_size: int = 4,
        max_length: int = 4096,
    ) -> None:
        super().__init__(model, device, batch_size)
        self.max_length = max_length
        self.tokenizer = _load_tokenizer(model)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1, dtype=dtype)
        except (OSError, ValueError) as error:
            raise UserError(f"cannot load reward model {model!r}: {load_failure(error)}") from error
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is not None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def _conversation_text(self, prompt: str, response: str) -> tuple[str, bool]:
        """The text to score and whether it already carries the special tokens."""
        if getattr(self.tokenizer, "chat_template", None):
            conversation = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            return self.tokenizer.apply_chat_template(conversation, tokenize=False), True
        return f"{prompt}\n\n{response}", False

    @torch.inference_mode()
    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """One reward per (prompt, response) pair."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        texts = [self._conversation_text(p, r) for p, r in zip(prompts, responses)]
        # Without a pad token the model cannot find each row's last token, so go one by one.
        size = self.batch_size if self.tokenizer.pad_token_id is not None else 1
        rewards: list[float] = []
        for start in range(0, len(texts), size):
            batch = texts[start : start + size]
            self.tokenizer.padding_side = "right"
            encoded = self.tokenizer(
                [text for text, _ in batch],
                add_special_tokens=not batch[0][1],
                padding=len(batch) > 1,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            logits = self.model(**encoded).logits
            rewards.extend(logits[:, 0].float().tolist())
        return rewards


def parse_verdict(text: str) -> float:
    """1.0 for a "yes" verdict, 0.0 otherwise; "Final Decision: X" wins over a loose yes/no."""
    decisions = re.findall(r"final\s+decision\s*:?\s*\**\s*(yes|no)\b", text, flags=re.IGNORECASE)
    if decisions:
        return 1.0 if decisions[-1].lower() == "yes" else 0.0
    loose = re.search(r"\b(yes|no|equivalent|not equivalent)\b", text, flags=re.IGNORECASE)
    return 1.0 if loose and loose.group(1).lower() in ("yes", "equivalent") else 0.0


class VerifierJudge(Judge):
    """A causal LM asked whether a response is equivalent to the reference; 1.0 for yes."""

    def __init__(
        self,
        model: str = DEFAULT_VERIFIER,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        max_new_tokens: int = 256,
        prompt: str = VERIFIER_PROMPT,
    ) -> None:
        super().__init__(model, device, batch_size)
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        self.tokenizer = _load_tokenizer(model)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        try:
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
        except (OSError, ValueError) as error:
            raise UserError(f"cannot load verifier model {model!r}: {load_failure(error)}") from error
        self.model.to(self.device).eval()

    @torch.inference_mode()
    def judge(self, questions: list[str], references: list[str], responses: list[str]) -> list[str]:
        """The verifier's raw replies, one per (question, reference, response)."""
        prompts = [
            self.prompt.format(question=q, reference=ref, response=r.strip() or "(no answer)")
            for q, ref, r in zip(questions, references, responses, strict=True)
        ]
        self.tokenizer.padding_side = "left"  # generation continues from the right edge
        replies: list[str] = []
        for batch in self._batches(prompts):
            encoded = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
            generated = self.model.generate(
                **encoded,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            new_tokens = generated[:, encoded["input_ids"].shape[1] :]
            replies.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return replies

    def verify(self, questions: list[str], references: list[str], responses: list[str]) -> list[float]:
        """1.0 where the verifier says the response is equivalent to the reference, else 0.0."""
        return [parse_verdict(reply) for reply in self.judge(questions, references, responses)]


class EmbeddingJudge(Judge):
    """Mean-pooled encoder embeddings, and diversity = 1 - mean cosine similarity to references."""

    def __init__(
        self,
        model: str = DEFAULT_ENCODER,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        max_length: int = 512,
    ) -> None:
        super().__init__(model, device, batch_size)
        self.max_length = max_length
        self.tokenizer = _load_tokenizer(model)
        try:
            self.model = AutoModel.from_pretrained(model)
        except (OSError, ValueError) as error:
            raise UserError(f"cannot load encoder {model!r}: {load_failure(error)}") from error
        self.model.to(self.device).eval()

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """``(len(texts), hidden)`` float32 embeddings: the mean over real (non-padding) tokens."""
        rows: list[torch.Tensor] = []
        for batch in self._batches(texts):
            encoded = self.tokenizer(
                batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**encoded).last_hidden_state.float()
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        return torch.cat(rows).cpu() if rows else torch.empty(0)

    def diversity(self, outputs: list[str], references: list[list[str]]) -> list[float]:
        """For each output, 1 - mean cosine similarity with its references (one encoder pass)."""
        flat = [r for refs in references for r in refs]
        vectors = self.embed(list(outputs) + flat)
        out_vectors, ref_vectors = vectors[: len(outputs)], vectors[len(outputs) :]
        scores, offset = [], 0
        for i, refs in enumerate(references):
            if not refs:
                scores.append(float("nan"))
                continue
            block = ref_vectors[offset : offset + len(refs)]
            offset += len(refs)
            similarity = F.cosine_similarity(out_vectors[i].unsqueeze(0), block, dim=-1)
            scores.append(float(1.0 - similarity.mean()))
        return scores
