"""``python -m moco_lit score``: score a file of outputs made elsewhere against a benchmark split.

The file is JSONL with ``{"id", "output"}`` per line, matched to the split's records by id, or a
MoCo log (which names its own benchmark and lists outputs in the split's order). The scorer is the
benchmark's task type's (moco_lit's rules, or MoCo's with ``--scoring moco``); the mean comes with
its interval over the examples.
"""

from __future__ import annotations

import json
from pathlib import Path

from moco_lit.argv import CommandParser
from moco_lit.convert import moco_log_predictions, moco_log_task
from moco_lit.data import load_benchmark
from moco_lit.errors import UserError
from moco_lit.evaluation import Scorer, score_predictions_file
from moco_lit.evaluation.sandbox import allow_unsafe_code_execution
from moco_lit.evaluation.stats import score_interval


def main(argv: list[str]) -> int:
    parser = CommandParser(
        prog="python -m moco_lit score",
        description="Score a JSONL file of outputs ({'id', 'output'} per line) against a benchmark split, by id.",
    )
    parser.add_argument("--benchmark", default=None, help="benchmark name or data file")
    parser.add_argument("--predictions", required=True, type=Path, help="JSONL of id+output, or a MoCo log")
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    parser.add_argument("--data_dir", default=None, help="folder of benchmark files")
    parser.add_argument("--task_type", default=None, help="task type of a file that does not say")
    parser.add_argument("--reward_model", default=None)
    parser.add_argument("--verifier", default=None)
    parser.add_argument("--encoder", default=None)
    parser.add_argument(
        "--scoring",
        default="moco_lit",
        choices=["moco_lit", "moco"],
        help="moco: MoCo's own rules, quirks included",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    parser.add_argument(
        "--allow_unsafe_code_execution",
        action="store_true",
        help="without bubblewrap, run model-written code with best-effort limits only",
    )
    args = parser.parse_args(argv)
    if args.allow_unsafe_code_execution:
        allow_unsafe_code_execution()
    if not args.predictions.is_file():
        raise UserError(f"predictions file {str(args.predictions)!r} does not exist")
    moco_task = moco_log_task(args.predictions)
    if not (args.benchmark or moco_task):
        raise UserError("--benchmark is required (only a MoCo log names its own benchmark)")
    benchmark = load_benchmark(args.benchmark or moco_task, args.data_dir, args.task_type)
    records = {str(r["id"]): r for r in benchmark.split(args.split)}
    if moco_task is not None:  # MoCo logs list outputs in the split's order, without ids
        args.predictions = moco_log_predictions(args.predictions, benchmark.split(args.split))
    scorer = Scorer.for_task(
        benchmark.task_type,
        reward_model=args.reward_model,
        verifier=args.verifier,
        encoder=args.encoder,
        scoring=args.scoring,
        benchmark=benchmark.name,
        split=args.split,
    )
    result = score_predictions_file(records, args.predictions, benchmark.task_type, scorer)
    interval = score_interval(list(result["scores"].values()))
    summary = {
        "benchmark": benchmark.name,
        "task_type": benchmark.task_type,
        "scoring": args.scoring,
        **result,
        "mean_ci": None if interval is None else [interval.low, interval.high],
        "ci_method": None if interval is None else interval.method,
        "confidence": None if interval is None else interval.confidence,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        shown = "no score" if summary["mean"] is None else f"{summary['mean']:.4f}"
        if interval is not None:
            shown += f" ({100 * interval.confidence:g}% CI [{interval.low:.4f}, {interval.high:.4f}], {interval.method})"
        print(f"{benchmark.name} ({benchmark.task_type}, {args.split}): mean {shown} over {summary['n']}")
    return 0
