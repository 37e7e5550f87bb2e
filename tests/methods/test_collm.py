"""collm: the training pipeline under fit (dev split or a training file), test from its checkpoint."""

from __future__ import annotations

import json

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
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
        "--data.dev_limit",
        "6",
        *extra,
    ]


def test_fit_trains_the_deferral_head_then_tests_from_its_checkpoint(run_cli, lively_models):  # noqa: F811
    args = _args(lively_models[:2], "--model.threshold_warmup_schedule", "linear")
    _, fitted = run_cli("fit", *args, "--trainer.max_epochs", "2")
    model = fitted.model
    assert len(model.pairs) == 6 and model.pairs[0][1] == "30"  # dev prompt + reference answer
    trained = model.head.weight.detach().clone()
    assert "train/marginal_nll" in fitted.trainer.logged_metrics
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    saved = torch.load(checkpoint, weights_only=False)
    assert set(k for k in saved["state_dict"] if k.startswith("head.")) == {"head.weight", "head.bias"}
    assert not any(k.startswith("collaborators") for k in saved["state_dict"])  # the head only
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
    assert [completion for _, completion in fitted.model.pairs] == ["1", "2", "3", "4"]
    assert load_training_rows(str(data), "train") == rows


def test_test_without_training_and_mixed_vocabularies_stop_cleanly(
    tiny_models, other_vocab_model, capsys, tmp_path
):
    untrained = ["test", *_args(tiny_models[:2]), "--run_dir", str(tmp_path / "runs")]
    assert main(untrained) == 2
    assert "collm is not trained" in capsys.readouterr().err
    mixed = ["test", *_args([tiny_models[0], other_vocab_model]), "--run_dir", str(tmp_path / "runs")]
    assert main(mixed) == 2
    assert "different vocabularies" in capsys.readouterr().err
