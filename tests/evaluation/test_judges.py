"""Judge models, exercised with tiny local models built in conftest.py."""

import gc
import math
import weakref

import pytest
import torch

from moco_lit.errors import UserError
from moco_lit.evaluation.judges import (
    EmbeddingJudge,
    RewardModelJudge,
    VerifierJudge,
    clear_judges,
    parse_verdict,
)

PROMPTS = ["what is the capital of france", "what is the answer"]
RESPONSES = ["paris", "the answer is no no no"]


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_judges()
    yield
    clear_judges()


def test_reward_for_each_pair_independent_of_batching(tiny_reward_model):
    judge = RewardModelJudge.load(tiny_reward_model, batch_size=2)
    batched = judge.score(PROMPTS, RESPONSES)
    assert len(batched) == 2 and all(math.isfinite(r) for r in batched)
    single = [judge.score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES)]
    assert batched == pytest.approx(single, abs=1e-5)  # right padding does not move the reward
    assert batched[0] != pytest.approx(batched[1])


def test_reward_model_uses_the_chat_template_when_there_is_one(tiny_reward_model):
    judge = RewardModelJudge(tiny_reward_model)
    plain = judge.score(PROMPTS[:1], RESPONSES[:1])
    judge.tokenizer.chat_template = "{% for m in messages %}[BOS] {{ m['content'] }} [EOS] {% endfor %}"
    assert judge._conversation_text("q", "r") == ("[BOS] q [EOS] [BOS] r [EOS] ", True)
    templated = judge.score(PROMPTS[:1], RESPONSES[:1])
    assert templated != pytest.approx(plain)


def test_judges_are_loaded_once_per_model_and_device(tiny_reward_model):
    first = RewardModelJudge.load(tiny_reward_model)
    assert RewardModelJudge.load(tiny_reward_model) is first
    assert RewardModelJudge.load(tiny_reward_model, device=torch.device("cpu")) is first


def test_a_fetched_short_name_is_the_same_judge_as_its_folder(tiny_reward_model):
    import shutil

    from moco_lit.models import CONVERSION_RECORD, model_dir, write_manifest

    folder = model_dir("smollm2-135m-instruct")  # in this test's own cache root
    shutil.copytree(tiny_reward_model, folder)
    (folder / CONVERSION_RECORD).write_text("{}")  # as a fetch leaves it: every file listed
    write_manifest(folder)
    judge = RewardModelJudge.load("smollm2-135m-instruct")
    assert judge.model_name == str(folder) and RewardModelJudge.load(str(folder)) is judge
    assert RewardModelJudge.is_loaded("smollm2-135m-instruct")
    with pytest.raises(UserError, match="models fetch gemma3-270m"):
        RewardModelJudge.load("gemma3-270m")  # known but not fetched: says what to run


def test_release_drops_the_judge_from_the_cache_and_frees_its_model(tiny_reward_model):
    judge = RewardModelJudge.load(tiny_reward_model)
    weights = weakref.ref(judge.model)
    judge.release()
    gc.collect()
    assert not RewardModelJudge.is_loaded(tiny_reward_model) and judge.model is None
    assert weights() is None  # nothing else held the model
    reloaded = RewardModelJudge.load(tiny_reward_model)
    assert reloaded is not judge and reloaded.score(PROMPTS[:1], RESPONSES[:1])


def test_a_phase_judge_is_released_unless_it_was_loaded_before(tiny_reward_model):
    with RewardModelJudge.for_phase(tiny_reward_model, batch_size=2) as judge:
        assert RewardModelJudge.is_loaded(tiny_reward_model) and len(judge.score(PROMPTS, RESPONSES)) == 2
    assert not RewardModelJudge.is_loaded(tiny_reward_model) and judge.model is None
    kept = RewardModelJudge.load(tiny_reward_model)  # e.g. the benchmark's scorer
    with RewardModelJudge.for_phase(tiny_reward_model) as judge:
        assert judge is kept
    assert RewardModelJudge.load(tiny_reward_model) is kept and kept.model is not None


def test_unloadable_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="judge model"):
        RewardModelJudge(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("Reasoning... Final Decision: Yes", 1.0),
        ("Final Decision: **No**", 0.0),
        ("final decision: no ... Final Decision: yes", 1.0),
        ("yes yes", 1.0),
        ("Not equivalent.", 0.0),
        ("", 0.0),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_verifier_reads_yes_and_no(yes_verifier, no_verifier):
    args = (["what is the capital of france"] * 3, ["paris"] * 3, ["paris", "london", ""])
    yes = VerifierJudge.load(yes_verifier, batch_size=2, max_new_tokens=3)
    assert yes.judge(*args)[0].split()[0] == "yes"
    assert yes.verify(*args) == [1.0, 1.0, 1.0]
    no = VerifierJudge.load(no_verifier, batch_size=2, max_new_tokens=3)
    assert no.verify(*args) == [0.0, 0.0, 0.0]


def test_embedding_diversity(tiny_encoder):
    judge = EmbeddingJudge.load(tiny_encoder, batch_size=2)
    vectors = judge.embed(["paris", "the capital of france is paris", "no"])
    assert vectors.shape == (3, 16)
    # Mean pooling skips padding: a text embeds the same alone and in a padded batch.
    assert torch.allclose(judge.embed(["paris"])[0], vectors[0], atol=1e-5)
    scores = judge.diversity(
        ["the capital is paris", "london", "yes"], [["the capital is paris"], ["paris", "no"], []]
    )
    assert scores[0] == pytest.approx(0.0, abs=1e-5)
    assert 0.0 < scores[1] <= 2.0
    assert math.isnan(scores[2])
