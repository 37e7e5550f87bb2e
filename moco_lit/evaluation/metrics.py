"""Scoring outputs by task type: the ``Scorer``, the ``ScoreMetric`` and predictions files.

A ``Scorer`` is built once per run for one task type (it loads its judge model, if any, once)
and turns model outputs plus the benchmark's raw records into per-example scores; the rules come
from the task type's spec (``task_types.py``), and moco_lit's rules for the built-in task types are
the ``*_scorer``s and per-example rules here. ``ScoreMetric``
averages those scores across batches and ranks. ``score_predictions`` scores a JSONL file of
outputs made elsewhere, matching lines to examples by id, never by position.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torchmetrics import Metric

from moco_lit.errors import UserError
from moco_lit.evaluation.extraction import (
    answers_equal,
    best_alias_f1,
    extract_choice,
    extract_code,
    extract_final_answer,
    strip_thinking,
)
from moco_lit.evaluation.judges import (
    DEFAULT_ENCODER,
    DEFAULT_REWARD_MODEL,
    DEFAULT_VERIFIER,
    EmbeddingJudge,
    RewardModelJudge,
    VerifierJudge,
)
from moco_lit.evaluation.moco_rules import moco_regroup
from moco_lit.evaluation.noncompliance import noncompliance_score
from moco_lit.evaluation.sandbox import require_isolation, run_python
from moco_lit.evaluation.task_types import (
    ScoreBatch,
    ScoringOptions,
    TaskTypeNames,
    find_task_type,
    suggest_task_type,
)

__all__ = [
    "SCORINGS",
    "TASK_TYPES",
    "ScoreMetric",
    "Scorer",
    "apply_group_all_or_nothing",
    "infer_entry_point",
    "question_text",
    "reference_text",
    "score_predictions",
    "score_predictions_file",
]

TASK_TYPES = TaskTypeNames(lambda spec: spec.scored)
"""The task types moco_lit scores (registered ones with a scorer), in registration order."""

Score = float | None

SCORINGS: tuple[str, ...] = ("moco_lit", "moco")
"""Scoring profiles: moco_lit's corrected rules (the default) and MoCo's own (``moco_rules.py``)."""


# ---------------------------------------------------------------------------------------------
# Record fields shared by several task types
# ---------------------------------------------------------------------------------------------


def question_text(record: dict) -> str:
    """The question as a reader sees it: the input, or the question with its lettered options."""
    if record.get("input") is not None:
        return str(record["input"])
    question = str(record.get("question", record.get("prompt", "")))
    choices = record.get("choices") or {}
    options = "\n".join(f"{key}) {text}" for key, text in choices.items())
    return f"{question}\n{options}".strip()


def reference_text(record: dict) -> str:
    """The reference answer as text; a choice letter is written out with its option."""
    if record.get("output") is not None:
        return str(record["output"])
    answer = record.get("answer")
    choices = record.get("choices") or {}
    if isinstance(answer, str) and answer in choices:
        return f"{answer}) {choices[answer]}"
    if isinstance(answer, list):
        return ", ".join(map(str, answer))
    return "" if answer is None else str(answer)


def infer_entry_point(record: dict) -> str | None:
    """The function the tests exercise: a declared ``entry_point``, else the prompt's last
    ``def name(`` (HumanEval), else the name in the prompt's example ``assert name(`` (MBPP)."""
    if record.get("entry_point"):
        return str(record["entry_point"])
    prompt = str(record.get("input", record.get("prompt", "")))
    defs = re.findall(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", prompt, flags=re.MULTILINE)
    if defs:
        return defs[-1]
    asserted = re.search(r"assert\s+(?:not\s+)?(?:\w+\()?\s*([A-Za-z_]\w*)\s*\(", prompt)
    return asserted.group(1) if asserted else None


def apply_group_all_or_nothing(scores: dict[str, Score], records_by_id: dict[str, dict]) -> dict[str, Score]:
    """Examples sharing a ``question_id`` (CultureBench's statements of one question) score 1
    only if every one of them does. Examples without a ``question_id`` are left as they are."""
    groups: dict[str, list[str]] = {}
    for example_id in scores:
        question_id = records_by_id[example_id].get("question_id")
        if question_id is not None:
            groups.setdefault(str(question_id), []).append(example_id)
    grouped = dict(scores)
    for members in groups.values():
        value = 1.0 if all(scores[m] == 1.0 for m in members) else 0.0
        for member in members:
            grouped[member] = value
    return grouped


# ---------------------------------------------------------------------------------------------
# Scorer
# ---------------------------------------------------------------------------------------------


class Scorer:
    """Scores outputs of one task type; build with ``Scorer.for_task`` once per run."""

    def __init__(
        self,
        task_type: str,
        score_batch: Callable[[list[str], list[dict]], list[Score]],
        *,
        scoring: str = "moco_lit",
        strip_reasoning: bool = True,
        regroup: Callable[[dict[str, Score], dict[str, dict]], dict[str, Score]] | None = None,
    ) -> None:
        self.task_type = task_type
        self.scoring = scoring
        self._score_batch = score_batch
        self._strip_reasoning = strip_reasoning
        self._regroup = regroup

    @classmethod
    def for_task(
        cls,
        task_type: str,
        *,
        reward_model: str | None = None,
        verifier: str | None = None,
        encoder: str | None = None,
        device: str | torch.device = "cpu",
        coding_timeout_s: float = 10,
        coding_workers: int | None = None,
        scoring: str = "moco_lit",
        benchmark: str | None = None,
        split: str = "test",
    ) -> Scorer:
        """The scorer for ``task_type``; judge models load here, once (``None`` = MoCo's default).

        ``scoring="moco"`` gives MoCo's own rules (``moco_rules.py``), which also depend on the
        ``benchmark`` name (popqa, culturebench) and, for text_generation, on the ``split``.
        """
        spec = find_task_type(task_type)
        if spec is None or not spec.scored:
            raise UserError(
                f"unsupported task type {task_type!r}{suggest_task_type(task_type)}; "
                f"supported task types: {', '.join(TASK_TYPES)}"
            )
        if scoring not in SCORINGS:
            raise UserError(f"unknown scoring {scoring!r}; expected one of: {', '.join(SCORINGS)}")
        options = ScoringOptions(
            reward_model=reward_model,
            verifier=verifier,
            encoder=encoder,
            device=device,
            coding_timeout_s=coding_timeout_s,
            coding_workers=coding_workers or min(4, os.cpu_count() or 1),
            benchmark=_benchmark_name(benchmark),
            split=split,
        )
        if scoring == "moco":
            if spec.moco_scorer is None:
                raise UserError(f"--scoring moco does not support task type {task_type!r}")
            score_batch = spec.moco_scorer(options)
            regroup = moco_regroup(options.benchmark)
            return cls(task_type, score_batch, scoring="moco", strip_reasoning=False, regroup=regroup)
        return cls(task_type, spec.scorer(options), regroup=spec.regroup)

    def score(self, outputs: list[str], records: list[dict]) -> list[Score]:
        """One score per output (None where the task type has no score); reasoning is stripped."""
        if len(outputs) != len(records):
            raise ValueError(f"{len(outputs)} outputs but {len(records)} records")
        if not outputs:
            return []
        answers = [strip_thinking(str(o)) if self._strip_reasoning else str(o) for o in outputs]
        return self._score_batch(answers, records)

    def regroup(self, scores: dict[str, Score], records_by_id: dict[str, dict]) -> dict[str, Score]:
        """Scores of a whole split after rules that span examples (CultureBench's question groups)."""
        if self._regroup is not None:
            return self._regroup(scores, records_by_id)
        return scores


def _benchmark_name(benchmark: str | None) -> str:
    """A benchmark's name from its name or file path (MoCo's rules depend on it)."""
    if not benchmark:
        return ""
    return benchmark.rsplit("/", 1)[-1].removesuffix(".jsonl").removesuffix(".json")


# ---------------------------------------------------------------------------------------------
# moco_lit's rules, one per built-in task type (``builtin_task_types.py`` names them)
# ---------------------------------------------------------------------------------------------


def multiple_choice_rule(output: str, record: dict) -> Score:
    return 1.0 if extract_choice(output, record["choices"]) == str(record["answer"]) else 0.0


def exact_match_rule(output: str, record: dict) -> Score:
    matched = answers_equal(extract_final_answer(output), str(record["output"]), record.get("answer_type"))
    return 1.0 if matched else 0.0


def f1_match_rule(output: str, record: dict) -> Score:
    return best_alias_f1(extract_final_answer(output), record["output"])


def noncompliance_rule(output: str, record: dict) -> Score:
    return noncompliance_score(output, str(record.get("category", "")))


def no_score(output: str, record: dict) -> Score:
    """text_generation: outputs are kept, not scored."""
    return None


def reward_model_scorer(options: ScoringOptions) -> ScoreBatch:
    """The reward model's score of each output as an answer to the record's question."""
    judge = RewardModelJudge.load(options.reward_model or DEFAULT_REWARD_MODEL, device=options.device)
    return lambda outs, recs: judge.score([question_text(r) for r in recs], outs)


def verifier_scorer(options: ScoringOptions) -> ScoreBatch:
    """The verifier model's verdict on each extracted answer against the reference."""
    judge = VerifierJudge.load(options.verifier or DEFAULT_VERIFIER, device=options.device)
    return lambda outs, recs: _verify(judge, outs, recs)


def diversity_scorer(options: ScoringOptions) -> ScoreBatch:
    """How far each output's embedding is from the references' (1 - mean cosine similarity)."""
    judge = EmbeddingJudge.load(options.encoder or DEFAULT_ENCODER, device=options.device)
    return lambda outs, recs: _diversity(judge, outs, recs)


def coding_scorer(options: ScoringOptions) -> ScoreBatch:
    """1 when the extracted code passes the record's tests in the sandbox, else 0."""
    require_isolation()  # refuse before any generation when model code cannot be sandboxed
    return lambda outs, recs: _run_tests(outs, recs, options.coding_timeout_s, options.coding_workers)


def _run_tests(outputs: list[str], records: list[dict], timeout_s: float, workers: int) -> list[Score]:
    def one(pair: tuple[str, dict]) -> Score:
        output, record = pair
        if str(record.get("language", "python")).lower() != "python":
            return 0.0
        test = str(record.get("test", record.get("test_code", "")))
        result = run_python(
            extract_code(output), test, entry_point=infer_entry_point(record), timeout_s=timeout_s
        )
        return 1.0 if result.passed else 0.0

    # Threads only wait on child processes, so a small pool overlaps them without the GIL in the way.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, zip(outputs, records)))


def _verify(judge: VerifierJudge, outputs: list[str], records: list[dict]) -> list[Score]:
    answers = [extract_final_answer(o) for o in outputs]
    return judge.verify([question_text(r) for r in records], [reference_text(r) for r in records], answers)


def _diversity(judge: EmbeddingJudge, outputs: list[str], records: list[dict]) -> list[Score]:
    references = [_reference_list(r) for r in records]
    return [None if math.isnan(s) else s for s in judge.diversity(outputs, references)]


def _reference_list(record: dict) -> list[str]:
    reference = record.get("reference", [])
    return [str(r) for r in reference] if isinstance(reference, list) else [str(reference)]


# ---------------------------------------------------------------------------------------------
# torchmetrics
# ---------------------------------------------------------------------------------------------


class ScoreMetric(Metric):
    """Mean of per-example scores; NaN scores (no score) are skipped. Global mean under DDP."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor | list[Score]) -> None:
        """Add a batch of scores (a tensor, or a list where None means "no score")."""
        if not isinstance(scores, torch.Tensor):
            scores = torch.tensor([math.nan if s is None else float(s) for s in scores], dtype=torch.float64)
        values = scores.detach().to(device=self.total.device, dtype=torch.float64).flatten()
        values = values[~torch.isnan(values)]
        self.total += values.sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        """The mean score; NaN when no example had a score."""
        if self.count == 0:
            return torch.tensor(math.nan, dtype=torch.float64, device=self.total.device)
        return self.total / self.count


# ---------------------------------------------------------------------------------------------
# Predictions files
# ---------------------------------------------------------------------------------------------


def _read_predictions(path: Path, records_by_id: dict[str, dict]) -> dict[str, str]:
    """``{id: output}`` from a JSONL file, checking every line; ids compared as strings."""
    outputs: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read predictions file {path}: {error}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(
                f"{where}: not valid JSON ({error.msg}); expected one JSON object per line"
            ) from None
        if not isinstance(row, dict) or "id" not in row or "output" not in row:
            raise UserError(
                f'{where}: expected an object with "id" and "output", e.g. {{"id": 5, "output": "..."}}'
            )
        example_id = str(row["id"])
        if example_id in outputs:
            raise UserError(f"{where}: duplicate id {example_id!r}; each example may appear once")
        if example_id not in records_by_id:
            raise UserError(f"{where}: id {example_id!r} is not in the benchmark split being scored")
        outputs[example_id] = "" if row["output"] is None else str(row["output"])
    if not outputs:
        raise UserError(
            f'predictions file {path} has no records; expected one {{"id", "output"}} object per line'
        )
    return outputs


def score_predictions(
    records_by_id: dict[str, dict], predictions_path: Path, task_type: str, scorer: Scorer
) -> dict:
    """Score a predictions JSONL (``{"id", "output"}`` per line) against the benchmark, by id.

    Returns ``{"task_type", "n", "mean", "scores": {id: score}}`` with ids as strings, in file
    order; ``mean`` skips examples without a score and is None when none has one.
    """
    records = {str(k): v for k, v in records_by_id.items()}
    outputs = _read_predictions(Path(predictions_path), records)
    ids = list(outputs)
    values = scorer.score([outputs[i] for i in ids], [records[i] for i in ids])
    scores = scorer.regroup(dict(zip(ids, values)), records)
    present = [s for s in scores.values() if s is not None]
    mean = sum(present) / len(present) if present else None
    return {"task_type": task_type, "n": len(ids), "mean": mean, "scores": scores}


def score_predictions_file(
    records_by_id: dict[str, dict], predictions_path: Path, task_type: str, scorer: Scorer
) -> dict:
    """``score_predictions``, plus the per-example scores written to ``<stem>.scores.jsonl``.

    The returned summary gains ``"scores_path"``.
    """
    predictions_path = Path(predictions_path)
    result = score_predictions(records_by_id, predictions_path, task_type, scorer)
    scores_path = predictions_path.with_name(f"{predictions_path.stem}.scores.jsonl")
    with open(scores_path, "w", encoding="utf-8") as stream:
        for example_id, score in result["scores"].items():
            stream.write(json.dumps({"id": example_id, "score": score}) + "\n")
    return {**result, "scores_path": str(scores_path)}
