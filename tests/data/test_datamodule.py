from __future__ import annotations

from pathlib import Path

import pytest

from moco_lit.data import datamodule as dm_module
from moco_lit.data.datamodule import BenchmarkDataModule, ShardSampler, collate_examples
from moco_lit.errors import UserError


@pytest.mark.parametrize(("num_examples", "world_size"), [(0, 2), (1, 2), (7, 2), (10, 3), (5, 8)])
def test_shard_sampler_covers_every_example_exactly_once(num_examples: int, world_size: int) -> None:
    shards = [list(ShardSampler(num_examples, rank, world_size)) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(num_examples))
    assert [len(ShardSampler(num_examples, r, world_size)) for r in range(world_size)] == [
        len(s) for s in shards
    ]


def test_shard_sampler_rank_order_and_bad_rank() -> None:
    assert list(ShardSampler(7, 1, 2)) == [1, 3, 5]
    with pytest.raises(ValueError):
        ShardSampler(3, 2, 2)


def test_stages_serve_the_right_split(mc_file: Path) -> None:
    module = BenchmarkDataModule(benchmark=str(mc_file), batch_size=2)
    module.setup("fit")
    assert (module.name, module.task_type) == ("tiny_mc", "multiple_choice")
    ids = {
        stage: [example["id"] for batch in getattr(module, f"{stage}_dataloader")() for example in batch]
        for stage in ("train", "val", "test", "predict")
    }
    assert ids["train"] == ids["val"] == ["0", "1", "2"]
    assert ids["test"] == ids["predict"] == ["10", "11", "12", "13", "14"]
    batch = next(iter(module.test_dataloader()))
    assert len(batch) == 2 and set(batch[0]) == {"id", "benchmark", "task_type", "prompt", "record"}
    assert batch[0]["benchmark"] == "tiny_mc" and batch[0]["record"]["answer"] == "A"
    assert "A) one" in batch[0]["prompt"]


def test_limits_and_records_by_id(mc_file: Path) -> None:
    module = BenchmarkDataModule(benchmark=str(mc_file), limit=2)
    assert [e["id"] for e in module.examples("test")] == ["10", "11"]
    assert [e["id"] for e in module.examples("dev")] == ["0", "1"]  # dev_limit defaults to limit
    module = BenchmarkDataModule(benchmark=str(mc_file), limit=4, dev_limit=1)
    assert list(module.records_by_id("dev")) == ["0"] and list(module.records_by_id("test")) == [
        "10",
        "11",
        "12",
        "13",
    ]


def test_a_limit_below_one_is_a_share_of_the_split(mc_file: Path) -> None:
    module = BenchmarkDataModule(benchmark=str(mc_file), limit=0.4, dev_limit=0.5)
    assert [e["id"] for e in module.examples("test")] == ["10", "11"]  # int(5 * 0.4)
    assert [e["id"] for e in module.examples("dev")] == ["0"]  # int(3 * 0.5)
    assert [e["id"] for e in BenchmarkDataModule(benchmark=str(mc_file), limit=0.01).examples("test")] == [
        "10"
    ]
    assert len(BenchmarkDataModule(benchmark=str(mc_file), limit=3.0).examples("test")) == 3
    with pytest.raises(UserError, match="a share below 1"):
        BenchmarkDataModule(limit=2.5)


def test_hyperparameters_are_saved(mc_file: Path) -> None:
    module = BenchmarkDataModule(benchmark=str(mc_file), batch_size=4, synthetic_seed=3)
    assert (
        module.hparams.benchmark == str(mc_file)
        and module.hparams.batch_size == 4
        and module.hparams.synthetic_seed == 3
    )


def test_bad_arguments_fail_early() -> None:
    with pytest.raises(UserError, match="limit"):
        BenchmarkDataModule(limit=-1)
    with pytest.raises(UserError, match="batch_size"):
        BenchmarkDataModule(batch_size=0)


def test_distributed_run_uses_the_shard_sampler(mc_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dm_module, "_distributed_rank_and_world", lambda: (1, 2))
    module = BenchmarkDataModule(benchmark=str(mc_file), batch_size=10)
    loader = module.test_dataloader()
    assert isinstance(loader.sampler, ShardSampler)
    assert [e["id"] for batch in loader for e in batch] == ["11", "13"]


def test_collate_keeps_the_list() -> None:
    batch = [{"id": "1"}, {"id": "2"}]
    assert collate_examples(batch) is batch


def test_quickstart_default_resolves_when_synthetic_exists() -> None:
    pytest.importorskip("moco_lit.data.synthetic")
    module = BenchmarkDataModule(limit=3)
    assert len(module.examples("test")) == 3 and module.name == "quickstart"


def test_fewshot_examples_come_from_dev_with_their_answers(mc_file: Path) -> None:
    module = BenchmarkDataModule(benchmark=str(mc_file), num_fewshot=2)
    prompt = module.examples("test")[0]["prompt"]
    assert prompt.count("Answer: B\nAnswer: B") == 2 and prompt.index("Question 0?") < prompt.index(
        "Question 1?"
    )
    assert prompt.endswith(BenchmarkDataModule(benchmark=str(mc_file)).examples("test")[0]["prompt"])
    # a dev example is never its own shot
    dev = module.examples("dev")[0]["prompt"]
    assert "Question 0?" in dev.rsplit("Now the task to solve.", 1)[1] and dev.count("Question 0?") == 1
    with pytest.raises(UserError, match="only 3 solved examples"):
        BenchmarkDataModule(benchmark=str(mc_file), num_fewshot=4).examples("test")


def test_boxed_tasks_show_boxed_answers_and_a_template_wraps_the_prompt() -> None:
    module = BenchmarkDataModule(
        benchmark="quickstart", num_fewshot=1, prompt_template="[{id}] {prompt}", limit=1
    )
    example = module.examples("test")[0]
    assert example["prompt"].startswith(f"[{example['id']}] Here are solved examples")
    assert "\\boxed{" in example["prompt"]
    with pytest.raises(UserError, match="must contain {prompt}"):
        BenchmarkDataModule(prompt_template="no slot")
    with pytest.raises(UserError, match="not a field of record"):
        BenchmarkDataModule(benchmark="quickstart", prompt_template="{nope} {prompt}", limit=1).examples(
            "test"
        )
