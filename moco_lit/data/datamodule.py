"""``BenchmarkDataModule``: a benchmark's dev and test splits as Lightning dataloaders.

Examples are plain dicts ``{"id", "benchmark", "task_type", "prompt", "record"}`` and a batch is
a list of them (no tensors: methods turn prompts into tokens themselves). ``fit`` and
``validate`` read dev; ``test`` and ``predict`` read test.

Under DDP every rank takes a disjoint shard (rank r: examples r, r + world, ...) with no padding,
so each example is scored exactly once. Lightning's own ``DistributedSampler`` pads the last
shard with repeats, which would count those examples twice in the metrics; the CLI therefore sets
``trainer.use_distributed_sampler=False``, and so must any script that builds its own Trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from moco_lit.data.prompts import apply_template, render_prompt, shot_answer, with_shots
from moco_lit.data.sources import Benchmark, load_benchmark
from moco_lit.errors import UserError

Example = dict[str, Any]


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of ``num_examples``: disjoint, no padding, in order."""

    def __init__(self, num_examples: int, rank: int, world_size: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of size {world_size}")
        self.num_examples = num_examples
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_examples, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_examples, self.world_size))


def collate_examples(batch: list[Example]) -> list[Example]:
    """Batches stay lists of example dicts."""
    return batch


def _distributed_rank_and_world() -> tuple[int, int] | None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


class BenchmarkDataModule(L.LightningDataModule):
    """Serves one benchmark (by name or path, see ``moco_lit.data.load_benchmark``).

    Args:
        benchmark: a registered name (``python -m moco_lit data list``), ``quickstart``, or a
            path to a MoCo-format ``.json`` / ``.jsonl`` file.
        data_dir: a folder holding ``<benchmark>.json`` / ``.jsonl`` files, searched first.
        ratio: serve only the first ``int(len(split) * ratio)`` examples of dev and of test, as
            MoCo's ``ratio`` hyperparameter does (so a converted MoCo config sees the same
            examples); ``limit`` and ``dev_limit`` then cut further.
        limit: serve only the first ``limit`` test examples (and dev, unless ``dev_limit``); a
            number between 0 and 1 is a share of the split (``0.1``: its first tenth, at least one
            example), as lm-evaluation-harness reads a fractional ``--limit``.
        dev_limit: serve only the first ``dev_limit`` dev examples (a share when below 1).
        batch_size: examples per batch.
        num_workers: dataloader worker processes (0 is right for the small dicts served here).
        task_type: overrides the task type of a file (needed for a JSONL without one).
        num_fewshot: show this many solved dev examples (the first ones, never the example itself)
            before every prompt, each with its answer in the form the prompt asks for.
        prompt_template: wraps every prompt: ``{prompt}`` is the task's prompt (after any shots),
            other ``{fields}`` the record's own (e.g. ``"Be brief.\n\n{prompt}"``).
        synthetic_seed: seed of the synthetic benchmarks; file and Hub splits never depend on it.
    """

    def __init__(
        self,
        benchmark: str = "quickstart",
        data_dir: str | None = None,
        ratio: float | None = None,
        limit: int | float | None = None,
        dev_limit: int | float | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        task_type: str | None = None,
        synthetic_seed: int = 0,
        num_fewshot: int = 0,
        prompt_template: str | None = None,
    ) -> None:
        super().__init__()
        if num_fewshot < 0:
            raise UserError(f"--data.num_fewshot must be >= 0, got {num_fewshot}.")
        if prompt_template is not None and "{prompt}" not in prompt_template:
            raise UserError("--data.prompt_template must contain {prompt}, where the task's prompt goes.")
        for label, value in (("limit", limit), ("dev_limit", dev_limit)):
            if value is not None and value < 0:
                raise UserError(f"--data.{label} must be >= 0, got {value}.")
            if value is not None and value >= 1 and value != int(value):
                raise UserError(
                    f"--data.{label} is a count of examples or a share below 1 (0.25: a quarter), got {value}."
                )
        if ratio is not None and not 0 < ratio <= 1:
            raise UserError(f"--data.ratio must be in (0, 1] (a share of each split), got {ratio}.")
        if batch_size < 1:
            raise UserError(f"--data.batch_size must be >= 1, got {batch_size}.")
        if num_workers < 0:
            raise UserError(
                f"--data.num_workers must be >= 0 (0 loads in the main process), got {num_workers}."
            )
        self.save_hyperparameters()
        self._benchmark: Benchmark | None = None
        self._examples: dict[str, list[Example]] = {}

    # -- the benchmark ------------------------------------------------------------------------

    def _load(self) -> Benchmark:
        if self._benchmark is None:
            self._benchmark = load_benchmark(
                self.hparams.benchmark,
                self.hparams.data_dir,
                self.hparams.task_type,
                self.hparams.synthetic_seed,
            )
        return self._benchmark

    @property
    def benchmark(self) -> Benchmark:
        """The loaded benchmark (loaded and validated on first use)."""
        return self._load()

    @property
    def name(self) -> str:
        return self.benchmark.name

    @property
    def task_type(self) -> str:
        return self.benchmark.task_type

    def setup(self, stage: str | None = None) -> None:
        # load and validate once, so a bad file fails before any model is loaded
        self._load()

    def _limit(self, split: str, size: int) -> int | None:
        """The number of ``split``'s examples to serve, out of ``size``."""
        limit = self.hparams.limit
        if split == "dev" and self.hparams.dev_limit is not None:
            limit = self.hparams.dev_limit
        if limit is None:
            return None
        if 0 < limit < 1:  # a share of the split, at least one example
            return max(1, int(size * limit))
        return int(limit)

    def records(self, split: str) -> list[dict[str, Any]]:
        """The raw records of ``split`` after the ratio and the limit."""
        records = self.benchmark.split(split)
        if self.hparams.ratio is not None:
            # the same cut as MoCo's: int() of the float product, not a rounded share
            records = records[: int(len(records) * self.hparams.ratio)]
        return records[: self._limit(split, len(records))]

    def records_by_id(self, split: str) -> dict[str, dict[str, Any]]:
        """The records of ``split`` (after the limit) keyed by id, for scoring by id."""
        return {record["id"]: record for record in self.records(split)}

    def examples(self, split: str) -> list[Example]:
        """The served examples of ``split``, built once."""
        if split not in self._examples:
            benchmark = self.benchmark
            self._examples[split] = [
                {
                    "id": record["id"],
                    "benchmark": benchmark.name,
                    "task_type": benchmark.task_type,
                    "prompt": self._prompt(record),
                    "record": record,
                }
                for record in self.records(split)
            ]
        return self._examples[split]

    def _prompt(self, record: dict[str, Any]) -> str:
        task_type = self.benchmark.task_type
        prompt = render_prompt(task_type, record)
        count = self.hparams.get("num_fewshot", 0)
        if count:
            prompt = with_shots(prompt, self._shots(record["id"], count))
        template = self.hparams.get("prompt_template")
        return apply_template(template, prompt, record) if template else prompt

    def _shots(self, example_id: Any, count: int) -> list[tuple[str, str]]:
        """The first ``count`` solved dev examples other than ``example_id``."""
        task_type = self.benchmark.task_type
        shots = []
        for record in self.benchmark.split("dev"):
            answer = shot_answer(task_type, record)
            if record["id"] != example_id and answer is not None:
                shots.append((render_prompt(task_type, record), answer))
            if len(shots) == count:
                return shots
        raise UserError(
            f"--data.num_fewshot {count}: the dev split of {self.benchmark.name} has only {len(shots)} "
            "solved examples to show"
        )

    # -- dataloaders --------------------------------------------------------------------------

    def _dataloader(self, split: str) -> DataLoader:
        examples = self.examples(split)
        shard = _distributed_rank_and_world()
        sampler = ShardSampler(len(examples), *shard) if shard else None
        return DataLoader(
            examples,
            batch_size=self.hparams.batch_size,
            shuffle=False,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            collate_fn=collate_examples,
        )

    def train_dataloader(self) -> DataLoader:
        return self._dataloader("dev")

    def val_dataloader(self) -> DataLoader:
        return self._dataloader("dev")

    def test_dataloader(self) -> DataLoader:
        return self._dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._dataloader("test")
