"""Converters from Hugging Face Hub datasets to moco_lit's record schema.

Used when MoCo's own files are not fetched. Each converter asks a ``RowLoader`` for the hub rows
(``datasets.load_dataset`` by default; tests pass fixture rows) and returns a ``Benchmark`` whose
records look like MoCo's. The splits follow one documented rule (docs/benchmarks.md):

* the hub has a labelled validation split and a test split: dev = validation, test = test;
* the hub has train and test: dev = ``dev_size`` rows of train after a seeded shuffle, test = test;
* the hub has one labelled split: a seeded shuffle, the first ``dev_size`` rows are dev, the rest test.

The shuffle seed is the constant ``SPLIT_SEED``, not the run's seed, so a name always means the
same examples. Multiple-choice sources that list the right answer first (GPQA, TruthfulQA) get
their options shuffled with a generator seeded from ``SPLIT_SEED`` and the question id.

Hub ids, configs, splits and fields were checked against the dataset cards / loader scripts
(see the "verified:" comment of each converter); numbers from these splits are not comparable
with MoCo's paper, whose exact splits are the MoCo files.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from moco_lit.data.benchmark import Benchmark, validate_records
from moco_lit.errors import UserError

SPLIT_SEED = 20240917
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

Row = dict[str, Any]
# (hub path, config or None, split, data_files or None) -> rows
RowLoader = Callable[[str, "str | None", str, "str | None"], list[Row]]


def datasets_row_loader(
    path: str, config: str | None, split: str, data_files: str | None = None
) -> list[Row]:
    """Rows of one hub split through ``datasets.load_dataset``; a ``UserError`` when it fails."""
    try:
        import datasets  # imported here: loading it costs seconds, and only this path needs it
    except ImportError as error:
        raise UserError(
            f"benchmark {path!r} comes from the Hugging Face Hub, which needs the datasets package: "
            "pip install 'moco-lit[hub]'"
        ) from error

    try:
        if data_files is not None:
            table = datasets.load_dataset(path, data_files=data_files, split=split)
        else:
            table = datasets.load_dataset(path, config, split=split)
    except Exception as error:  # datasets raises many types (connection, missing config, ...)
        where = f"{path}" + (f" ({config})" if config else "")
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(
            f"Could not load {where} split {split!r} from the Hugging Face Hub: {message}. "
            "Run `python -m moco_lit data fetch modelco` for MoCo's files, or pass --data.data_dir."
        ) from None
    return [dict(row) for row in table]


# ---------------------------------------------------------------------------------------------
# split rules


def seeded_shuffle(rows: Sequence[Row], seed: int = SPLIT_SEED) -> list[Row]:
    """``rows`` in an order fixed by ``seed`` (``random.Random`` is stable across platforms)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in order]


def split_one(rows: Sequence[Row], dev_size: int) -> tuple[list[Row], list[Row]]:
    """One labelled split: seeded shuffle, first ``dev_size`` rows dev, the rest test."""
    shuffled = seeded_shuffle(rows)
    return shuffled[:dev_size], shuffled[dev_size:]


def sample_dev(train: Sequence[Row], dev_size: int) -> list[Row]:
    """``dev_size`` rows of a train split, chosen by the seeded shuffle."""
    return seeded_shuffle(train)[:dev_size]


def shuffled_options(correct: str, wrong: Sequence[str], key: str) -> tuple[dict[str, str], str]:
    """Options A, B, ... in an order seeded by ``key``, and the letter of ``correct``."""
    options = [correct, *wrong]
    digest = hashlib.sha256(f"{SPLIT_SEED}:{key}".encode()).hexdigest()
    random.Random(int(digest[:16], 16)).shuffle(options)
    choices = {LETTERS[i]: text for i, text in enumerate(options)}
    return choices, LETTERS[options.index(correct)]


def _benchmark(name: str, task_type: str, source: str, dev: list[Row], test: list[Row]) -> Benchmark:
    where = f"hub {source}"
    return Benchmark(
        name,
        task_type,
        validate_records(dev, task_type, where, "dev"),
        validate_records(test, task_type, where, "test"),
        source=where,
    )


def _tagged(rows: list[Row], tag: str) -> list[Row]:
    """Rows with a ``_key`` ("tag-index") used as id when the hub gives none."""
    return [{**row, "_key": f"{tag}-{index}"} for index, row in enumerate(rows)]


# ---------------------------------------------------------------------------------------------
# converters, one per benchmark


def gsm8k(load: RowLoader) -> Benchmark:
    """verified: openai/gsm8k config "main", splits train/test, fields question, answer ("... #### 72")."""
    rows = {split: _tagged(load("openai/gsm8k", "main", split, None), split) for split in ("train", "test")}

    def record(row: Row) -> Row:
        final = row["answer"].split("####")[-1].strip().replace(",", "")
        return {"id": row["_key"], "input": row["question"], "output": final}

    dev = [record(row) for row in sample_dev(rows["train"], 200)]
    return _benchmark("gsm8k", "exact_match", "openai/gsm8k", dev, [record(r) for r in rows["test"]])


def math(load: RowLoader) -> Benchmark:
    """verified: HuggingFaceH4/MATH-500, split test (500), fields problem, answer, subject, level, unique_id."""
    rows = load("HuggingFaceH4/MATH-500", None, "test", None)
    records = [
        {
            "id": row["unique_id"],
            "input": row["problem"],
            "output": row["answer"],
            "subject": row.get("subject"),
            "level": row.get("level"),
        }
        for row in rows
    ]
    dev, test = split_one(records, 100)
    return _benchmark("math", "exact_match", "HuggingFaceH4/MATH-500", dev, test)


MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology "
    "college_chemistry college_computer_science college_mathematics college_medicine college_physics "
    "computer_security conceptual_physics econometrics electrical_engineering elementary_mathematics "
    "formal_logic global_facts high_school_biology high_school_chemistry high_school_computer_science "
    "high_school_european_history high_school_geography high_school_government_and_politics "
    "high_school_macroeconomics high_school_mathematics high_school_microeconomics high_school_physics "
    "high_school_psychology high_school_statistics high_school_us_history high_school_world_history "
    "human_aging human_sexuality international_law jurisprudence logical_fallacies machine_learning "
    "management marketing medical_genetics miscellaneous moral_disputes moral_scenarios nutrition "
    "philosophy prehistory professional_accounting professional_law professional_medicine "
    "professional_psychology public_relations security_studies sociology us_foreign_policy virology "
    "world_religions"
).split()


def mmlu_redux(load: RowLoader) -> Benchmark:
    """verified: edinburgh-dawg/mmlu-redux-2.0, one config per MMLU subject (57), split test,
    fields question, choices (list), answer (int index), error_type, source.

    Only questions annotated ``error_type == "ok"`` are kept: the others have no single right answer.
    """
    records = []
    for subject in MMLU_SUBJECTS:
        for index, row in enumerate(load("edinburgh-dawg/mmlu-redux-2.0", subject, "test", None)):
            if row.get("error_type", "ok") != "ok":
                continue
            choices = {LETTERS[i]: text for i, text in enumerate(row["choices"])}
            records.append(
                {
                    "id": f"{subject}-{index}",
                    "question": row["question"],
                    "choices": choices,
                    "answer": LETTERS[int(row["answer"])],
                    "subject": subject,
                }
            )
    dev, test = split_one(records, 1000)
    return _benchmark("mmlu_redux", "multiple_choice", "edinburgh-dawg/mmlu-redux-2.0", dev, test)


def arc_challenge(load: RowLoader) -> Benchmark:
    """verified: allenai/ai2_arc config ARC-Challenge, splits train/validation (299)/test (1172),
    fields id, question, choices {text: [...], label: [...]}, answerKey (labels are A-E or 1-4)."""

    def record(row: Row) -> Row:
        labels = list(row["choices"]["label"])
        choices = {LETTERS[i]: text for i, text in enumerate(row["choices"]["text"])}
        return {
            "id": row["id"],
            "question": row["question"],
            "choices": choices,
            "answer": LETTERS[labels.index(row["answerKey"])],
        }

    dev, test = (
        [record(row) for row in load("allenai/ai2_arc", "ARC-Challenge", split, None)]
        for split in ("validation", "test")
    )
    return _benchmark("arc_challenge", "multiple_choice", "allenai/ai2_arc", dev, test)


def truthfulqa(load: RowLoader) -> Benchmark:
    """verified: truthfulqa/truthful_qa config multiple_choice, split validation (817), fields
    question, mc1_targets {choices: [...], labels: [1, 0, ...]} with exactly one label 1."""
    records = []
    for index, row in enumerate(load("truthfulqa/truthful_qa", "multiple_choice", "validation", None)):
        targets = row["mc1_targets"]
        right = targets["labels"].index(1)
        wrong = [text for i, text in enumerate(targets["choices"]) if i != right]
        key = str(index)
        choices, answer = shuffled_options(targets["choices"][right], wrong, key)
        records.append({"id": key, "question": row["question"], "choices": choices, "answer": answer})
    dev, test = split_one(records, 200)
    return _benchmark("truthfulqa", "multiple_choice", "truthfulqa/truthful_qa", dev, test)


def popqa(load: RowLoader) -> Benchmark:
    """verified: akariasai/PopQA, split test (~14k), fields id, question, possible_answers (a JSON
    list in a string), s_pop, o_pop. The output stays a JSON list string, as in MoCo's file."""
    records = [
        {
            "id": row["id"],
            "input": row["question"],
            "output": row["possible_answers"],
            "s_pop": row.get("s_pop"),
            "o_pop": row.get("o_pop"),
        }
        for row in load("akariasai/PopQA", None, "test", None)
    ]
    dev, test = split_one(records, 1000)
    return _benchmark("popqa", "f1_match", "akariasai/PopQA", dev, test)


def humaneval(load: RowLoader) -> Benchmark:
    """verified: openai/openai_humaneval, split test (164), fields task_id, prompt,
    canonical_solution, test (defines check(candidate)), entry_point."""
    records = [
        {
            "id": row["task_id"],
            "input": row["prompt"],
            "test": row["test"],
            "language": "python",
            "entry_point": row["entry_point"],
        }
        for row in load("openai/openai_humaneval", None, "test", None)
    ]
    dev, test = split_one(records, 50)
    return _benchmark("humaneval", "coding", "openai/openai_humaneval", dev, test)


MBPP_INPUT = "{text}\nThe function must pass tests such as:\n{example}"


def _mbpp_record(row: Row) -> Row:
    # The hub's asserts call the function by its own name; the sandbox calls check(candidate).
    name_match = re.search(r"def\s+(\w+)\s*\(", row["code"])
    name = name_match.group(1) if name_match else ""
    asserts = [re.sub(rf"\b{re.escape(name)}\s*\(", "candidate(", test) for test in row["test_list"]]
    setup = row.get("test_setup_code") or ""
    body = "\n".join(f"    {line}" for line in asserts) or "    pass"
    return {
        "id": row["task_id"],
        "input": MBPP_INPUT.format(text=row["text"], example=row["test_list"][0] if row["test_list"] else ""),
        "test": f"{setup}\n\ndef check(candidate):\n{body}\n",
        "language": "python",
        "entry_point": name,
    }


def mbpp(load: RowLoader) -> Benchmark:
    """verified: google-research-datasets/mbpp config full, splits train/validation (90)/test (500)/prompt,
    fields task_id, text, code, test_list, test_setup_code, challenge_test_list."""
    dev, test = (
        [_mbpp_record(row) for row in load("google-research-datasets/mbpp", "full", split, None)]
        for split in ("validation", "test")
    )
    return _benchmark("mbpp", "coding", "google-research-datasets/mbpp", dev, test)


def medmcqa(load: RowLoader) -> Benchmark:
    """verified: openlifescienceai/medmcqa, splits train/validation (4183)/test (6150, answers hidden),
    fields id, question, opa, opb, opc, opd, cop (ClassLabel 0-3), subject_name.

    The test answers are not public, so the validation split is cut in two (seeded, dev 2091).
    """
    records = [
        {
            "id": row["id"],
            "question": row["question"],
            "choices": {letter: row[f"op{letter.lower()}"] for letter in "ABCD"},
            "answer": _letter(row["cop"]),
            "subject": row.get("subject_name"),
        }
        for row in load("openlifescienceai/medmcqa", None, "validation", None)
    ]
    dev, test = split_one(records, 2091)
    return _benchmark("medmcqa", "multiple_choice", "openlifescienceai/medmcqa", dev, test)


def _letter(value: Any) -> str:
    """An answer given as an index (0 -> A) or as a letter ("a"/"A")."""
    if isinstance(value, int):
        return LETTERS[value]
    return str(value).strip().upper()


def medqa(load: RowLoader) -> Benchmark:
    """verified (viewer + card): GBaker/MedQA-USMLE-4-options, splits train (10.2k)/test (1273),
    fields question, options {A..D: text}, answer_idx (letter), answer (text), meta_info."""
    rows = {
        split: _tagged(load("GBaker/MedQA-USMLE-4-options", None, split, None), split)
        for split in ("train", "test")
    }

    def record(row: Row) -> Row:
        return {
            "id": row["_key"],
            "question": row["question"],
            "choices": dict(row["options"]),
            "answer": _letter(row["answer_idx"]),
        }

    dev = [record(row) for row in sample_dev(rows["train"], 200)]
    return _benchmark(
        "medqa", "multiple_choice", "GBaker/MedQA-USMLE-4-options", dev, [record(r) for r in rows["test"]]
    )


PUBMEDQA_INPUT = "Question: {question}\n\nContext: {context}\n\nAnswer yes, no or maybe."


def pubmedqa(load: RowLoader) -> Benchmark:
    """verified: qiaojin/PubMedQA config pqa_labeled, split train (1000), fields pubid, question,
    context {contexts: [...], labels, meshes}, long_answer, final_decision (yes/no/maybe)."""
    records = [
        {
            "id": row["pubid"],
            "input": PUBMEDQA_INPUT.format(
                question=row["question"], context=" ".join(row["context"]["contexts"])
            ),
            "output": row["final_decision"],
        }
        for row in load("qiaojin/PubMedQA", "pqa_labeled", "train", None)
    ]
    dev, test = split_one(records, 500)
    return _benchmark("pubmedqa", "exact_match", "qiaojin/PubMedQA", dev, test)


def _gpqa(config: str, load: RowLoader) -> Benchmark:
    """verified: Idavidrein/gpqa configs gpqa_diamond/gpqa_main/gpqa_extended, split train only,
    fields Question, Correct Answer, Incorrect Answer 1/2/3 (gated: needs a hub login)."""
    records = []
    for index, row in enumerate(load("Idavidrein/gpqa", config, "train", None)):
        key = str(row.get("Record ID") or index)
        wrong = [row[f"Incorrect Answer {i}"].strip() for i in (1, 2, 3)]
        choices, answer = shuffled_options(row["Correct Answer"].strip(), wrong, key)
        records.append({"id": key, "question": row["Question"].strip(), "choices": choices, "answer": answer})
    dev, test = split_one(records, len(records) // 2)
    return _benchmark(config, "multiple_choice", f"Idavidrein/gpqa ({config})", dev, test)


BBH_TASKS = (
    "boolean_expressions causal_judgement date_understanding disambiguation_qa dyck_languages "
    "formal_fallacies geometric_shapes hyperbaton logical_deduction_five_objects "
    "logical_deduction_seven_objects logical_deduction_three_objects movie_recommendation "
    "multistep_arithmetic_two navigate object_counting penguins_in_a_table "
    "reasoning_about_colored_objects ruin_names salient_translation_error_detection snarks "
    "sports_understanding temporal_sequences tracking_shuffled_objects_five_objects "
    "tracking_shuffled_objects_seven_objects tracking_shuffled_objects_three_objects web_of_lies word_sorting"
).split()


def bbh(load: RowLoader) -> Benchmark:
    """verified: lukaemon/bbh, one config per task (27), split test, fields input, target."""
    records = [
        {"id": f"{task}-{index}", "input": row["input"], "output": row["target"], "domain": task}
        for task in BBH_TASKS
        for index, row in enumerate(load("lukaemon/bbh", task, "test", None))
    ]
    dev, test = split_one(records, 1000)
    return _benchmark("bbh", "exact_match", "lukaemon/bbh", dev, test)


def coconot(load: RowLoader) -> Benchmark:
    """verified: allenai/coconot config original, splits train/test (1001), fields id, category,
    subcategory, prompt, response. Categories match MoCo's ("Incomplete requests", ...)."""
    records = [
        {
            "id": row["id"],
            "input": row["prompt"],
            "category": row["category"],
            "subcategory": row.get("subcategory"),
        }
        for row in load("allenai/coconot", "original", "test", None)
    ]
    dev, test = split_one(records, 200)
    return _benchmark("coconot", "noncompliance", "allenai/coconot", dev, test)


ALPACA_EVAL_FILES = "hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval.json"


def alpacaeval(load: RowLoader) -> Benchmark:
    """verified: tatsu-lab/alpaca_eval config alpaca_eval, split eval (805), fields instruction,
    output, generator, dataset. The repo ships a loading script newer ``datasets`` refuses, so
    its JSON file is read directly (the json builder names its one split "train")."""
    records = [
        {"id": index, "input": row["instruction"], "output": row["output"]}
        for index, row in enumerate(load("json", None, "train", ALPACA_EVAL_FILES))
    ]
    dev, test = split_one(records, 200)
    return _benchmark("alpacaeval", "reward_model", "tatsu-lab/alpaca_eval", dev, test)


def theoremqa(load: RowLoader) -> Benchmark:
    """verified: TIGER-Lab/TheoremQA, split test (800), fields Question, Answer, Answer_type, Picture."""
    records = [
        {
            "id": index,
            "input": row["Question"],
            "output": _answer_text(row["Answer"]),
            "answer_type": row.get("Answer_type"),
        }
        for index, row in enumerate(load("TIGER-Lab/TheoremQA", None, "test", None))
    ]
    dev, test = split_one(records, 400)
    return _benchmark("theoremqa", "exact_match", "TIGER-Lab/TheoremQA", dev, test)


def _answer_text(value: Any) -> str:
    """Answers as text; lists and booleans keep a JSON spelling the scorer can parse back."""
    return value if isinstance(value, str) else json.dumps(value)


HUB_LOADERS: dict[str, Callable[[RowLoader], Benchmark]] = {
    "gsm8k": gsm8k,
    "math": math,
    "mmlu_redux": mmlu_redux,
    "arc_challenge": arc_challenge,
    "truthfulqa": truthfulqa,
    "popqa": popqa,
    "humaneval": humaneval,
    "mbpp": mbpp,
    "medmcqa": medmcqa,
    "medqa": medqa,
    "pubmedqa": pubmedqa,
    "gpqa_diamond": lambda load: _gpqa("gpqa_diamond", load),
    "gpqa_main": lambda load: _gpqa("gpqa_main", load),
    "gpqa_extended": lambda load: _gpqa("gpqa_extended", load),
    "bbh": bbh,
    "coconot": coconot,
    "alpacaeval": alpacaeval,
    "theoremqa": theoremqa,
}


def load_hub_benchmark(name: str, load_rows: RowLoader | None = None) -> Benchmark:
    """The benchmark ``name`` rebuilt from the Hub (``load_rows`` defaults to ``datasets``)."""
    if name not in HUB_LOADERS:
        raise UserError(f"No Hub converter named {name!r}; known: {', '.join(sorted(HUB_LOADERS))}.")
    return HUB_LOADERS[name](load_rows or datasets_row_loader)
