"""The benchmarks moco_lit knows by name: one declarative entry per MoCo data file.

Each entry says which task type scores it, which file of MoCo's data folder holds its exact
dev/test splits, and (for the core benchmarks) which Hugging Face Hub converter in
``moco_lit.data.hub`` can rebuild it when the MoCo files are not at hand. Adding a benchmark is
adding one line here, or no line at all: any MoCo-format file can be loaded by its path.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from moco_lit.errors import UserError
from moco_lit.evaluation.task_types import TASK_TYPE_NAMES, TaskTypeNames

# Every registered task type (each a spec in ``moco_lit.evaluation.task_types``), and those moco_lit
# only loads (their records are served, their outputs are kept, but their spec has no scorer).
TASK_TYPES = TASK_TYPE_NAMES
UNSCORED_TASK_TYPES = TaskTypeNames(lambda spec: not spec.scored)


@dataclass(frozen=True)
class BenchmarkInfo:
    """One registered benchmark.

    ``moco_file`` is the file name inside MoCo's ``model_collaboration/data/`` folder;
    ``hub`` names a converter in ``moco_lit.data.hub.HUB_LOADERS`` (None: MoCo files only);
    ``repeated_ids`` marks MoCo files whose splits reuse an id for different questions, which the
    loader renames ``ID#2``, ``ID#3``, ... so that every example stays addressable by id.
    """

    name: str
    task_type: str
    moco_file: str
    hub: str | None = None
    description: str = ""
    repeated_ids: bool = False


def _entry(
    name: str, task_type: str, description: str, hub: str | None = None, repeated_ids: bool = False
) -> BenchmarkInfo:
    return BenchmarkInfo(name, task_type, f"{name}.json", hub, description, repeated_ids)


_ENTRIES = (
    _entry("agieval", "multiple_choice", "AGIEval: standardised human exam questions"),
    _entry("agieval_tiny", "multiple_choice", "AGIEval, 40 + 40 questions for quick runs"),
    _entry("alpacaeval", "reward_model", "AlpacaEval instructions, scored by a reward model", "alpacaeval"),
    _entry("apex_shortlist", "general_verifier", "APEX shortlist: hard maths, checked by a verifier LM"),
    _entry("arc_challenge", "multiple_choice", "ARC-Challenge grade-school science", "arc_challenge"),
    _entry("bbh", "exact_match", "BIG-Bench Hard, 27 reasoning tasks", "bbh"),
    _entry("bixbench", "multiple_choice", "BixBench bioinformatics analysis questions"),
    _entry("blend", "multiple_choice", "BLEnD everyday cultural knowledge", repeated_ids=True),
    _entry("chembench", "multiple_choice", "ChemBench chemistry knowledge and reasoning"),
    _entry("coconot", "noncompliance", "CoCoNot: requests a model should not simply comply with", "coconot"),
    _entry("communitybench", "multiple_choice", "CommunityBench: community-specific preferences"),
    _entry("culturalbench_hard", "multiple_choice", "CulturalBench (hard) cultural knowledge"),
    _entry("culturebench", "exact_match", "CultureBench free-text cultural questions"),
    _entry("gpqa_diamond", "multiple_choice", "GPQA diamond: graduate-level science", "gpqa_diamond"),
    _entry("gpqa_extended", "multiple_choice", "GPQA extended: graduate-level science", "gpqa_extended"),
    _entry("gpqa_main", "multiple_choice", "GPQA main: graduate-level science", "gpqa_main"),
    _entry("gsm8k", "exact_match", "GSM8K grade-school maths word problems", "gsm8k"),
    _entry("human_interest", "reward_model", "Human-interest open questions, scored by a reward model"),
    _entry("humaneval", "coding", "HumanEval Python functions with unit tests", "humaneval"),
    _entry("ifeval", "ifeval", "IFEval verifiable instructions (loaded, not scored here)"),
    _entry("infinite_chat_diversity", "generation_diversity", "Infinity-Chat prompts, scored by diversity"),
    _entry(
        "infinite_chat_open", "reward_model", "Infinity-Chat open-ended prompts, scored by a reward model"
    ),
    _entry("kaleidoscope", "multiple_choice", "Kaleidoscope multilingual exam questions"),
    _entry("kernelbench", "kernel_bench", "KernelBench GPU kernels (loaded, not scored here)"),
    _entry("lab_bench", "multiple_choice", "LAB-Bench biology research tasks"),
    _entry("math", "exact_match", "MATH competition mathematics", "math", repeated_ids=True),
    _entry("mbpp", "coding", "MBPP basic Python problems with unit tests", "mbpp"),
    _entry("medmcqa", "multiple_choice", "MedMCQA medical entrance exam questions", "medmcqa"),
    _entry("medqa", "multiple_choice", "MedQA USMLE questions, 4 options", "medqa"),
    _entry("mixeval", "multiple_choice", "MixEval multiple-choice mixture"),
    _entry("mmlu_redux", "multiple_choice", "MMLU-Redux re-annotated MMLU", "mmlu_redux"),
    _entry("mmluprox", "multiple_choice", "MMLU-ProX multilingual MMLU-Pro"),
    _entry("popqa", "f1_match", "PopQA entity-centric factual questions", "popqa"),
    _entry("pubmedqa", "exact_match", "PubMedQA yes/no/maybe over abstracts", "pubmedqa"),
    _entry("sciencemeter", "multiple_choice", "ScienceMeter scientific knowledge updates"),
    _entry("sciriff", "exact_match", "SciRIFF scientific literature understanding"),
    _entry("scitarc", "general_verifier", "SciTaRC scientific reasoning, checked by a verifier LM"),
    _entry("smdd", "smdd", "Small-molecule drug design (loaded, not scored here)"),
    _entry("tablemwp_free_text", "exact_match", "TabMWP table maths, free-text answers"),
    _entry("tablemwp_multiple_choice", "multiple_choice", "TabMWP table maths, multiple choice"),
    _entry("theoremqa", "exact_match", "TheoremQA theorem-driven STEM questions", "theoremqa"),
    _entry("truthfulqa", "multiple_choice", "TruthfulQA (MC1) imitative falsehoods", "truthfulqa"),
    _entry("value_drifts", "reward_model", "Value drifts: opinion prompts, scored by a reward model"),
    _entry("wikidyk", "f1_match", "WikiDYK recent Wikipedia facts"),
    _entry("wildchat", "reward_model", "WildChat real user requests, scored by a reward model"),
)

BENCHMARKS: dict[str, BenchmarkInfo] = {entry.name: entry for entry in _ENTRIES}


def get_benchmark(name: str) -> BenchmarkInfo:
    """The registry entry for ``name``; a ``UserError`` naming close matches when there is none."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    close = difflib.get_close_matches(name, list(BENCHMARKS), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UserError(
        f"Unknown benchmark {name!r}.{hint} See `python -m moco_lit data list` for the known names, "
        "or pass the path of a MoCo-format .json or a .jsonl file."
    )
