"""switch_generation: end to end with a given selector (followed patch by patch, mixed tokenizers)
and with a selector trained from dev rollouts (fit, then test from its checkpoint)."""

from __future__ import annotations

import torch

from moco_lit.methods.api.switch_generation import SEGMENT_LINE, _model_number, selector_prompt
from tests.conftest import collaborators_arg, run_records
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
        "12",
        "--model.temperature",
        "0",  # greedy: the patch counts below assume the models' most likely tokens
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


def _runs(segments: list[list]) -> list[str]:
    return [name for name, text in segments if text]


def test_the_selectors_choice_is_followed_patch_by_patch(run_cli, lively_models):  # noqa: F811
    code, cli = run_cli("test", *_args(lively_models[:2], "--model.selector_model", ALTERNATE))
    assert code == 0
    names = ["lively0", "lively1"]
    for record in run_records(cli):
        details = record["details"]
        writers = details["writers"]
        assert writers == [names[i % 2] for i in range(len(writers))] and len(writers) >= 2
        assert "".join(text for _, text in details["segments"]).strip() == record["output"]
        # the joint text is made of the chosen writers' patches, in turn
        runs = _runs(details["segments"])
        assert runs == [w for w in writers if w in runs][: len(runs)]
        assert record["calls"] == 2 + len(writers)  # one joint call per model + one selector call per patch


def test_a_selector_that_always_names_one_model_leaves_it_alone(run_cli, lively_models):  # noqa: F811
    code, cli = run_cli("test", *_args(lively_models[:2], "--model.selector_model", SECOND))
    for record in run_records(cli):
        assert set(record["details"]["writers"]) == {"lively1"}
        assert _runs(record["details"]["segments"]) in (["lively1"], [])


def test_mixed_tokenizers_produce_valid_text(run_cli, lively_models, other_tokenizer_model):  # noqa: F811
    mixed = [lively_models[0], other_tokenizer_model]
    code, cli = run_cli("test", *_args(mixed, "--model.selector_model", ALTERNATE))
    assert code == 0
    records = run_records(cli)
    assert len(records) == 3
    for record in records:
        assert record["output"] and len(record["details"]["writers"]) >= 2
        assert "".join(text for _, text in record["details"]["segments"]).strip() == record["output"]
    assert any(len(set(_runs(r["details"]["segments"]))) == 2 for r in records)


def test_trained_selector_fits_on_rollouts_then_tests_from_its_checkpoint(
    run_cli,
    lively_models,  # noqa: F811
    tiny_models,
):
    train = _args(
        lively_models[:2],
        "--model.selector_base_model",
        tiny_models[0],
        "--model.training_instance_num",
        "3",
        "--model.rollout_per_instance",
        "2",
    )
    _, fitted = run_cli("fit", *train, "--trainer.max_epochs", "3")
    model = fitted.model
    assert len(model._labels) == 3 and model._features.shape[0] == 3
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    saved = torch.load(checkpoint, weights_only=False)
    assert any(key.startswith("head.") for key in saved["state_dict"])
    code, tested = run_cli("test", *train, "--ckpt_path", checkpoint)
    assert code == 0
    torch.testing.assert_close(tested.model.head[-1].weight, model.head[-1].weight)
    records = run_records(tested)
    assert len(records) == 3 and all(len(r["details"]["writers"]) >= 1 for r in records)
    assert all(r["calls"] == 2 for r in records)  # the trained head is not an LM call


def test_selector_prompt_and_reply_parsing():
    import random

    prompt = selector_prompt("Q?", [(0, "a"), (1, "b")], 3)
    assert SEGMENT_LINE.format(model=1, text="b") in prompt and "from 0 to 2" in prompt
    assert _model_number("model 2", 3, random.Random(0)) == 2
    assert _model_number("model 7, no: 1", 3, random.Random(0)) == 1
    assert _model_number("none", 3, random.Random(0)) in (0, 1, 2)
