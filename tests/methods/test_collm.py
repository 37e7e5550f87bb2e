"""collm: the training pipeline under fit (a training file or the dev split; the whole generator or
the deferral weights alone), test from its checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from moco_lit.cli import main
from moco_lit.methods.api.collm import load_training_rows
from tests.conftest import collaborators_arg, run_records
from tests.test_decoding import lively_models  # noqa: F401  (fixture)


def _args(collaborators: list[str], *extra: str) -> list[str]:
    return [
        "--model",
        "collm",
        "--model.collaborators",
        collaborators_arg(collaborators),
        "--model.max_new_tokens",
        "8",
        "--model.init_steps",
        "20",
        "--model.max_seq_length",
        "256",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
        "--data.dev_limit",
        "6",
        *extra,
    ]


@pytest.mark.parametrize("train_generator", [True, False])
def test_fit_trains_then_tests_from_its_checkpoint(run_cli, lively_models, train_generator):  # noqa: F811
    args = _args(
        lively_models[:2],
        "--model.threshold_warmup_schedule",
        "linear",
        "--model.training_data",
        "null",
        "--model.train_generator",
        str(train_generator).lower(),
        "--model.learning_rate",
        "1e-3",
    )
    _, fitted = run_cli("fit", *args, "--trainer.max_epochs", "2")
    model = fitted.model
    assert len(model.rows) == 6  # the dev split's prompts and reference answers
    first = model.rows[0]
    answer = model.collaborators[0].tokenizer.decode(first["input_ids"][first["labels"] != -100])
    assert answer.startswith("30")
    trained = model.head.weight.detach().clone()
    assert "train/marginal_nll" in fitted.trainer.logged_metrics
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    saved = torch.load(checkpoint, weights_only=False)["state_dict"]
    assert set(k for k in saved if k.startswith("head.")) == {"head.weight"}
    assert not any(k.startswith("collaborators") for k in saved)
    assert any(k.startswith("generator_model.") for k in saved) == train_generator
    if train_generator:  # the generator itself moved
        name, weight = next(
            (k, v) for k, v in saved.items() if k.startswith("generator_model.") and v.dim() == 2
        )
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(lively_models[0]).state_dict()
        assert not torch.equal(weight.float(), base[name.removeprefix("generator_model.")].float())
    code, tested = run_cli("test", *args, "--ckpt_path", checkpoint)
    assert code == 0
    torch.testing.assert_close(tested.model.head.weight, trained)
    records = run_records(tested)
    assert len(records) == 3
    for record in records:
        assert 0 <= record["details"]["deferred_tokens"] <= 8
        assert 0 <= record["details"]["mean_deferral_prob"] <= 1


def test_fit_on_a_training_file(run_cli, lively_models, tmp_path):  # noqa: F811
    data = tmp_path / "train.jsonl"
    rows = [{"problem": f"What is {i} plus 1?", "solution": str(i + 1)} for i in range(5)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    _, fitted = run_cli(
        "fit", *_args(lively_models[:2], "--model.training_data", str(data), "--model.training_num", "4")
    )
    assert [solution for _, solution in fitted.model.training_examples()] == ["1", "2", "3", "4"]
    assert len(fitted.model.rows) == 4
    assert load_training_rows(str(data), "train") == rows
    assert load_training_rows(str(data), "train", 2) == rows[:2]


def test_test_without_training_and_mixed_vocabularies_stop_cleanly(
    tiny_models, other_vocab_model, capsys, tmp_path
):
    untrained = ["test", *_args(tiny_models[:2]), "--run_dir", str(tmp_path / "runs")]
    assert main(untrained) == 2
    assert "collm is not trained" in capsys.readouterr().err
    mixed = ["test", *_args([tiny_models[0], other_vocab_model]), "--run_dir", str(tmp_path / "runs")]
    assert main(mixed) == 2
    assert "different vocabularies" in capsys.readouterr().err
