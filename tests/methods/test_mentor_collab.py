"""mentor_collab: end to end (free and trained MLP, word and token steps, both judges, mixed
tokenizers), two collaborators only, branches only where the models' next steps differ, the MLP's
threshold (on the probability that the generator's continuation is better, as MoCo's)."""

from __future__ import annotations

import torch

from moco_lit.cli import main
from moco_lit.collaborators import Collaborator, CollaboratorSpec, RawText, load_collaborator
from moco_lit.decoding import JointDecoder
from moco_lit.generation import DecodingConfig
from moco_lit.methods.api.mentor_collab import BranchMLP, MentorCollab, MentorRule, tokens_agree
from tests.conftest import collaborators_arg, run_records
from tests.test_decoding import PROMPTS, lively_models, other_tokenizer_model  # noqa: F401  (fixtures)


def _args(collaborators: list[str], *extra: str) -> list[str]:
    return [
        "--model",
        "mentor_collab",
        "--model.collaborators",
        collaborators_arg(collaborators),
        "--model.max_new_tokens",
        "12",
        "--model.patch_size",
        "4",
        "--model.decision_proportion",
        "60",
        "--data.benchmark",
        "quickstart",
        "--data.limit",
        "3",
        "--data.dev_limit",
        "4",
        *extra,
    ]


def _check_records(records: list[dict], mode: str, judge: str = "continue") -> None:
    assert len(records) == 3
    for record in records:
        details = record["details"]
        assert details["mode"] == mode
        assert "".join(text for _, text in details["segments"]).strip() == record["output"]
        assert 0 <= details["mentor_patches"] <= details["decisions"]
        # one joint call per model, plus one judge request per branch point with judge: ask
        judged = details["decisions"] > 0 and mode == "free" and judge == "ask"
        assert record["calls"] >= 2 + judged


def test_free_mode_runs_on_tiny_models(run_cli, tiny_models):
    code, cli = run_cli("test", *_args(tiny_models[:2]))
    assert code == 0
    _check_records(run_records(cli), "free")


def test_token_steps_with_the_separate_judge_request(run_cli, lively_models):  # noqa: F811
    extra = ("--model.steps", "token", "--model.judge", "ask", "--model.decision_proportion", "100")
    code, cli = run_cli("test", *_args(lively_models[:2], *extra))
    assert code == 0
    records = run_records(cli)
    _check_records(records, "free", judge="ask")
    assert sum(r["details"]["decisions"] for r in records) > 0


def test_mixed_tokenizers_produce_valid_text(run_cli, lively_models, other_tokenizer_model):  # noqa: F811
    # lively models: the fixtures' fresh tiny models all write the same token, so never differ
    mixed = [lively_models[0], other_tokenizer_model]
    code, cli = run_cli("test", *_args(mixed, "--model.decision_proportion", "100"))
    records = run_records(cli)
    assert code == 0
    _check_records(records, "free")
    assert sum(r["details"]["decisions"] for r in records) > 0


def test_needs_exactly_two_collaborators(tiny_models, capsys, tmp_path):
    argv = ["test", *_args(tiny_models), "--run_dir", str(tmp_path / "runs")]
    assert main(argv) == 2
    assert "exactly 2 collaborators, got 3" in capsys.readouterr().err


def test_train_mode_fits_the_mlp_then_tests_from_its_checkpoint(run_cli, lively_models):  # noqa: F811
    train = _args(
        lively_models[:2],
        "--model.mode",
        "train",
        "--model.mlp",
        "trained",
        "--model.decision_proportion",
        "100",
    )
    _, fitted = run_cli("fit", *train, "--trainer.max_epochs", "3")
    checkpoint = fitted.trainer.checkpoint_callback.best_model_path
    saved = torch.load(checkpoint, weights_only=False)
    assert any(key.startswith("mlp.") for key in saved["state_dict"])
    assert saved["mentor_collab"]["decisions"] > 0
    code, tested = run_cli("test", *train, "--ckpt_path", checkpoint)
    assert code == 0
    torch.testing.assert_close(tested.model.mlp.layers[1].weight, fitted.model.mlp.layers[1].weight)
    _check_records(run_records(tested), "train")


class CheckedRule(MentorRule):
    """Asserts, at every branch point, that the two models' next tokens really differ."""

    def _branch(self, session, rows):
        own = session.next_token_texts(0, rows)
        mentor = session.next_token_texts(1, rows)
        assert not any(tokens_agree(a, b) for a, b in zip(own, mentor))
        self.branches = getattr(self, "branches", 0) + len(rows)
        super()._branch(session, rows)


def _always(mentor: bool):
    return lambda session, rows, own, other, features: [mentor] * len(rows)


def test_branches_only_where_next_tokens_differ(lively_models):  # noqa: F811
    a, b = (load_collaborator(path) for path in lively_models[:2])
    decoding = DecodingConfig(max_new_tokens=20)
    alone = JointDecoder([a, a], decoding).run_batch(
        PROMPTS, CheckedRule(0, 4, _always(True), "k", steps="token"), [0, 1, 2]
    )
    # one model twice: its next tokens always agree, so it never branches and writes alone
    same = CheckedRule(100, 4, _always(True), "k", steps="token")
    assert [o.text for o in JointDecoder([a, a], decoding).run_batch(PROMPTS, same, [0, 1, 2])] == [
        o.text for o in alone
    ]
    assert not hasattr(same, "branches")
    rule = CheckedRule(100, 4, _always(True), "k", steps="token")
    outputs = JointDecoder([a, b], decoding).run_batch(PROMPTS, rule, [0, 1, 2])
    assert rule.branches > 0
    for output in outputs:
        assert output.details["mentor_patches"] == output.details["decisions"]
        authors = [author for author, _ in output.details["segments"]]
        assert (1 in authors) == (output.details["decisions"] > 0)
        assert output.new_tokens <= 20


def test_tokens_agree_across_tokenizations():
    assert tokens_agree(" 12", " 1") and tokens_agree("ab", "ab") and tokens_agree("", "")
    assert not tokens_agree(" 12", " 3") and not tokens_agree("", "x")


def test_mlp_keeps_the_generator_exactly_above_the_threshold(tiny_models):
    module = MentorCollab(tiny_models[:2], mode="train", mlp="trained", mlp_threshold=0.7)
    module.mlp = BranchMLP(6, 4)
    features = torch.randn(5, 6)
    # the MLP gives P(generator's continuation is better): above 0.7 the generator's is kept
    for bias, mentor in ((3.0, False), (0.5, True), (-3.0, True)):  # sigmoid: .95, .62, .05
        with torch.no_grad():
            module.mlp.layers[3].weight.zero_()
            module.mlp.layers[3].bias.fill_(bias)
        assert module._ask_mlp(None, list(range(5)), [], [], features) == [mentor] * 5


def test_raw_prompts_keep_only_the_start_token_the_tokenizer_adds():
    # MoCo tokenises the bare prompt with the tokenizer's own special tokens: a start token if any
    class WithStart:
        bos_token, bos_token_id, chat_template = "<s>", 1, "a template raw prompts skip"

        def __call__(self, text: str) -> dict:
            return {"input_ids": [1, *map(ord, text)]}

    class WithoutStart(WithStart):
        def __call__(self, text: str) -> dict:
            return {"input_ids": list(map(ord, text))}

    spec = CollaboratorSpec("tiny")
    assert Collaborator("tiny", spec, tokenizer=WithStart()).render(RawText("Hi")) == "<s>Hi"
    assert Collaborator("tiny", spec, tokenizer=WithoutStart()).render(RawText("Hi")) == "Hi"
    module = MentorCollab(["a", "b"], prompt="raw")
    assert module.prompts_of([{"prompt": "Hi"}]) == ["Hi"]
    assert isinstance(module.prompts_of([{"prompt": "Hi"}])[0], RawText)


def test_the_generator_judges_greedily_in_two_tokens_whatever_the_method_samples_with():
    """The judge call changes the method's decoding with replace: greedy, two tokens, thinking
    off, while the method itself samples at temperature 0.9 and top_p 0.8."""
    from types import SimpleNamespace

    module = MentorCollab(collaborators=["a", "b"], temperature=0.9, top_p=0.8, max_new_tokens=64)
    asked = {}

    def ask(model, prompts, ids, *, step="", decoding=None):
        asked.update(model=model, ids=ids, step=step, decoding=decoding)
        return [SimpleNamespace(text="B") for _ in prompts]

    module.ask = ask
    module._ids_by_prompt = {repr("question"): "q0"}
    patch = SimpleNamespace(text="x")
    session = SimpleNamespace(prompts=["question"], texts=["so far"])
    assert module._ask_generator(session, [0], [patch], [patch], None) == [True]
    assert asked["decoding"] == DecodingConfig(
        max_new_tokens=2, temperature=0.0, top_p=1.0, enable_thinking=False
    )
    assert (asked["model"], asked["ids"], asked["step"]) == (0, ["q0"], "judge")
    assert module.decoding.temperature == 0.9 and module.decoding.top_p == 0.8
