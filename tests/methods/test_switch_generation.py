"""switch_generation: a given selector's choice followed patch by patch, the joint-decoding variant
across mixed tokenizers, and the trained selectors (MoCo's LoRA-tuned causal LM on reward-model
labels, and the encoder head on task-metric labels): fit, then test from the checkpoint."""

from __future__ import annotations

import pytest
import torch

from moco_lit.errors import UserError
from moco_lit.methods.api.switch_generation import (
    END_MARK,
    SEGMENT_LINE,
    SwitchGeneration,
    Turns,
    selector_prompt,
    writer_number,
)
from tests.conftest import collaborators_arg, run_records
from tests.evaluation.conftest import tiny_reward_model  # noqa: F401  (fixture)
from tests.test_decoding import lively_models, other_tokenizer_model  # noqa: F401  (fixtures)

ALTERNATE = "callable:tests.methods.test_switch_generation.alternate"
SECOND = "callable:tests.methods.test_switch_generation.second"


def alternate(rendered: str) -> str:
    """A scripted selector: model 0, then 1, then 0, ... (one segment line per patch so far)."""
    return str(rendered.count("[model ") % 2)


def second(rendered: str) -> str:
    return "The answer is model 1."


def _args(collaborators: list[str], *extra: str) -> list[str]:
    return [
        "--model",
        "switch_generation",
        "--model.collaborators",
        collaborators_arg(collaborators),
        "--model.max_new_tokens",
        "16",
        "--model.temperature",
        "0",
        "--model.patch_size",
        "4",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
        "--data.dev_limit",
        "4",
        *extra,
    ]


def test_the_selectors_choice_is_followed_patch_by_patch(run_cli, lively_models):  # noqa: F811
    code, cli = run_cli("test", *_args(lively_models[:2], "--model.selector_model", ALTERNATE))
    assert code == 0
    for record in run_records(cli):
        details = record["details"]
        assert details["writers"] == ["lively0", "lively1", "lively0", "lively1"]  # 16 // 4 patches
        joined = " ".join(text for _, text in details["segments"])
        assert record["output"] == joined.split(END_MARK)[0].strip()
        assert record["calls"] == 8  # a selector call and a writer call per patch


def test_a_selector_that_always_names_one_model_leaves_it_alone(run_cli, lively_models):  # noqa: F811
    code, cli = run_cli("test", *_args(lively_models[:2], "--model.selector_model", SECOND))
    for record in run_records(cli):
        assert set(record["details"]["writers"]) == {"lively1"}


def test_joint_patching_passes_the_answer_across_tokenizers(run_cli, lively_models, other_tokenizer_model):  # noqa: F811
    mixed = [lively_models[0], other_tokenizer_model]
    code, cli = run_cli(
        "test", *_args(mixed, "--model.selector_model", ALTERNATE, "--model.patching", "joint")
    )
    assert code == 0
    records = run_records(cli)
    assert len(records) == 3
    for record in records:
        assert record["output"] and len(record["details"]["writers"]) >= 2
        assert "".join(text for _, text in record["details"]["segments"]).strip() == record["output"]


def test_lora_selector_fits_on_reward_model_labels_then_tests_from_its_checkpoint(
    run_cli,
    lively_models,  # noqa: F811
    tiny_models,
    tiny_reward_model,  # noqa: F811
):
    train = _args(
        lively_models[:2],
        "--model.selector_base_model",
        tiny_models[0],
        "--model.selector_max_new_tokens",
        "3",
        "--model.rollout_reward_model",
        tiny_reward_model,
        "--model.training_instance_num",
        "3",
        "--model.generation_batch_size",
        "2",
        "--model.rollout_per_instance",
        "2",
        "--model.learning_rate",
        "1e-2",
    )
    _, fitted = run_cli("fit", *train, "--trainer.max_epochs", "2")
    model = fitted.model
    # 3 // 2 rounds of 2 dev questions: 2 labelled rollout states
    assert len(model.sft_rows) == 2 and all(row["completion"] in ("0", "1") for row in model.sft_rows)
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    saved = torch.load(checkpoint, weights_only=False)["state_dict"]
    assert saved and all("lora_" in key for key in saved if key.startswith("selector_lm."))
    assert any(key.startswith("selector_lm.") for key in saved)
    base = model.selector_lm.get_base_model()
    lora = {n: p.detach().clone() for n, p in model.selector_lm.named_parameters() if p.requires_grad}
    assert any(float(p.abs().sum()) > 0 for n, p in lora.items() if "lora_B" in n)  # it trained
    code, tested = run_cli("test", *train, "--ckpt_path", checkpoint)
    assert code == 0
    reloaded = dict(tested.model.selector_lm.named_parameters())
    for name, value in lora.items():
        torch.testing.assert_close(reloaded[name], value)
    assert base is not tested.model.selector_lm.get_base_model()
    records = run_records(tested)
    assert len(records) == 3 and all(len(r["details"]["writers"]) == 4 for r in records)
    assert all(r["calls"] == 8 for r in records)  # the tuned selector is asked before each patch


def test_encoder_selector_trains_a_head_on_task_metric_labels(run_cli, lively_models, tiny_models):  # noqa: F811
    train = _args(
        lively_models[:2],
        "--model.selector",
        "encoder",
        "--model.selector_encoder",
        tiny_models[0],
        "--model.rollout_reward_model",
        "null",
        "--model.training_instance_num",
        "4",
        "--model.generation_batch_size",
        "2",
        "--model.rollout_per_instance",
        "2",
    )
    _, fitted = run_cli("fit", *train, "--trainer.max_epochs", "2")
    assert fitted.model.selector_lm is None and fitted.model._features.shape[0] == 4
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    code, tested = run_cli("test", *train, "--ckpt_path", checkpoint)
    torch.testing.assert_close(tested.model.head[-1].weight, fitted.model.head[-1].weight)
    assert all(r["calls"] == 4 for r in run_records(tested))  # the head is not an LM call


def test_selector_prompt_reply_reading_and_end_marks():
    prompt = selector_prompt("Q?", [(0, "a"), (1, "b")], 3)
    assert SEGMENT_LINE.format(model=1, text="b") in prompt and "from 0 to 2" in prompt
    assert writer_number("model 2", 3) == 2
    assert writer_number("between 0 and 2, say 1", 3) == 2  # the highest number named
    assert writer_number("none", 3) is None
    turns = Turns("Q?")
    turns.add(0, "short")
    turns.mark(END_MARK)
    turns.add(1, "more text")
    assert turns.output() == "short" and turns.segments[0] == (0, "short" + END_MARK)


def test_bad_patch_settings_are_one_clear_error():
    with pytest.raises(UserError, match="max_new_tokens // patch_size >= 4"):
        SwitchGeneration(["a", "b"], patch_size=8, max_new_tokens=16)
    SwitchGeneration(["a", "b"], patch_size=8, max_new_tokens=16, selector_model="a")  # nothing to train
    with pytest.raises(UserError, match="at least patch_size"):
        SwitchGeneration(["a", "b"], patch_size=32, max_new_tokens=16, selector_model="a")
