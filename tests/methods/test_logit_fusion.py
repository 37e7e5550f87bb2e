"""logit_fusion: end to end on tiny models, one fused decoding per example, and the vocabulary error."""

from __future__ import annotations

from moco_lit.cli import main
from tests.conftest import collaborators_arg, run_records
from tests.test_decoding import build_model


def test_logit_fusion_runs_on_tiny_models(run_cli, tiny_models):
    args = [
        "test",
        "--model",
        "logit_fusion",
        "--model.collaborators",
        collaborators_arg(tiny_models),
        "--model.max_new_tokens",
        "6",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "4",
    ]
    code, cli = run_cli(*args)
    assert code == 0
    records = run_records(cli)
    assert len(records) == 4
    # one call per collaborator per example; every model read its prompt and the fused tokens
    assert all(r["calls"] == 3 for r in records)
    assert all(r["details"]["new_tokens"] <= 6 for r in records)
    assert all(r["answered_by"] == ["tiny0", "tiny1", "tiny2"] for r in records)
    # MoCo's decoding for logit methods: multinomial sampling at 0.7 with no nucleus cut
    assert (cli.model.decoding.temperature, cli.model.decoding.top_p) == (0.7, 1.0)
    stats = cli.model.engine.stats
    assert stats.calls == 0  # nothing went through single-model generation
    # a rerun answers from the generation cache: same outputs
    code, again = run_cli(*args, "--run_id", "rerun")
    assert [r["output"] for r in run_records(again)] == [r["output"] for r in records]


def test_different_vocabularies_give_a_clear_error(tiny_models, tmp_path, capsys):
    # the shared other_vocab_model fixture currently ends up with tiny_models' vocabulary (the
    # corpus caps both tokenizers at 306 tokens): 280 tokens is a truly different one
    other = build_model(tmp_path / "tiny_other", 280, seed=7, spread=0.02)
    code = main(
        [
            "test",
            "--model",
            "logit_fusion",
            "--model.collaborators",
            collaborators_arg([tiny_models[0], other]),
            "--data.benchmark",
            "quickstart",
            "--data.limit",
            "2",
            "--run_dir",
            str(tmp_path / "runs"),
            "--progress",
            "false",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "different vocabularies" in err and "'tiny0'" in err and "'tiny_other'" in err
