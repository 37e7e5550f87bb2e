"""Training objectives as short, tested functions; the Lightning Trainer drives every loop.

``completion_batch`` builds inputs whose labels cover only the completion (the prompt and padding
are masked with -100), and ``sft_loss`` is the token-mean cross-entropy over those labels.
``completion_logps``/``reference_logps`` give each completion's summed log-probability (the
reference is the same model with its adapter disabled); ``dpo_loss`` is DPO on those;
``group_advantages`` and ``grpo_loss`` are GRPO's group-normalised advantages and clipped ratio
objective with an optional KL penalty. ``deferral_labels`` and ``deferral_marginal_loss`` are Co-LLM's
initial deferral targets and marginal-likelihood objective. ``lr_factor`` is the learning-rate
schedule (MoCo's cosine, or constant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

LR_SCHEDULES = ("cosine", "linear", "constant")


def lr_factor(step: int, horizon: int, schedule: str, warmup_steps: int = 0) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps of a ``horizon``-step run.

    ``cosine`` is the Hugging Face Trainer's (MoCo's ``lr_scheduler_type="cosine"``): linear warmup
    over ``warmup_steps``, then half a cosine from 1 down to 0 at ``horizon``; ``linear`` goes
    straight down to 0 instead (``lr_scheduler_type="linear"``); ``constant`` keeps 1.
    """
    if schedule == "constant":
        return 1.0
    if schedule not in ("cosine", "linear"):
        raise ValueError(f"lr_schedule {schedule!r}: expected one of {', '.join(LR_SCHEDULES)}")
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, horizon - warmup_steps)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def completion_batch(
    tokenizer, prompts: Sequence[str], completions: Sequence[str], max_length: int = 512
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask``/``labels`` for rendered prompts + completions.

    Each completion ends with the tokenizer's EOS so the model learns to stop. Over-long examples
    lose their prompt's start, never the completion. A completion that would run straight on from
    a prompt ending in text (the plain-text fallback's ``Assistant:``) starts with a space, as
    models continue such text when they generate; chat templates end in a newline and need none.
    """
    rows, labels = [], []
    for prompt, completion in zip(prompts, completions):
        completion = joined_completion(prompt, completion)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        completion_ids = completion_ids + [tokenizer.eos_token_id]
        prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(completion_ids) - max_length) :]
        rows.append(prompt_ids + completion_ids)
        labels.append([IGNORE_INDEX] * len(prompt_ids) + completion_ids)
    width = max(len(row) for row in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    label_ids = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, label) in enumerate(zip(rows, labels)):
        input_ids[i, : len(row)] = torch.tensor(row)
        label_ids[i, : len(label)] = torch.tensor(label)
        attention[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": label_ids}


def joined_completion(prompt: str, completion: str) -> str:
    """``completion`` as it follows ``prompt`` in a training row: after a space when neither side
    has whitespace at the seam."""
    if prompt and completion and not prompt[-1].isspace() and not completion[0].isspace():
        return " " + completion
    return completion


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled (completion) positions."""
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shifted_labels = labels[:, 1:].reshape(-1)
    return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX)


# -- sequence log-probabilities ----------------------------------------------------------------


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each labelled next token, and the mask of labelled positions.

    Both are ``(batch, length - 1)``: position t scores token t + 1 given tokens up to t.
    """
    shifted_labels = labels[:, 1:]
    mask = shifted_labels != IGNORE_INDEX
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = log_probs.gather(-1, shifted_labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * mask, mask


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each row's completion (its labelled tokens): ``(batch,)``."""
    picked, _ = token_logps(logits, labels)
    return picked.sum(-1)


def completion_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed completion log-probabilities of a ``completion_batch`` under ``model``."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return sequence_logps(logits, batch["labels"])


@torch.no_grad()
def reference_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Completion log-probabilities under the frozen reference: the same model, adapter disabled.

    With LoRA the reference costs no extra memory; a model without an adapter is its own reference.
    """
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            return completion_logps(model, batch)
    return completion_logps(model, batch)


# -- DPO ---------------------------------------------------------------------------------------


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """Direct Preference Optimisation (Rafailov et al., 2023), mean over pairs.

    ``-log sigmoid(beta * (policy margin - reference margin))``: log 2 when policy equals reference.
    """
    policy_margin = policy_chosen_logps - policy_rejected_logps
    reference_margin = ref_chosen_logps - ref_rejected_logps
    return -F.logsigmoid(beta * (policy_margin - reference_margin)).mean()


# -- GRPO --------------------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6, scale: str = "group") -> torch.Tensor:
    """Group-normalised advantages (Shao et al., 2024): ``(r - group mean) / (group std + eps)``.

    ``rewards`` is ``(groups, group_size)``; a group whose rewards are all equal teaches nothing
    and gets advantage 0 everywhere. ``scale`` divides by the group's std (``group``), by the
    std of every reward of the batch (``batch``) or by nothing (``none``), as TRL's
    ``scale_rewards``.
    """
    mean = rewards.mean(dim=-1, keepdim=True)
    if scale == "none":
        return rewards - mean
    if scale == "batch":
        return (rewards - mean) / (rewards.std(unbiased=False) + eps)
    std = rewards.std(dim=-1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    ref_logps: torch.Tensor | None = None,
    kl_beta: float = 0.0,
) -> torch.Tensor:
    """GRPO's clipped-ratio objective per token (PPO clip), with an optional KL to a reference.

    ``logps``/``old_logps``/``ref_logps``/``mask`` are ``(batch, tokens)`` (see :func:`token_logps`),
    ``advantages`` is ``(batch,)`` (one per sampled completion, flattened over groups). The KL is
    the unbiased ``exp(ref - logp) - (ref - logp) - 1`` estimator. Each completion's token mean is
    averaged over completions, so long answers do not dominate.
    """
    ratio = torch.exp(logps - old_logps.detach())
    advantage = advantages.detach().unsqueeze(-1)
    unclipped = ratio * advantage
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage
    per_token = -torch.min(unclipped, clipped)
    if ref_logps is not None and kl_beta > 0:
        delta = ref_logps.detach() - logps
        per_token = per_token + kl_beta * (torch.exp(delta) - delta - 1.0)
    mask = mask.to(per_token.dtype)
    per_completion = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return per_completion.mean()


# -- Co-LLM ------------------------------------------------------------------------------------


def deferral_labels(
    generator_logits: torch.Tensor, mentor_logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Co-LLM's initial deferral targets (MoCo's init "a"): 1 where the gold next token is the
    mentor's most likely one and not the generator's, 0 elsewhere, -100 at unlabelled positions.
    "Most likely" is up to rounding (``torch.isclose`` of its log-probability and the maximum), so
    a gold token tied for first counts as right.

    Shape ``(batch, length - 1)`` like :func:`token_logps` (same vocabulary for both models).
    """
    gold = labels[:, 1:]

    def right(logits: torch.Tensor) -> torch.Tensor:
        log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        picked = log_probs.gather(-1, gold.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return torch.isclose(picked, log_probs.max(dim=-1).values)

    mentor_right, generator_right = right(mentor_logits), right(generator_logits)
    targets = (mentor_right & ~generator_right).long()
    return targets.masked_fill(gold == IGNORE_INDEX, IGNORE_INDEX)


def deferral_marginal_loss(
    deferral_logits: torch.Tensor,
    generator_logps: torch.Tensor,
    mentor_logps: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Co-LLM's marginal-likelihood objective (Shen et al., 2024), mean over the ``mask``ed tokens.

    With ``p = sigmoid(deferral_logit)`` each gold token is explained either by the generator
    (weight ``1 - p``) or by the mentor (weight ``p``), the choice a latent variable:
    ``-log((1 - p) P_generator(y) + p P_mentor(y))``. All inputs are ``(batch, tokens)`` (see
    :func:`token_logps`); the loss pushes ``p`` up exactly where the mentor explains a token better.
    """
    own = F.logsigmoid(-deferral_logits.float()) + generator_logps.float()
    deferred = F.logsigmoid(deferral_logits.float()) + mentor_logps.float()
    nll = -torch.logsumexp(torch.stack([own, deferred], dim=-1), dim=-1)
    mask = mask.to(nll.dtype)
    return (nll * mask).sum() / mask.sum().clamp(min=1.0)


def grpo_batch_loss(
    model,
    batch: dict[str, torch.Tensor],
    rewards: torch.Tensor,
    group_size: int,
    old_logps: torch.Tensor | None = None,
    clip_eps: float = 0.2,
    kl_beta: float = 0.0,
    scale_rewards: str = "group",
) -> torch.Tensor:
    """GRPO on a ``completion_batch`` of ``groups * group_size`` sampled completions (grouped rows).

    ``rewards`` is ``(groups * group_size,)``; without ``old_logps`` the step is on-policy (ratio 1,
    so the clip is inactive and the gradient is the advantage-weighted log-likelihood). The KL
    reference is the model with its adapter disabled. ``scale_rewards``: see :func:`group_advantages`.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps, mask = token_logps(logits, batch["labels"])
    ref_logps = None
    if kl_beta > 0:
        with torch.no_grad():
            if hasattr(model, "disable_adapter"):
                with model.disable_adapter():
                    ref_logits = model(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                    ).logits
            else:
                ref_logits = logits.detach()
            ref_logps, _ = token_logps(ref_logits, batch["labels"])
    grouped = rewards.reshape(-1, group_size).float()
    advantages = group_advantages(grouped, scale=scale_rewards).reshape(-1).to(logps)
    old = logps.detach() if old_logps is None else old_logps
    return grpo_loss(logps, old, advantages, mask, clip_eps, ref_logps, kl_beta)
