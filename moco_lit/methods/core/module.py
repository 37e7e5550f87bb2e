"""``CollaborationModule``: the LightningModule every collaboration method subclasses.

A method writes ``collaborate(batch) -> list[str | Answer]``, ``batch`` a ``Batch`` (the step's
example dicts with their ``ids``, ``prompts`` and ``records``), and draws any randomness of its own
with ``self.rng(example, step)``; this class does the rest of the collaboration: loads the
collaborators once on the rank's device, asks them through the shared generation engine (cache
first) while charging calls and tokens to each example, scores outputs with the benchmark's metric
(reduced across ranks) and makes one record per example. It opens no
file: the run folder, resuming from it, cost totals and W&B are Lightning callbacks
(``moco_lit.callbacks``) that read ``epoch_records``. Methods that choose something on the dev
split override ``calibration_step``/``finish_calibration``; ``fit`` runs the calibration and
``test`` on an uncalibrated module runs it first (and says so).
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, SupportsIndex, overload

import lightning as L
import torch
from torchmetrics import SumMetric

from moco_lit import paths
from moco_lit.cache import GenerationCache
from moco_lit.collaborators import Collaborator, Prompt, check_collaborators, load_collaborator
from moco_lit.decoding import JointDecoder
from moco_lit.errors import UserError
from moco_lit.evaluation import ScoreMetric, Scorer, answer_key
from moco_lit.generation import DecodingConfig, Generation, GenerationEngine, example_seed
from moco_lit.runs import RunFolder

log = logging.getLogger(__name__)

Example = dict[str, Any]


class Batch(list[Example]):
    """The examples of one step, in order: a list of example dicts (so methods iterate, index and
    zip it as before) with what methods read off them. The base builds it once per step and every
    ``collaborate`` receives one; a slice is a ``Batch`` too."""

    @classmethod
    def of(cls, examples: Iterable[Example]) -> Batch:
        return examples if isinstance(examples, Batch) else cls(examples)

    @property
    def ids(self) -> list[str]:
        return [example["id"] for example in self]

    @property
    def prompts(self) -> list[Prompt]:
        """What each example asks, as given to the method (before any chat template)."""
        return [example["prompt"] for example in self]

    @property
    def records(self) -> list[dict]:
        """The benchmark records (question, reference answer and the rest)."""
        return [example["record"] for example in self]

    @property
    def task_type(self) -> str | None:
        return self[0].get("task_type") if self else None

    @overload
    def __getitem__(self, index: SupportsIndex) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> Batch: ...
    def __getitem__(self, index):
        item = super().__getitem__(index)
        return Batch(item) if isinstance(index, slice) else item

    def pick(self, indices: Iterable[int]) -> Batch:
        """The examples at ``indices``, in that order."""
        return Batch(self[i] for i in indices)


@dataclass
class Answer:
    """A method's final answer for one example, with who answered and what happened on the way."""

    text: str
    by: str | list[str] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RuntimeOptions:
    """Run-level settings the CLI fills in (not hyperparameters of the method)."""

    cache: bool = True
    cache_path: str | None = None
    generation_backend: str = "hf"
    finished_rows_leave: bool = False
    run_folder: RunFolder | None = None
    progress: bool = True
    scoring: str = "moco_lit"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpochRecords:
    """What the running evaluation epoch has produced, for the callbacks that resume, count and write.

    ``resumed``: records already in the run folder, by id, whose examples are not run again (a
    resume callback sets it at the epoch's start). ``batch``: every record of the last batch, in
    batch order, resumed ones included. ``fresh``: the last batch's new records. ``metrics``: the
    finished epoch's metrics, the module's scores and what callbacks add (cost, seconds).
    ``by_model``: calls, tokens, new tokens and seconds of every model call this epoch made, by
    collaborator name (``joint`` for token-level decoding's time, ``other`` for judges and helpers).
    """

    resumed: dict[str, dict] = field(default_factory=dict)
    batch: list[dict] = field(default_factory=list)
    fresh: list[dict] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    by_model: dict[str, list[float]] = field(default_factory=dict)

    def charge(self, name: str, outputs: Sequence[Generation], seconds: float = 0.0) -> None:
        totals = self.by_model.setdefault(name, [0, 0, 0, 0.0])
        totals[0] += len(outputs)
        totals[1] += sum(output.prompt_tokens + output.new_tokens for output in outputs)
        totals[2] += sum(output.new_tokens for output in outputs)
        totals[3] += seconds


class CollaborationModule(L.LightningModule):
    """Base of every method. Subclasses set ``method_name`` and ``level`` and write ``collaborate``.

    Args:
        collaborators: the models (hub ids, folders, ``.gguf`` files, short names, ``base+adapter``).
        max_new_tokens: generation budget per model call (MoCo's 512).
        temperature: 0 decodes greedily; above 0 samples (reproducibly per example and seed).
            MoCo's 0.7 by default: recipes that decode greedily say why.
        top_p: nucleus sampling mass when sampling (MoCo's 0.9).
        enable_thinking: the chat templates' thinking switch; False (MoCo's choice for Qwen3)
            turns thinking off, None leaves each template's own default.
        seed: base seed of every sample drawn.
        generation_batch_size: prompts per forward batch in the generation engine; ``auto`` starts
            at 64 and halves whenever a batch runs out of memory.
        reward_model: judge for ``reward_model`` benchmarks (MoCo's default).
        verifier: judge for ``general_verifier`` benchmarks (MoCo's default).
        encoder: embedding model for ``generation_diversity`` benchmarks (MoCo's default).
    """

    method_name: ClassVar[str] = ""
    level: ClassVar[str] = "text"
    needs_calibration: ClassVar[bool] = False
    min_collaborators: ClassVar[int] = 1
    max_collaborators: ClassVar[int | None] = None
    supported_task_types: ClassVar[frozenset[str] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # every caller (the evaluation loops, a test, another method) hands `collaborate` a Batch
        if "collaborate" in cls.__dict__:
            cls.collaborate = _given_a_batch(cls.__dict__["collaborate"])

    def __init__(
        self,
        collaborators: list[str | dict],
        max_new_tokens: int = 512,
        temperature: float = 0.7,
        top_p: float = 0.9,
        enable_thinking: bool | None = False,
        seed: int = 42,
        generation_batch_size: int | Literal["auto"] = 16,
        reward_model: str = "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2",
        verifier: str = "TIGER-Lab/general-verifier",
        encoder: str = "roberta-base",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._check_collaborator_count(collaborators)
        _check_decoding(max_new_tokens, temperature, top_p)
        self.collaborator_specs = list(collaborators)
        self.decoding = DecodingConfig(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            enable_thinking=enable_thinking,
        )
        self.runtime = RuntimeOptions()
        self.collaborators: list[Collaborator] = []
        self.engine: GenerationEngine | None = None
        self.scorer: Scorer | None = None
        self.score_metric = ScoreMetric()
        self.example_count = SumMetric()
        # dev score of each collaborator as a single model: the basis of every dev-based choice
        self.register_buffer("dev_scores", torch.full((len(collaborators),), math.nan, dtype=torch.float64))
        self.register_buffer("calibrated", torch.tensor(False))
        self.dev_sums = ScoreSums(len(collaborators))
        # DDP refuses to wrap a module with no trainable parameter, and `fit` runs calibrations and
        # searches under DDP; this scalar is never part of a loss
        self.ddp_anchor = torch.nn.Parameter(torch.zeros(1))
        # calls, tokens and new tokens charged to each example not yet recorded
        self._example_cost: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.epoch_records = EpochRecords()

    # -- configuration checks -----------------------------------------------------------------

    def _check_collaborator_count(self, collaborators: Sequence) -> None:
        count = len(collaborators)
        if count < self.min_collaborators or (self.max_collaborators and count > self.max_collaborators):
            wanted = (
                f"exactly {self.min_collaborators}"
                if self.max_collaborators == self.min_collaborators
                else f"at least {self.min_collaborators}"
                + (f" and at most {self.max_collaborators}" if self.max_collaborators else "")
            )
            raise UserError(
                f"{self.method_name or type(self).__name__} needs {wanted} collaborators, got {count}"
            )

    def check_task_type(self, task_type: str) -> None:
        if self.supported_task_types is not None and task_type not in self.supported_task_types:
            raise UserError(
                f"{self.method_name} cannot run on a {task_type!r} benchmark; "
                f"it supports: {', '.join(sorted(self.supported_task_types))}"
            )

    def keep_out_of_checkpoint(self, *names: str) -> None:
        """Drop ``names`` from the saved hyperparameters: arguments that are an action of this run
        (``export_dir``), not a setting of the method; LightningCLI would otherwise apply a
        checkpoint's values over the command line's."""
        for hparams in (self._hparams, self._hparams_initial):
            for name in names:
                hparams.pop(name, None)

    # -- lifecycle ----------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        _check_not_empty(getattr(self._trainer, "datamodule", None) if self._trainer else None, stage)
        if not self.collaborators:
            check_collaborators(self.collaborator_specs)  # all found before any loads
            self.collaborators = [load_collaborator(spec, device) for spec in self.collaborator_specs]
        cache = None
        if self.runtime.cache:
            cache = GenerationCache(self.runtime.cache_path or paths.home() / "generations.sqlite")
        self.engine = GenerationEngine(
            cache=cache,
            batch_size=self.hparams.generation_batch_size,
            progress=self.runtime.progress,
            backend=self.runtime.generation_backend,
            threads="auto",  # from the machine's load, unless MOCO_LIT_THREADS/OMP_NUM_THREADS say
            finished_rows_leave=self.runtime.finished_rows_leave,
        )
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and stage != "predict":
            self.check_task_type(datamodule.task_type)
            wanted = (datamodule.task_type, self.runtime.scoring)
            if self.scorer is None or (self.scorer.task_type, self.scorer.scoring) != wanted:
                self.scorer = Scorer.for_task(
                    datamodule.task_type,
                    reward_model=self.hparams.reward_model,
                    verifier=self.hparams.verifier,
                    encoder=self.hparams.encoder,
                    device=device,
                    scoring=self.runtime.scoring,
                    benchmark=datamodule.name,
                )

    @property
    def collaborator_names(self) -> list[str]:
        """Display names, made unique (``name``, ``name#2``) when the recipe repeats a model."""
        seen: dict[str, int] = {}
        names = []
        for collaborator in self.collaborators:
            seen[collaborator.name] = seen.get(collaborator.name, 0) + 1
            count = seen[collaborator.name]
            names.append(collaborator.name if count == 1 else f"{collaborator.name}#{count}")
        return names

    # -- what a method writes -----------------------------------------------------------------

    def collaborate(self, batch: Batch) -> list[str | Answer]:
        """The final answer for each example of ``batch``."""
        raise NotImplementedError

    def seed_of(self, *parts: object) -> int:
        """A seed of this run's ``seed`` and ``parts`` (an example id, a step, a model): the same on
        every rank and rerun, different for every ``parts``."""
        return example_seed(self.hparams.seed, *parts)

    def rng(self, example: Example | str, *step: object) -> random.Random:
        """A random draw of its own for ``example`` (or an example id) at ``step``."""
        example_id = example if isinstance(example, str) else example["id"]
        return random.Random(self.seed_of(example_id, *step))

    # -- asking models: every method goes through here ----------------------------------------

    def ask(
        self,
        model: int | Collaborator,
        prompts: Sequence[Prompt],
        ids: Sequence[str],
        *,
        step: str = "",
        decoding: DecodingConfig | None = None,
    ) -> list[Generation]:
        """One batched call of collaborator ``model`` on ``prompts`` (one per example id in ``ids``).

        ``model`` is an index into the collaborators or another loaded model (a judge, a ranker).

        ``step`` names the round or role ("round2", "judge") so that samples of different steps
        draw different randomness while staying reproducible per example.
        """
        decoding = decoding or self.decoding
        collaborator = self.collaborators[model] if isinstance(model, int) else model
        seed_key = model if isinstance(model, int) else collaborator.name
        seeds = [self.seed_of(example_id, seed_key, step) for example_id in ids]
        started = time.perf_counter()
        outputs = self.engine.generate(collaborator, prompts, decoding, seeds)
        self._charge(ids, outputs, by=model, seconds=time.perf_counter() - started)
        return outputs

    def ask_samples(
        self, model: int, prompts: Sequence[Prompt], ids: Sequence[str], num_samples: int, *, step: str = ""
    ) -> list[list[Generation]]:
        """``num_samples`` sampled outputs per prompt (the method's temperature, at least 0.7)."""
        decoding = self.decoding
        if decoding.greedy:
            decoding = replace(decoding, temperature=0.7)
        seeds = [self.seed_of(example_id, model, step) for example_id in ids]
        started = time.perf_counter()
        samples = self.engine.sample(self.collaborators[model], prompts, decoding, num_samples, seeds)
        seconds = time.perf_counter() - started
        charged = [(example_id, output) for example_id, outputs in zip(ids, samples) for output in outputs]
        self._charge([i for i, _ in charged], [o for _, o in charged], by=model, seconds=seconds)
        return samples

    def ask_joint(
        self, models: Sequence[int], prompts: Sequence[Prompt], ids: Sequence[str], rule, *, step: str = ""
    ) -> list:
        """Decode ``prompts`` token by token with collaborators ``models`` combined by ``rule``
        (``moco_lit.decoding``: fused logits or hand-overs; rule indices are positions in ``models``).
        Each model's tokens are charged to each example as one call per model.
        """
        decoder = JointDecoder(
            [self.collaborators[m] for m in models],
            self.decoding,
            cache=self.engine.cache if self.engine is not None else None,
            batch_size=self.generation_batch,
        )
        seeds = [self.seed_of(example_id, "joint", step) for example_id in ids]
        started = time.perf_counter()
        outputs = decoder.generate(prompts, rule, seeds)
        self.epoch_records.charge("joint", [], time.perf_counter() - started)  # one loop, all models
        for slot, model in enumerate(models):
            self._charge(ids, [output.per_model()[slot] for output in outputs], by=model)
        return outputs

    def ask_all(
        self, prompts: Sequence[Prompt], ids: Sequence[str], *, step: str = ""
    ) -> list[list[Generation]]:
        """Every collaborator answers every prompt; result[model][example]."""
        return [self.ask(m, prompts, ids, step=step) for m in range(len(self.collaborators))]

    def _charge(
        self,
        ids: Sequence[str],
        outputs: Sequence[Generation],
        by: int | Collaborator | None = None,
        seconds: float = 0.0,
    ) -> None:
        """Charge each output to its example's record and to the model that made it (``by``)."""
        for example_id, output in zip(ids, outputs):
            cost = self._example_cost[example_id]
            cost[0] += 1
            cost[1] += output.prompt_tokens + output.new_tokens
            cost[2] += output.new_tokens
        self.epoch_records.charge(self._cost_name(by), outputs, seconds)

    def _cost_name(self, model: int | Collaborator | None) -> str:
        """The collaborator's display name, or ``other`` for a model outside the pool (a judge)."""
        if isinstance(model, int):
            return self.collaborator_names[model]
        for index, collaborator in enumerate(self.collaborators):
            if collaborator is model:
                return self.collaborator_names[index]
        return "other"

    def score(self, outputs: Sequence[str], batch: list[Example]) -> list[float | None]:
        return self.scorer.score(list(outputs), Batch.of(batch).records)

    def answer_of(self, output: str, example: Example) -> str | None:
        """The extracted, normalised answer of ``output`` (what votes compare), None if none."""
        return answer_key(example["task_type"], output, example["record"])

    # -- calibration on dev -------------------------------------------------------------------

    def calibration_step(self, batch: Batch) -> None:
        """Score every collaborator alone on a dev batch (cached, so shared with other methods)."""
        batch = Batch.of(batch)
        for model, outputs in enumerate(self.ask_all(batch.prompts, batch.ids, step="dev")):
            scores = self.score([o.text for o in outputs], batch)
            self.dev_sums.update(model, scores)

    def finish_calibration(self) -> None:
        self.dev_scores.copy_(self.dev_sums.compute().to(self.dev_scores))
        self.dev_sums.reset()
        self.calibrated.fill_(True)
        self._example_cost.clear()
        table = ", ".join(f"{n}={s:.3f}" for n, s in zip(self.collaborator_names, self.dev_scores.tolist()))
        log.info("%s calibrated on dev: %s", self.method_name, table)

    def dev_ranking(self) -> list[int]:
        """Collaborator indices from best to worst dev score (ties keep the recipe's order)."""
        scores = self.dev_scores.tolist()
        return sorted(
            range(len(scores)), key=lambda m: (-(scores[m] if not math.isnan(scores[m]) else -1), m)
        )

    @property
    def dev_best(self) -> int:
        return self.dev_ranking()[0]

    @property
    def generation_batch(self) -> int:
        """Prompts per batch now: the engine's (``auto`` may have lowered it), else the setting."""
        if getattr(self, "engine", None) is not None:
            return int(self.engine.batch_size)
        size = self.hparams.generation_batch_size
        return 16 if size == "auto" else int(size)

    def note(self, message: str) -> None:
        """A progress line for the user, once (rank zero), on the method's logger (``moco_lit.methods.*``),
        so that a caller running many methods, such as the quickstart, can turn it down."""
        if self.global_rank == 0:
            logging.getLogger(type(self).__module__).info(message)

    def ensure_calibrated(self) -> None:
        if not self.needs_calibration or bool(self.calibrated):
            return
        datamodule = self.trainer.datamodule
        self.note(f"{self.method_name}: not calibrated yet; calibrating on the dev split first")
        for batch in datamodule.train_dataloader():
            self.calibration_step(Batch.of(batch))
        self.finish_calibration()

    # -- fit = calibration for inference-time methods -----------------------------------------

    def training_step(self, batch: list[Example], batch_idx: int) -> None:
        self.calibration_step(batch)
        self._calibration_pending = True
        return None

    def on_train_epoch_end(self) -> None:
        self._flush_calibration()

    def _flush_calibration(self) -> None:
        # Lightning validates before `on_train_epoch_end`: whichever comes first closes the epoch
        if getattr(self, "_calibration_pending", False):
            self._calibration_pending = False
            self.finish_calibration()

    def configure_optimizers(self):
        return None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Every step (training, calibration, evaluation) gets its examples as a ``Batch``."""
        if isinstance(batch, list) and all(isinstance(example, dict) for example in batch):
            return Batch.of(batch)
        return batch

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["moco_lit"] = {"method": self.method_name, "collaborators": self.collaborator_names}

    # -- evaluation loops ---------------------------------------------------------------------

    def on_test_start(self) -> None:
        self.ensure_calibrated()

    def on_validation_start(self) -> None:
        if self.trainer.sanity_checking:
            return
        if self.trainer.state.fn == "fit":
            self._flush_calibration()
        else:
            self.ensure_calibrated()

    def on_predict_start(self) -> None:
        self.ensure_calibrated()

    def on_test_epoch_start(self) -> None:
        self._begin_epoch()

    def on_validation_epoch_start(self) -> None:
        self._begin_epoch()

    def on_predict_epoch_start(self) -> None:
        self._begin_epoch()

    def _begin_epoch(self) -> None:
        # (`resumed` is the resume callback's: callbacks' epoch-start hooks run before this one)
        self.epoch_records.batch, self.epoch_records.fresh, self.epoch_records.metrics = [], [], {}
        self.epoch_records.by_model = {}
        self._example_cost.clear()

    def test_step(self, batch: list[Example], batch_idx: int) -> None:
        self._evaluate(batch)

    def validation_step(self, batch: list[Example], batch_idx: int) -> None:
        self._evaluate(batch)

    def predict_step(self, batch: list[Example], batch_idx: int) -> list[str]:
        records = self._run_batch(batch, score=False)
        return [record["output"] for record in records]

    def _evaluate(self, batch: list[Example]) -> None:
        records = self._run_batch(batch, score=True)
        self.score_metric.update([record.get("score") for record in records])
        self.example_count.update(float(len(records)))
        self.update_extra_metrics(records)

    def update_extra_metrics(self, records: list[dict]) -> None:
        """Hook for methods that report more than one score (e.g. one per collaborator)."""

    def _run_batch(self, batch: list[Example], score: bool) -> list[dict]:
        """The batch's records: resumed ones as they were, the others made now (``fresh``)."""
        resumed = self.epoch_records.resumed
        todo = [example for example in batch if example["id"] not in resumed]
        fresh = self._collaborate_and_record(todo, score) if todo else []
        by_id = {record["id"]: record for record in fresh}
        records = [by_id.get(example["id"]) or resumed[example["id"]] for example in batch]
        self.epoch_records.fresh, self.epoch_records.batch = fresh, records
        return records

    def _collaborate_and_record(self, batch: list[Example], score: bool) -> list[dict]:
        batch = Batch.of(batch)
        answers = [a if isinstance(a, Answer) else Answer(a) for a in self.collaborate(batch)]
        if len(answers) != len(batch):
            raise RuntimeError(
                f"{self.method_name} returned {len(answers)} answers for {len(batch)} examples"
            )
        scores = self.score([a.text for a in answers], batch) if score else [None] * len(batch)
        records = []
        for example, answer, value in zip(batch, answers, scores):
            calls, tokens, new_tokens = self._example_cost.pop(example["id"], [0, 0, 0])
            records.append(
                {
                    "id": example["id"],
                    "prompt": example["prompt"],  # what the method was given (before any chat template)
                    "output": answer.text,
                    "answer": self.answer_of(answer.text, example),
                    "reference": _reference(example["record"]),
                    "score": value,
                    "answered_by": answer.by,
                    "calls": calls,
                    "tokens": tokens,
                    "new_tokens": new_tokens,
                    **({"details": answer.details} if answer.details else {}),
                }
            )
        return records

    def on_test_epoch_end(self) -> None:
        self._finish_epoch("test")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._finish_epoch("val")

    def on_predict_epoch_end(self) -> None:
        self._finish_epoch("predict")

    def epoch_metrics(self) -> dict[str, float]:
        """Scores of the finished epoch, reduced across ranks (every rank must call this)."""
        return {"score": float(self.score_metric.compute()), "n": int(self.example_count.compute())}

    def extra_epoch_metrics(self) -> dict[str, float]:
        """Hook: more metrics of the finished epoch (reduced across ranks)."""
        return {}

    def _finish_epoch(self, split: str) -> None:
        metrics = {} if split == "predict" else {**self.epoch_metrics(), **self.extra_epoch_metrics()}
        self.score_metric.reset()
        self.example_count.reset()
        if split == "predict":
            return
        prefix = "test" if split == "test" else "val"
        for key, value in metrics.items():
            name = key if key.startswith("cost/") else f"{prefix}/{key}"
            if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
                self.log(name, float(value), rank_zero_only=True, sync_dist=False)
        self.epoch_records.metrics.update(metrics)

    def per_example_scores(self, records: list[dict], metrics: dict) -> dict[str, list[float | None]]:
        """Hook: the per-example scores behind each score of ``metrics`` (key → scores)."""
        return {"score": [record.get("score") for record in records]}


def _given_a_batch(collaborate: Callable) -> Callable:
    @functools.wraps(collaborate)
    def wrapper(self: CollaborationModule, batch: Iterable[Example]) -> list[str | Answer]:
        return collaborate(self, Batch.of(batch))

    return wrapper


def _check_not_empty(datamodule: Any, stage: str) -> None:
    """A run with nothing to run on is a mistake in the data options, not a success with n=0."""
    if datamodule is None or not hasattr(datamodule, "examples"):
        return
    split = "test" if stage in {"test", "predict"} else "dev"
    if not datamodule.examples(split):
        raise UserError(
            f"{datamodule.hparams.benchmark}: the {split} split has no examples "
            "(after --data.limit and --data.ratio); nothing to run"
        )


def _check_decoding(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        raise UserError(f"temperature must be >= 0 (0 decodes greedily), got {temperature}")
    if not 0 < top_p <= 1:
        raise UserError(f"top_p must be in (0, 1], got {top_p}")


class ScoreSums(torch.nn.Module):
    """One mean score per collaborator, reduced across ranks: dev scores and the like."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.means = torch.nn.ModuleList(ScoreMetric() for _ in range(size))

    def update(self, index: int, scores: Sequence[float | None]) -> None:
        if scores:
            self.means[index].update(list(scores))

    def compute(self) -> torch.Tensor:
        return torch.tensor([float(mean.compute()) for mean in self.means], dtype=torch.float64)

    def reset(self) -> None:
        for mean in self.means:
            mean.reset()


def _reference(record: dict) -> Any:
    for key in ("answer", "output", "reference"):
        if key in record:
            return record[key]
    return None
