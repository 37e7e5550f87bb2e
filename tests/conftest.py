"""Shared fixtures: tiny models built in-process, an isolated cache root, and a CLI runner.

Tiny models are random Llamas (~0.1M parameters) with a byte-level BPE tokenizer built locally;
``tiny_models`` gives three of them with one shared vocabulary, ``other_vocab_model`` one with a
different vocabulary (for mixed-tokenizer methods and vocabulary errors). Scripted collaborators
(``callable:tests.scripted.NAME``) answer by rule, for behaviours that need control.
"""

from __future__ import annotations

import json
import os
import socket
import string
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parent.parent

# tiny models are faster on one thread: their ops are smaller than the cost of syncing threads
# (the variable keeps the engine's automatic choice, and CLI runs in subprocesses, at one too)
torch.set_num_threads(1)
os.environ.setdefault("MOCO_LIT_THREADS", "1")


def _save_tiny(folder: Path, vocab_size: int, seed: int, hidden: int = 32) -> str:
    from moco_lit.quickstart import TinyModelConfig, build_tiny_llama, build_tokenizer, prompt_wording_corpus

    tokenizer = build_tokenizer(prompt_wording_corpus() + list(string.printable), vocab_size=vocab_size)
    config = TinyModelConfig(hidden_size=hidden, layers=1, heads=2, intermediate_size=64, max_positions=512)
    model = build_tiny_llama(tokenizer, config, seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> list[str]:
    """Three tiny random Llama folders that share one tokenizer (same vocabulary)."""
    root = tmp_path_factory.mktemp("tiny_models")
    return [_save_tiny(root / f"tiny{i}", vocab_size=400, seed=i) for i in range(3)]


@pytest.fixture(scope="session")
def other_vocab_model(tmp_path_factory) -> str:
    """A tiny random Llama whose tokenizer differs from ``tiny_models``'."""
    # the wording corpus caps the shared tokenizer at ~306 entries: a smaller vocabulary differs
    return _save_tiny(tmp_path_factory.mktemp("other_vocab") / "tiny_other", vocab_size=280, seed=7)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache root (generation cache, fetched files, quickstart models)."""
    home = tmp_path / "moco_home"
    monkeypatch.setenv("MOCO_LIT_HOME", str(home))
    return home


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run ``python -m moco_lit ARGS`` in-process; Lightning commands get a private run folder.

    Returns (exit code, the LightningCLI object or None). Lightning commands raise on bad input
    like the real entry point would print: use ``moco_lit.cli.main`` directly to test exit codes.
    """
    from moco_lit.cli import main
    from moco_lit.errors import UserError
    from moco_lit.lightning_cli import run_lightning

    def run(*args: str):
        argv = list(args)
        if argv and argv[0] in {"fit", "validate", "test", "predict"}:
            if "--run_dir" not in argv:
                argv += ["--run_dir", str(tmp_path / "runs")]
            argv += ["--trainer.enable_progress_bar", "false", "--progress", "false"]
            try:
                return 0, run_lightning(argv)
            except UserError:
                raise
        return main(argv), None

    return run


@pytest.fixture
def run_on_tiny_models(run_cli, tiny_models):
    """``test`` of a method on the three tiny models: 2 test and 2 dev examples, 4 new tokens each.

    ``run_on_tiny_models("moa", "--model.num_rounds", "2")`` returns what ``run_cli`` returns.
    """

    def run(method: str, *args: str):
        return run_cli(
            "test",
            "--model",
            method,
            "--model.collaborators",
            collaborators_arg(tiny_models),
            *args,
            "--model.max_new_tokens",
            "4",
            "--data.limit",
            "2",
            "--data.dev_limit",
            "2",
        )

    return run


def run_records(cli) -> list[dict]:
    """The records of a finished run (``cli`` from ``run_cli``), in file order."""
    path = cli.model.runtime.run_folder.path / "predictions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def free_port() -> int:
    """A TCP port free on loopback now, for process groups started by a test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def collaborators_arg(paths: list[str]) -> str:
    return "[" + ", ".join(paths) + "]"
