"""The offline quickstart: train three tiny specialists, then compare collaborations on their skills.

1. Build a byte-level BPE tokenizer whose merges cover only the prompt wording (answers stay
   character by character), and one tiny Llama per skill of the synthetic benchmark.
2. Train each on its own skill with a Lightning ``fit`` (completion-only SFT) for a fixed number
   of steps, capped in time; keep the trained folders in the cache, keyed by the settings, so
   reruns skip training.
3. Run every quickstart method on the mixed ``quickstart`` test split through the same path as
   ``python -m moco_lit test`` (trained methods ``fit`` on the dev split first, then ``test`` from
   that checkpoint) and print a leaderboard, per skill and overall.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import string
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lightning as L
import torch
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from moco_lit import paths
from moco_lit.argv import CommandParser
from moco_lit.collaborators import render_plain
from moco_lit.data.prompts import render_prompt
from moco_lit.data.synthetic import SKILL_MAKERS, SKILLS, skill_examples
from moco_lit.errors import UserError, did_you_mean
from moco_lit.lightning_cli import MocoCLI, run_lightning
from moco_lit.models import QUICKSTART_PREFIX, register_resolver
from moco_lit.quiet import quiet_runs
from moco_lit.report import leaderboard_rows, print_leaderboard, write_report
from moco_lit.training import completion_batch, sft_loss

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


@dataclass(frozen=True)
class TinyModelConfig:
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 512
    max_positions: int = 256


@dataclass(frozen=True)
class SpecialistTraining:
    """How each specialist is trained: ``max_steps`` steps, cut short after ``seconds`` of wall time."""

    seconds: float = 150.0
    max_steps: int = 600
    batch_size: int = 32
    learning_rate: float = 1e-3
    train_examples: int = 4000
    seed: int = 0


def render_user_prompt(record: dict) -> str:
    """The user message a quickstart record becomes: the benchmark's own exact-match prompt."""
    return render_prompt("exact_match", record)


def prompt_wording_corpus() -> list[str]:
    """Prompt texts with the variable parts removed: what the BPE merges should cover."""
    blank = ["What is times ?", "Reverse the letters .", "Which letter comes after ?"]
    records = [{"input": text, "prompt": text} for text in blank]
    return [render_plain([{"role": "user", "content": render_user_prompt(r)}]) for r in records] * 50


def build_tokenizer(corpus: list[str], vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on ``corpus`` (single characters always present)."""
    tokenizer = Tokenizer(BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
    )


def build_tiny_llama(tokenizer, config: TinyModelConfig = TinyModelConfig(), seed: int = 0):
    """A randomly initialised Llama sized for CPU experiments (~0.5M parameters)."""
    torch.manual_seed(seed)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(model_config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


class SkillTuning(L.LightningModule):
    """Completion-only SFT of one causal LM on (rendered prompt, answer) pairs."""

    def __init__(self, model, tokenizer, learning_rate: float) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.learning_rate = learning_rate

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = sft_loss(logits, batch["labels"])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.learning_rate, weight_decay=0.0)


ANSWER_FORMAT = "answer after a space"
"""How a specialist's training answer follows the rendered prompt (``...Assistant:``): after a
space, as ``training.completion_batch`` writes every completion that follows text, so an output
of one specialist is a training target in the format every specialist already knows
(distillation, fine-tuning on consensus). Part of the cache key: specialists trained otherwise
are not reused."""


def skill_training_pairs(skill: str, count: int, seed: int) -> list[tuple[str, str]]:
    records = skill_examples(skill, count, seed, "train")
    return [
        (render_plain([{"role": "user", "content": render_user_prompt(r)}]), r["output"]) for r in records
    ]


class StepBar(L.Callback):
    """One progress bar over a step-capped training run: ``multiply: 640/1500 steps``."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.bar = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.bar = tqdm(total=self.total, desc=self.label, unit="step", leave=False, dynamic_ncols=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()


def train_specialist(
    skill: str, tokenizer, out_dir: Path, training: SpecialistTraining, model_config: TinyModelConfig
) -> Path:
    """Train one tiny Llama on ``skill`` and save it (with the tokenizer) to ``out_dir``."""
    L.seed_everything(training.seed, verbose=False)
    model = build_tiny_llama(tokenizer, model_config, seed=training.seed)
    pairs = skill_training_pairs(skill, training.train_examples, training.seed)
    loader = DataLoader(
        pairs,
        batch_size=training.batch_size,
        shuffle=True,
        collate_fn=lambda rows: completion_batch(tokenizer, [p for p, _ in rows], [c for _, c in rows]),
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=training.max_steps,
        max_time={"seconds": training.seconds},
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,  # Lightning's bar counts epochs, which this step-capped run has none of
        callbacks=[StepBar(skill, training.max_steps)],
    )
    trainer.fit(SkillTuning(model, tokenizer, training.learning_rate), train_dataloaders=loader)
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    model.save_pretrained(tmp_dir)
    tokenizer.save_pretrained(tmp_dir)
    tmp_dir.rename(out_dir)
    return out_dir


def specialists_dir(training: SpecialistTraining, model_config: TinyModelConfig) -> Path:
    settings = json.dumps(
        [asdict(training), asdict(model_config), sorted(SKILL_MAKERS), ANSWER_FORMAT], sort_keys=True
    )
    wording = "".join(prompt_wording_corpus()[:3])
    digest = hashlib.sha256((settings + wording).encode()).hexdigest()[:12]
    return paths.subdir("quickstart") / f"specialists-{digest}"


def ensure_specialists(
    training: SpecialistTraining = SpecialistTraining(), model_config: TinyModelConfig = TinyModelConfig()
) -> list[str]:
    """Folders of the trained specialists, one per skill; trains the ones not cached yet."""
    root = specialists_dir(training, model_config)
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = None
    folders = []
    for skill in SKILLS:
        folder = root / skill
        if not (folder / "config.json").exists():
            tokenizer = tokenizer or build_tokenizer(prompt_wording_corpus() + list(string.printable))
            print(f"training the {skill} specialist ({training.max_steps} steps)...", flush=True)
            started = time.perf_counter()
            train_specialist(skill, tokenizer, folder, training, model_config)
            print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
        folders.append(str(folder))
    return folders


def specialist_for(skill: str) -> str:
    """``quickstart:SKILL`` as a model: the quickstart's tiny specialist for SKILL (trained on first
    use, about half a minute, then cached like the quickstart's own)."""
    if skill not in SKILLS:
        raise UserError(
            f"unknown quickstart specialist {skill!r}{did_you_mean(skill, SKILLS)}; "
            f"the quickstart's skills: {', '.join(QUICKSTART_PREFIX + s for s in SKILLS)}"
        )
    return dict(zip(SKILLS, ensure_specialists(), strict=True))[skill]


register_resolver(QUICKSTART_PREFIX, specialist_for)


@dataclass(frozen=True)
class QuickstartRun:
    """One leaderboard entry: a method, its extra CLI arguments, and whether it is fitted first.

    ``{specialist}`` in an argument is replaced by the first specialist's folder (for methods
    that need a model of their own, such as the router's encoder), ``{teacher}`` by the folder of
    ``teacher``'s ``validate`` run on the dev split (for distillation).
    """

    method: str
    args: tuple[str, ...] = ()
    fit_first: bool = False
    teacher: QuickstartRun | None = None


TINY_LORA = ("--model.lora_r", "16", "--model.lora_alpha", "32", "--model.lora_dropout", "0.05")
"""Small adapters for the ~0.1M-parameter specialists (MoCo's r 64 / alpha 16 / dropout 0.1 is
sized for 7B models)."""

FAST_LR = ("--model.lr_schedule", "constant")
"""Models trained for a few seconds need their whole (larger) learning rate at every step: no
cosine decay (MoCo decays 1e-5 over hours of training)."""

TRAINED_ROUTER = QuickstartRun(
    "trained_router",
    (
        *(
            "--model.router",
            "encoder",
            "--model.router_base_model",
            "{specialist}",
            "--trainer.max_epochs",
            "20",
        ),
        *FAST_LR,
    ),
    fit_first=True,
)

QUICKSTART_RUNS: list[QuickstartRun] = [
    QuickstartRun("single_model"),
    QuickstartRun("majority_vote", ("--model.tie", "random")),
    QuickstartRun("majority_vote", ("--model.tie", "dev-based")),
    QuickstartRun("multiagent_refine"),
    QuickstartRun("moa"),
    # the README row was measured with the mean token probability, not MoCo's top-5 confidence
    QuickstartRun("cascade", ("--model.mode", "logit", "--model.confidence", "token_prob")),
    # the logit methods sample at MoCo's temperature 0.7 by default; the leaderboard decodes
    # greedily, so it is one number per method rather than one draw
    QuickstartRun("logit_fusion", ("--model.temperature", "0.0")),
    QuickstartRun("logit_contrastive", ("--model.temperature", "0.0")),
    QuickstartRun("llm_blender", ("--model.ranker", "0")),
    QuickstartRun("greedy_soup"),
    QuickstartRun("expo"),
    QuickstartRun("model_swarms", ("--model.max_iterations", "3")),
    TRAINED_ROUTER,
    # the trained collaborations, each sized to at most ~20 s of fit + test on 2 CPU cores
    QuickstartRun(
        "sparta",
        ("--model.num_iterations", "1", "--model.learning_rate", "1e-4", *FAST_LR, *TINY_LORA),
        fit_first=True,
    ),
    QuickstartRun(
        "agglm",
        (
            "--model.agg_model",
            "0",
            "--model.sample_size",
            "1",
            # the leaderboard's sets: only readable answers elect a set's majority (MoCo: all do)
            *("--model.majority_of", "readable"),
            *("--data.dev_limit", "30", "--data.batch_size", "8"),
            *FAST_LR,
        ),
        fit_first=True,
    ),
    QuickstartRun(
        "distillation",
        (
            *("--model.teacher_run", "{teacher}", "--model.learning_rate", "2e-3"),
            *("--model.epochs_per_iteration", "10", "--data.batch_size", "8"),
            *FAST_LR,
            *TINY_LORA,
        ),
        fit_first=True,
        teacher=TRAINED_ROUTER,
    ),
    QuickstartRun(
        "multiagent_finetuning", ("--model.learning_rate", "1e-4", *FAST_LR, *TINY_LORA), fit_first=True
    ),
    QuickstartRun(
        "llm_blender",
        (
            # the ranker reads the next-letter specialist's verdicts, the fuser writes as the
            # multiplication one: each learns its role with a LoRA adapter on dev
            *("--model.ranker", "2", "--model.fuser", "0", "--model.top_k", "2"),
            *("--model.train_ranker_on_dev", "true", "--model.train_fuser_on_dev", "true"),
            # the tiny fuser learns the boxed answer line the scorer reads, and the ranker both
            # orders of a pair, rather than MoCo's option text and one order (the README row's runs)
            *("--model.ranker_pair_orders", "both", "--model.fuser_target", "answer_line"),
            # a verdict is one letter; "Final Answer: \\boxed{...}" is ~25 characters
            *("--model.ranker_max_new_tokens", "2", "--model.max_new_tokens", "32"),
            *("--model.learning_rate", "1e-3", "--model.epochs_per_iteration", "3", "--data.dev_limit", "30"),
            *("--data.batch_size", "16"),
            *FAST_LR,
            *TINY_LORA,
        ),
        fit_first=True,
    ),
]
"""The methods the quickstart compares on the mixed test split; methods that need no GPU and
make sense for three single-skill specialists join here. ``fit_first`` entries are trained on the
dev split first (distillation's teacher is the trained router's dev outputs)."""


def run_quickstart(
    seconds: float | None = None,
    run_dir: str = "runs",
    limit: int | None = None,
    retrain: bool = False,
    training: SpecialistTraining | None = None,
    runs: list[QuickstartRun] | None = None,
    verbose: bool = False,
) -> list[dict]:
    """Train (or reuse) three tiny specialists, run every quickstart method, print a leaderboard.

    ``verbose``: every run's Lightning metric table and calibration lines too (by default one
    line per method, then the leaderboard)."""
    training = training or SpecialistTraining()
    if seconds is not None:
        training = replace(training, seconds=seconds)
    # models this small are faster on one thread: the work per op is smaller than the sync cost
    # (the variable keeps the generation engine's automatic thread choice at one too)
    torch.set_num_threads(1)
    os.environ.setdefault("MOCO_LIT_THREADS", "1")
    started = time.perf_counter()
    if retrain:
        shutil.rmtree(specialists_dir(training, TinyModelConfig()), ignore_errors=True)
    folders = ensure_specialists(training)
    runner = QuickstartRunner(_common_args(folders, run_dir, limit), folders[0], verbose=verbose)
    tested: list[Path] = []
    failures: list[str] = []
    chosen = runs if runs is not None else QUICKSTART_RUNS
    for number, run in enumerate(chosen, start=1):
        label = f"{run.method} {' '.join(run.args)}".rstrip() if verbose else run.method
        print(f"[{number}/{len(chosen)}] {label} ...", end="\n" if verbose else " ", flush=True)
        run_started = time.perf_counter()
        try:
            with quiet_runs(not verbose):
                tested.append(runner.test(run))
        except Exception as err:  # one failing method must not cost the others' results
            failures.append(f"{run.method}: {type(err).__name__}: {err}")
            print(f"  {run.method} failed: {type(err).__name__}: {err}", flush=True)
            continue
        if not verbose:
            print(f"{time.perf_counter() - run_started:.0f} s", flush=True)
    rows = leaderboard_rows(tested, group_field="skill")
    print()
    print_leaderboard(
        rows, title=f"quickstart leaderboard (test split, {time.perf_counter() - started:.0f} s)"
    )
    report = _write_report(tested, Path(run_dir) / "reports" / "quickstart")
    print(f"\nreport: {report['html']}")
    if failures:
        raise QuickstartFailures(failures)
    return rows


def _common_args(folders: list[str], run_dir: str, limit: int | None) -> list[str]:
    """The arguments every quickstart run shares: the specialists, the benchmark, quiet output."""
    return [
        "--model.collaborators",
        "[" + ", ".join(folders) + "]",
        # answers are a few characters, and the specialists' only skill is their most likely
        # answer: greedy decoding within a short budget (MoCo samples at 0.7 within 512 tokens)
        *("--model.max_new_tokens", "8", "--model.temperature", "0"),
        "--data.benchmark",
        "quickstart",
        "--data.batch_size",
        "64",
        "--run_dir",
        run_dir,
        "--wandb",
        "false",
        "--progress",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        *(["--data.limit", str(limit)] if limit is not None else []),
    ]


class QuickstartFailures(Exception):
    """Some methods failed; the leaderboard and report hold the others."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__(f"{len(failures)} quickstart method(s) failed: " + "; ".join(failures))


class QuickstartRunner:
    """Runs quickstart entries through the same path as ``python -m moco_lit fit/validate/test``.

    Each entry is fitted at most once per quickstart (a distillation teacher that is also on the
    leaderboard reuses its checkpoint), and a teacher is validated on dev at most once.
    """

    def __init__(self, common: list[str], specialist: str, verbose: bool = True) -> None:
        self.common = common
        self.specialist = specialist
        self.verbose = verbose
        self.checkpoints: dict[QuickstartRun, str] = {}
        self.dev_runs: dict[QuickstartRun, Path] = {}

    def args(self, stage: str, run: QuickstartRun) -> list[str]:
        teacher = str(self.dev_run(run.teacher)) if run.teacher is not None else ""
        extra = [
            arg.replace("{specialist}", self.specialist).replace("{teacher}", teacher) for arg in run.args
        ]
        args = [stage, "--model", run.method, *self.common, *extra]
        if stage in ("test", "validate") and not self.verbose:  # no metric table per run
            args += ["--verbose", "false"]
        return args + (["--ckpt_path", self.checkpoint(run)] if run.fit_first and stage != "fit" else [])

    def checkpoint(self, run: QuickstartRun) -> str:
        """The checkpoint of ``run``'s ``fit`` (fitted on first use)."""
        if run not in self.checkpoints:
            fitted = self._lightning(self.args("fit", run))
            reused = getattr(fitted, "reused_fit", None)  # a finished fit of the same configuration
            self.checkpoints[run] = (
                (reused.get("best") or reused["last"])
                if reused
                else fitted.trainer.checkpoint_callback.best_model_path
            )
        return self.checkpoints[run]

    def dev_run(self, run: QuickstartRun) -> Path:
        """The run folder of ``run`` validated on the dev split (its outputs teach distillation)."""
        if run not in self.dev_runs:
            self.dev_runs[run] = self._lightning(self.args("validate", run)).model.runtime.run_folder.path
        return self.dev_runs[run]

    def test(self, run: QuickstartRun) -> Path:
        """The run folder of ``run`` on the test split (fitted first when it says so)."""
        return self._lightning(self.args("test", run)).model.runtime.run_folder.path

    @staticmethod
    def _lightning(args: list[str]) -> MocoCLI:
        return run_lightning(args)


def _write_report(tested: list[Path], out_dir: Path) -> dict[str, Path]:
    """The HTML/Markdown report of the tested runs, from a summary in the sweep format
    (``python -m moco_lit report`` on that file rebuilds it)."""
    cells = [{"run_folder": str(path), "pool": "specialists"} for path in tested]
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = out_dir / "runs.json"
    summary.write_text(json.dumps({"sweep": "quickstart", "cells": cells}, indent=2) + "\n")
    return write_report([summary], out_dir, title="quickstart report")


def main(argv: list[str]) -> int:
    """``python -m moco_lit quickstart``: exit code 1 when a run failed (the others still ran)."""
    parser = CommandParser(prog="python -m moco_lit quickstart", description=run_quickstart.__doc__)
    parser.add_argument("--seconds", type=float, default=None, help="training budget per specialist")
    parser.add_argument("--run_dir", default="runs", help="where run folders go (default: runs)")
    parser.add_argument("--limit", type=int, default=None, help="test examples (default: the whole split)")
    parser.add_argument("--retrain", action="store_true", help="train the specialists again")
    parser.add_argument("--verbose", action="store_true", help="every run's metric table and log lines")
    args = parser.parse_args(argv)
    try:
        run_quickstart(
            seconds=args.seconds,
            run_dir=args.run_dir,
            limit=args.limit,
            retrain=args.retrain,
            verbose=args.verbose,
        )
    except QuickstartFailures as failures:
        print(f"error: {failures}", file=sys.stderr)
        return 1
    return 0
