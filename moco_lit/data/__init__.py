"""Benchmarks: the registry, their sources (MoCo files, JSONL, the Hub), prompts and the DataModule."""

# commands.fetch (the `data fetch SOURCE` dispatcher) is not re-exported: it would hide the fetch module.
from moco_lit.data.commands import format_benchmark_table, list_benchmarks
from moco_lit.data.datamodule import BenchmarkDataModule, ShardSampler, collate_examples
from moco_lit.data.fetch import fetch_modelco
from moco_lit.data.hub import HUB_LOADERS, load_hub_benchmark
from moco_lit.data.prompts import TEMPLATES, render_prompt
from moco_lit.data.registry import BENCHMARKS, TASK_TYPES, BenchmarkInfo, get_benchmark
from moco_lit.data.sources import (
    SPLITS,
    Benchmark,
    load_benchmark,
    modelco_cache_dir,
    read_benchmark_file,
    read_jsonl,
    read_moco_json,
    validate_records,
)

__all__ = [
    "BENCHMARKS",
    "HUB_LOADERS",
    "SPLITS",
    "TASK_TYPES",
    "TEMPLATES",
    "Benchmark",
    "BenchmarkDataModule",
    "BenchmarkInfo",
    "ShardSampler",
    "collate_examples",
    "fetch_modelco",
    "format_benchmark_table",
    "get_benchmark",
    "list_benchmarks",
    "load_benchmark",
    "load_hub_benchmark",
    "modelco_cache_dir",
    "read_benchmark_file",
    "read_jsonl",
    "read_moco_json",
    "render_prompt",
    "validate_records",
]
