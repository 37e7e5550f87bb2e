"""Training objectives on hand-made tensors: SFT, sequence log-probs, DPO, GRPO."""

from __future__ import annotations

import math

import pytest
import torch

from moco_lit.training import (
    IGNORE_INDEX,
    completion_batch,
    dpo_loss,
    group_advantages,
    grpo_loss,
    reference_logps,
    sequence_logps,
    sft_loss,
    token_logps,
)


def _labels_with_prompt(prompt_length: int, length: int, vocab: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    labels = torch.randint(0, vocab, (2, length))
    labels[:, :prompt_length] = IGNORE_INDEX
    return labels


def test_sft_ignores_prompt_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = _labels_with_prompt(prompt_length=3, length=6, vocab=11)
    changed = logits.clone()
    changed[:, :2] = torch.randn(2, 2, 11) * 5  # positions that predict prompt tokens
    assert torch.allclose(sft_loss(logits, labels), sft_loss(changed, labels))
    changed[:, 4] += torch.randn(11) * 5  # a position that predicts a completion token
    assert not torch.allclose(sft_loss(logits, labels), sft_loss(changed, labels))


def test_completion_batch_labels_only_the_completion(tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models[0])
    batch = completion_batch(tokenizer, ["What is 2 times 3?", "Hi"], [" 6", " hello there"])
    for row, prompt in enumerate(["What is 2 times 3?", "Hi"]):
        prompt_length = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        labels = batch["labels"][row]
        assert (labels[:prompt_length] == IGNORE_INDEX).all()
        completion = labels[labels != IGNORE_INDEX]
        assert completion[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(completion[:-1]) == [" 6", " hello there"][row]


def test_a_completion_after_text_starts_with_a_space_as_generated_text_does(tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models[0])
    prompts = ["User: 2 times 3?\n\nAssistant:", "User: 2 times 3?\n\nAssistant:", "<chat>\n"]
    batch = completion_batch(tokenizer, prompts, ["6", " 6", "6"])
    completions = [labels[labels != IGNORE_INDEX][:-1] for labels in batch["labels"]]
    # after "Assistant:" the answer reads " 6" whether or not it came with its space; after a
    # newline (chat templates) it stays as it is
    assert [tokenizer.decode(ids) for ids in completions] == [" 6", " 6", "6"]
    assert torch.equal(batch["input_ids"][0], batch["input_ids"][1])


def test_sequence_logps_sum_the_completion_tokens():
    logits = torch.zeros(1, 4, 5)  # uniform over 5 tokens
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 1]])
    assert sequence_logps(logits, labels).item() == pytest.approx(2 * math.log(1 / 5))
    picked, mask = token_logps(logits, labels)
    assert mask.tolist() == [[False, True, True]] and picked[0, 0] == 0


def test_dpo_loss_is_log2_when_policy_equals_reference():
    chosen, rejected = torch.tensor([-3.0, -7.5]), torch.tensor([-4.0, -2.0])
    loss = dpo_loss(chosen, rejected, chosen.clone(), rejected.clone(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))


def test_dpo_loss_falls_as_the_policy_prefers_the_chosen_answer():
    reference = torch.tensor([-5.0]), torch.tensor([-5.0])
    losses = [
        dpo_loss(torch.tensor([-5.0 + d]), torch.tensor([-5.0 - d]), *reference).item() for d in (0, 1, 3)
    ]
    assert losses[0] > losses[1] > losses[2]
    policy_chosen = torch.tensor([-5.0], requires_grad=True)
    dpo_loss(policy_chosen, torch.tensor([-5.0]), *reference).backward()
    assert policy_chosen.grad.item() < 0  # gradient descent raises the chosen answer's log-prob


def test_reference_logps_disable_the_adapter(tiny_models):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models[0])
    base = AutoModelForCausalLM.from_pretrained(tiny_models[0])
    batch = completion_batch(tokenizer, ["What is 2 times 3?"], [" 6"])
    with torch.no_grad():
        before = sequence_logps(
            base(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits, batch["labels"]
        )
    model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    assert torch.allclose(reference_logps(model, batch), before, atol=1e-5)
    with torch.no_grad():
        adapted = sequence_logps(
            model(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits, batch["labels"]
        )
    assert not torch.allclose(adapted, before, atol=1e-5)


def test_grpo_advantage_is_zero_for_a_group_with_equal_rewards():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])
    advantages = group_advantages(rewards)
    assert torch.equal(advantages[0], torch.zeros(4))
    assert advantages[1].tolist() == pytest.approx([-1.0, 1.0, -1.0, 1.0], abs=1e-4)


def test_grpo_loss_is_minus_the_advantage_at_ratio_one_and_clips():
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    advantages = torch.tensor([1.0, -1.0])
    loss = grpo_loss(logps, logps.detach(), advantages, mask)
    assert loss.item() == pytest.approx(0.0)  # mean of -A over completions: (-1 + 1) / 2
    # a ratio far above 1 + eps with a positive advantage is clipped: no gradient pushes it higher
    pushed = torch.tensor([[0.0]], requires_grad=True)
    grpo_loss(pushed, torch.tensor([[-1.0]]), torch.tensor([1.0]), torch.tensor([[True]])).backward()
    assert pushed.grad.item() == 0.0


def test_grpo_kl_is_zero_at_the_reference_and_positive_away_from_it():
    logps = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    zero = torch.tensor([0.0])
    at_reference = grpo_loss(logps, logps, zero, mask, ref_logps=logps, kl_beta=0.5)
    away = grpo_loss(logps, logps, zero, mask, ref_logps=logps - 1.0, kl_beta=0.5)
    assert at_reference.item() == pytest.approx(0.0) and away.item() > 0


def test_deferral_labels_mark_tokens_only_the_mentor_gets_right():
    from moco_lit.training import deferral_labels

    labels = torch.tensor([[-100, 1, 2, 3, -100]])
    vocab = torch.eye(4)
    # position t predicts token t + 1: the generator is right at 1 and 3, the mentor at 1 and 2
    generator = vocab[[1, 0, 3, 0, 0]][None] * 5
    mentor = vocab[[1, 2, 0, 0, 0]][None] * 5
    assert deferral_labels(generator, mentor, labels).tolist() == [[0, 1, 0, -100]]


def test_deferral_marginal_loss_is_the_mixture_likelihood():
    from moco_lit.training import deferral_marginal_loss

    deferral = torch.tensor([[0.3, -1.0]])
    own = torch.tensor([[math.log(0.5), math.log(0.1)]])
    mentor = torch.tensor([[math.log(0.2), math.log(0.9)]])
    mask = torch.tensor([[True, True]])
    p = torch.sigmoid(deferral)
    by_hand = -torch.log((1 - p) * own.exp() + p * mentor.exp()).mean()
    assert torch.allclose(deferral_marginal_loss(deferral, own, mentor, mask), by_hand)
    # a masked position does not count
    masked = deferral_marginal_loss(deferral, own, mentor, torch.tensor([[True, False]]))
    assert torch.allclose(masked, -torch.log((1 - p[0, 0]) * 0.5 + p[0, 0] * 0.2))
    # its gradient raises the deferral logit only where the mentor explains the token better
    deferral.requires_grad_(True)
    deferral_marginal_loss(deferral, own, mentor, mask).backward()
    assert deferral.grad[0, 0] > 0 and deferral.grad[0, 1] < 0


def test_grpo_advantages_scale_by_group_batch_or_nothing():
    rewards = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    assert group_advantages(rewards, scale="none").tolist() == [[-1.0, 1.0], [0.0, 0.0]]
    assert group_advantages(rewards, scale="group")[0].tolist() == pytest.approx([-1.0, 1.0], abs=1e-5)
    batch_std = rewards.std(unbiased=False).item()  # sqrt(1/2)
    assert group_advantages(rewards, scale="batch")[0].tolist() == pytest.approx(
        [-1.0 / batch_std, 1.0 / batch_std], abs=1e-5
    )
