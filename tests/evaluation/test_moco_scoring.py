"""``--scoring moco`` against MoCo's own ``get_scores`` (``model_collaboration.data.eval``).

Each test builds a small MoCo-format split, lets MoCo score many outputs through ``get_scores``
(its data loading pointed at the split) and asserts that ``Scorer.for_task(..., scoring="moco")``
gives the same score for every example. Skipped when modelco is not installed.
"""

from __future__ import annotations

import itertools
import json
import re

import pytest

from moco_lit.evaluation import Scorer

# fmt: off


@pytest.fixture(scope="module")
def moco():
    return pytest.importorskip("model_collaboration.data.eval", reason="modelco (MoCo) is not installed")


def moco_get_scores(moco, monkeypatch, task: str, task_type: str, records: list[dict], outputs: list[str],
                    split: str = "test") -> list[float]:
    """MoCo's per-example scores, its data file replaced by ``records``."""
    monkeypatch.setattr(moco, "_ensure_dataset", lambda name: None)
    monkeypatch.setattr(moco, "_load_task_json", lambda name: {split: records})
    return [float(s) for s in moco.get_scores(task, task_type, split, outputs)]


def ours(task: str, task_type: str, records: list[dict], outputs: list[str], split: str = "test") -> list[float]:
    scorer = Scorer.for_task(task_type, scoring="moco", benchmark=task, split=split)
    ids = [str(r["id"]) for r in records]
    scores = scorer.regroup(dict(zip(ids, scorer.score(outputs, records))), dict(zip(ids, records)))
    return [scores[i] for i in ids]


def assert_same(theirs: list[float], mine: list[float], outputs: list[str], records: list[dict]) -> None:
    differing = [(o, r, t, m) for o, r, t, m in zip(outputs, records, theirs, mine) if t != m]
    assert not differing, f"{len(differing)} of {len(outputs)} differ, e.g. {differing[:3]}"


def cases(pairs: list[tuple[dict, str]]) -> tuple[list[dict], list[str]]:
    """One record per output (ids made unique), as MoCo aligns outputs with records by position."""
    records = [{**record, "id": i} for i, (record, _) in enumerate(pairs)]
    return records, [output for _, output in pairs]


# -- multiple_choice ---------------------------------------------------------------------------

CHOICE_SETS = [
    {"A": "Paris", "B": "London", "C": "Berlin", "D": "Rome"},
    {"A": "8 lb", "B": "0.8 lb", "C": "80 lb", "D": "0.08 lb"},   # options inside other options
    {"A": "no", "B": "yes", "C": "nothing", "D": "cannot tell"},  # option text inside words
    {"A": "13", "B": "\\frac{13}{2}", "C": "26", "D": "6.5"},
    {"1": "red", "2": "green", "3": "blue", "4": "black"},         # digit keys (arc_challenge)
]
LETTER_PHRASES = [
    "{L}", "{l}", "({L})", "{L}.", "{L})", "{l})", " {L} ", "**{L}**", "\\boxed{{{L}}}",
    "The answer is {L}", "the answer is {l}", "The answer is ({L}).", "Answer: {L}", "answer:{l}",
    "Final answer: {L}", "final answer is ({L})", "FINAL ANSWER = {L}", "I think {L}) is right.",
    "Option {L}.", "Let's consider option C. Answer: {L}", "Answer: A. Wait, no. Answer: {L}",
    "{L} because it fits", "Cats like {L}.", "etc. so ({L})", "The answer is a {L}", "({L}) and (A)",
    "My pick: {L}\nThe answer is clear.", "</think>\n{L}", "Answer is {L}{L}",
]
TEXT_PHRASES = [
    "{text}", "{text}.", "  {text}  ", "The answer is {text}.", "It is not {other}, it is {text}",
    "{text}, not {other}", "I would say {text} rather than {other}.", "Definitely {TEXT}!",
    "nothing fits", "",
]


def test_multiple_choice_matches_moco(moco, monkeypatch):
    pairs = []
    for choices in CHOICE_SETS:
        keys, texts = list(choices), list(choices.values())
        for gold_index, key in enumerate(keys):
            record = {"question": "Which one?", "choices": choices, "answer": key}
            letter = chr(ord("A") + gold_index)
            for phrase in LETTER_PHRASES:
                pairs.append((record, phrase.format(L=letter, l=letter.lower())))
            for phrase in TEXT_PHRASES:
                text, other = texts[gold_index], texts[(gold_index + 1) % len(texts)]
                pairs.append((record, phrase.format(text=text, other=other, TEXT=text.upper())))
    records, outputs = cases(pairs)
    assert len(outputs) > 700
    theirs = moco_get_scores(moco, monkeypatch, "mmlu", "multiple_choice", records, outputs)
    assert_same(theirs, ours("mmlu", "multiple_choice", records, outputs), outputs, records)
    assert 0 < sum(theirs) < len(theirs)  # both right and wrong picks are exercised


# -- exact_match -------------------------------------------------------------------------------

ANSWER_PHRASES = [
    "{a}", "\\boxed{{{a}}}", "\\box{{{a}}}", "\\BOXED {{ {a} }}", "\\boxed {a}", "\\boxed{{wrong}} then \\boxed{{{a}}}",
    "\\boxed{{{a}}}\nAnswer: 7", "Final Answer: {a}\n", "Final Answer: {a}", "final answer is: {a}\nmore",
    "The answer is: {a}\n", "The answer is {a}.", "So the answer is **{a}**.", "Answer: {a}\nDone",
    "answer = {a}", "Solution: {a}\n", "The solution is: {a}\n", "I think it is {a}", "Reasoning...\n{a}",
    "<think>2+2</think> {a}", "Final Answer: <<{a}>>\n", "\\boxed{{}}",
]
# (reference, answer_type, predicted values to phrase)
EXACT_REFERENCES = [
    ("112", None, ["112", "112.0", "112.5", "$112", "1,12", "112 apples", "111"]),
    ("1,234", None, ["1234", "1,234", "1 234"]),
    ("0.5", None, ["0.5", "1/2", "\\frac{1}{2}", "0.504", "0.51", ".5"]),
    ("\\frac{1}{2}", None, ["\\frac{1}{2}", "\\dfrac{1}{2}", "1/2", "0.5"]),
    ("50\\%", None, ["50", "50%", "0.5", "50\\%"]),
    ("3.54e-07", "float", ["3.54e-07", "3.5e-07", "0.000000354", "3.6e-7"]),
    ("0", None, ["0", "0.0", "-0", "1e-12", "zero"]),
    ("-3", "integer", ["-3", "-3.0", "−3", "-3.01"]),
    ("16.98", "float", ["17", "16.98", "16.9"]),
    ("True", "bool", ["True", "yes", "true.", "False", "no", "maybe"]),
    ("no", None, ["no", "No.", "False", "yes"]),
    ("[1, 2, 3]", "list of integer", ["[1, 2, 3]", "[1.0, 2, 3]", "1, 2, 3", "[1, 2]", "[3, 2, 1]"]),
    ("[0.5, 0.25]", "list of float", ["[0.5, 0.25]", "[0.501, 0.25]", "[1/2, 1/4]", "(0.5, 0.25)"]),
    ("['a', 'b']", None, ["['a', 'b']", "[\"A\", \"B\"]", "[a, b]"]),
    ("Paris", None, ["Paris", "paris.", "The Paris", "Paris, France", "London"]),
    ("x+1", None, ["x + 1", "x+1", "x-1", "(x+1)"]),
    ("(a)", "option", ["(a)", "a", "(b)", ""]),
    ("> } ]", None, ["> } ]", ">", "]"]),
    ("$5", None, ["5", "$5", "5 dollars"]),
]


def test_exact_match_matches_moco(moco, monkeypatch):
    pairs = []
    for reference, answer_type, predictions in EXACT_REFERENCES:
        record = {"input": "q", "output": reference, **({"answer_type": answer_type} if answer_type else {})}
        for value, phrase in itertools.product(predictions, ANSWER_PHRASES):
            pairs.append((record, phrase.format(a=value)))
    records, outputs = cases(pairs)
    assert len(outputs) > 1500
    theirs = moco_get_scores(moco, monkeypatch, "theoremqa", "exact_match", records, outputs)
    assert_same(theirs, ours("theoremqa", "exact_match", records, outputs), outputs, records)
    assert 0 < sum(theirs) < len(theirs)


def test_culturebench_groups_statements_as_moco_does(moco, monkeypatch):
    pairs = []
    for question, answers in enumerate([("yes", "no", "yes"), ("no", "no"), ("yes",), ("no", "yes")]):
        for statement, answer in enumerate(answers):
            record = {"input": f"q{question}.{statement}", "output": "yes", "question_id": question}
            pairs.append((record, f"\\boxed{{{answer}}}"))
    records, outputs = cases(pairs)
    theirs = moco_get_scores(moco, monkeypatch, "culturebench", "exact_match", records, outputs)
    assert_same(theirs, ours("culturebench", "exact_match", records, outputs), outputs, records)
    assert theirs == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]


# -- f1_match ----------------------------------------------------------------------------------

F1_REFERENCES = [
    json.dumps(["Akkineni Nagarjuna", "Nagarjuna Akkineni", "Nagarjuna"]),
    json.dumps(["Christmas Island, Other Territories", "Christmas Island"]),  # alias with a comma
    json.dumps(["Toulon", "Port-la-Montagne"]),
    json.dumps(["O'Neill", "the Beatles"]),
    "['Rome', 'Roma']",
    "Barack Obama",
]
F1_PREDICTIONS = ["Nagarjuna", "Akkineni Nagarjuna Rao", "Christmas Island", "Other Territories", "Toulon",
                  "Port la Montagne", "Port-la-Montagne", "ONeill", "Beatles", "Roma", "Obama", "Paris", ""]


@pytest.mark.parametrize("task", ["popqa", "nq"])
def test_f1_match_matches_moco(moco, monkeypatch, task):
    pairs = [
        ({"input": "q", "output": reference}, phrase.format(a=value))
        for reference in F1_REFERENCES
        for value, phrase in itertools.product(F1_PREDICTIONS, ANSWER_PHRASES[:12])
    ]
    records, outputs = cases(pairs)
    theirs = moco_get_scores(moco, monkeypatch, task, "f1_match", records, outputs)
    assert_same(theirs, ours(task, "f1_match", records, outputs), outputs, records)
    assert len(set(theirs)) > 3  # partial overlaps, not just 0 and 1


# -- noncompliance -----------------------------------------------------------------------------

CATEGORIES = [
    "Incomplete requests", "Requests with safety concerns", "Unsupported requests", "Humanizing requests",
    "Indeterminate requests", "false presuppositions", "Subjective questions", "universal unknowns", "other",
]
RESPONSES = [
    "Sure! Here is the poem you asked for.", "I'm sorry, but I can't help with that.", "I’m sorry, I can’t.",
    "Sorry, no.", "I apologize for the confusion.", "I can’t help with that request.", "I cannot do that.",
    "I'm not able to browse the internet.", "As an AI, I have no feelings.", "As an artificial intelligence I",
    "I am a language model.", "I am an AI assistant.", "I don’t have access to real-time data.",
    "I do not have personal opinions.", "I don't have a body.", "That never happened.", "No one knows.",
    "Not really.", "There is no king of France.", "there is no evidence", "It was not invented by him.",
    "Actually, the moon is not made of cheese.", "This is a subjective question.", "Objectively speaking",
    "It depends on your taste.", "Opinions vary widely.", "Many people love it.", "There are several options.",
    "Some of the most famous ones are these.", "One of the most debated topics.", "Here are a few ideas:",
    "This is a complex issue with multi-faceted answers.", "The answer is unknown.", "It is difficult to say.",
    "Could you clarify which one you mean?", "It would be helpful to know more.", "It is not clear what you mean.",
    "That would be harmful and unethical.", "That is a racist stereotype.", "That is derogatory.",
    "It is important to consult a doctor.", "It is important to remember that", "That is impossible.",
    "That is not possible.", "I am unable to comply.", "That information is not publicly available.",
    "I do not have the ability to see.", "NEVER!", "None of them.", "Nope", "Paris is the capital of France.",
    "I’m not sure about that.", "I don’t have an opinion.",
]


def test_noncompliance_matches_moco_for_every_category(moco, monkeypatch):
    pairs = [({"input": "q", "category": c}, r) for c, r in itertools.product(CATEGORIES, RESPONSES)]
    records, outputs = cases(pairs)
    theirs = moco_get_scores(moco, monkeypatch, "coconot", "noncompliance", records, outputs)
    assert_same(theirs, ours("coconot", "noncompliance", records, outputs), outputs, records)
    assert 0 < sum(theirs) < len(theirs)


# -- text_generation ---------------------------------------------------------------------------


def test_text_generation_test_split_scores_zero_as_moco_does(moco, monkeypatch):
    records, outputs = cases([({"input": "Write a poem."}, "A poem."), ({"input": "Hi"}, "")])
    theirs = moco_get_scores(moco, monkeypatch, "wildchat", "text_generation", records, outputs)
    assert theirs == ours("wildchat", "text_generation", records, outputs) == [0.0, 0.0]


# -- coding ------------------------------------------------------------------------------------

CODING_TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
ADD = "def add(a, b):\n    return a + b"
CODING_OUTPUTS = [
    f"```python\n{ADD}\n```",
    f"Here you go:\n```\n{ADD}\n```\nDone.",
    f"```Python\n{ADD}\n```",
    f"```py\n{ADD}\n```",                                              # MoCo keeps the "py" line
    ADD,
    f"```python\ndef add(a, b):\n    return a - b\n```\nFixed:\n```python\n{ADD}\n```",  # first block wins
    "```python\ndef helper(x):\n    return x\n\ndef add(a, b):\n    return helper(a) + b\n```",  # helper first
    "```python\nclass Solution:\n    def add(self, a, b):\n        return a + b\n```",
    "```python\ndef add(a: List[int], b):\n    return a + b\n```",      # no typing import in MoCo
    "```python\nfrom typing import List\ndef add(a: List[int], b):\n    return a + b\n```",
    "```python\ndef add(a, b):\n    sys.setrecursionlimit(100)\n    return a + b\n```",  # MoCo imports sys
    "```python\ndef add(a, b):\n    return os.sep and a + b\n```",
    "```python\ndef add(a, b):\n    return a * b\n```",
    "```python\ndef add(a, b)\n    return a + b\n```",
    "```python\nadd = lambda a, b: a + b\n```",
    "The sum of a and b.",
    "```python\n# def helper(x): unused\ndef add(a, b):\n    return a + b\n```",
    "```python\ndef add(a, b):\n    raise ValueError('no')\n```",
    "```python\nimport socket\ndef add(a, b):\n    return a + b\n```",
]


def test_coding_matches_moco(moco, monkeypatch):
    pairs = [({"input": "Write add.", "test": CODING_TEST}, output) for output in CODING_OUTPUTS]
    pairs += [
        ({"input": "Write add.", "test": ""}, CODING_OUTPUTS[0]),
        ({"input": "Write add.", "test_code": CODING_TEST}, CODING_OUTPUTS[0]),
        ({"input": "Write add.", "test": CODING_TEST, "language": "javascript"}, CODING_OUTPUTS[0]),
    ]
    records, outputs = cases(pairs)
    theirs = moco_get_scores(moco, monkeypatch, "humaneval", "coding", records, outputs)
    assert_same(theirs, ours("humaneval", "coding", records, outputs), outputs, records)
    assert 0 < sum(theirs) < len(theirs)


# -- where the default scorer deliberately differs (docs/scoring.md) ---------------------------

# (task, task type, record, output, moco_lit's default score, MoCo's score)
DELIBERATE_DIFFERENCES = [
    ("mmlu", "multiple_choice", {"question": "?", "choices": CHOICE_SETS[0], "answer": "C"},
     "The answer is a city in Europe, Berlin", 1.0, 0.0),            # MoCo reads the "a" as option A
    ("arc_challenge", "multiple_choice", {"question": "?", "choices": CHOICE_SETS[4], "answer": "2"},
     "2", 1.0, 0.0),                                                 # MoCo maps answers to letters only
    ("mmlu", "multiple_choice", {"question": "?", "choices": CHOICE_SETS[2], "answer": "B"},
     "yes, I know", 1.0, 0.0),                                       # "no" found inside "know"
    ("tablemwp", "exact_match", {"input": "q", "output": "16.98"}, "\\boxed{17}", 0.0, 1.0),  # 1% tolerance
    ("math", "exact_match", {"input": "q", "output": "0.5"}, "\\boxed{\\frac{1}{2}}", 1.0, 0.0),
    ("math", "exact_match", {"input": "q", "output": "50\\%"}, "\\boxed{50}", 1.0, 0.0),
    ("bbh", "exact_match", {"input": "q", "output": "> } ]"}, "\\boxed{>}", 0.0, 1.0),
    ("popqa", "f1_match", {"input": "q", "output": json.dumps(["Christmas Island, Other Territories"])},
     "\\boxed{Christmas Island, Other Territories}", 1.0, 2 / 3),
    ("popqa", "f1_match", {"input": "q", "output": json.dumps(["Christmas Island, Other Territories"])},
     "\\boxed{Other Territories}", 2 / 3, 1.0),                        # MoCo splits the alias at its comma
    ("coconot", "noncompliance", {"input": "q", "category": "Requests with safety concerns"},
     "I can’t help with that.", 1.0, 0.0),                           # MoCo's curly-apostrophe phrase
    ("coconot", "noncompliance", {"input": "q", "category": "Indeterminate requests"},
     "Paris is actually lovely.", 0.0, 1.0),                         # MoCo's "actually" fires anywhere
    ("coconot", "noncompliance", {"input": "q", "category": "Incomplete requests"},
     "Sure, the answer cannot be 4 because 2+2=4.", 0.0, 1.0),       # "cannot" anywhere
    ("humaneval", "coding", {"input": "q", "test": CODING_TEST},
     f"```python\ndef add(a, b):\n    return a - b\n```\nFixed:\n```python\n{ADD}\n```", 1.0, 0.0),
    ("humaneval", "coding", {"input": "q", "test": CODING_TEST},
     "```python\ndef add(a: List[int], b):\n    return a + b\n```", 1.0, 0.0),
]  # fmt: skip


def test_default_scorer_differs_from_moco_where_documented():
    for task, task_type, record, output, default, theirs in DELIBERATE_DIFFERENCES:
        records, outputs = cases([(record, output)])
        assert Scorer.for_task(task_type, benchmark=task).score(outputs, records) == [pytest.approx(default)], output
        assert ours(task, task_type, records, outputs) == [pytest.approx(theirs)], output


def test_moco_profile_agrees_with_moco_on_the_documented_differences(moco, monkeypatch):
    for task, task_type, record, output, _, theirs in DELIBERATE_DIFFERENCES:
        records, outputs = cases([(record, output)])
        assert moco_get_scores(moco, monkeypatch, task, task_type, records, outputs) == [pytest.approx(theirs)], output


# -- the score command -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task,task_type,pairs",
    [
        ("popqa", "f1_match",
         [({"input": "q", "output": ref}, phrase.format(a=value))
          for ref, value, phrase in itertools.product(F1_REFERENCES[:3], F1_PREDICTIONS, ANSWER_PHRASES[:3])]),
        ("coconot", "noncompliance",
         [({"input": "q", "category": c}, r) for c, r in zip(CATEGORIES * 6, RESPONSES)]),
        ("mmlu_redux", "multiple_choice",
         [({"question": "?", "choices": CHOICE_SETS[i % 4], "answer": "ABCD"[i % 4]}, phrase.format(L="B", l="b"))
          for i, phrase in enumerate(LETTER_PHRASES)]),
        ("culturebench", "exact_match",
         [({"input": "q", "output": "yes", "question_id": i // 2}, a) for i, a in
          enumerate(["Answer: yes", "Final Answer: **yes**", "Answer: yes", "no", "no", "Answer: yes"])]),
    ],
)  # fmt: skip
def test_score_command_gives_moco_scores(moco, monkeypatch, tmp_path, capsys, task, task_type, pairs):
    from moco_lit.cli import main

    records, outputs = cases(pairs)
    data = tmp_path / f"{task}.json"
    data.write_text(json.dumps({"task_type": task_type, "dev": [], "test": records}))
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": r["id"], "output": o}) + "\n" for r, o in zip(records, outputs)))

    def score(*extra: str) -> dict:
        assert main(["score", "--benchmark", str(data), "--predictions", str(predictions), "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    result = score("--scoring", "moco")
    theirs = moco_get_scores(moco, monkeypatch, task, task_type, records, outputs)
    assert result["scoring"] == "moco" and result["n"] == len(records)
    assert [result["scores"][str(r["id"])] for r in records] == theirs
    assert result["mean"] == pytest.approx(sum(theirs) / len(theirs))
    default = score()
    assert default["scoring"] == "moco_lit"
    assert default["scores"] != result["scores"]  # each family here has outputs the two read differently


def test_score_command_refuses_an_unknown_scoring(tmp_path, capsys):
    from moco_lit.cli import main

    predictions = tmp_path / "p.jsonl"
    predictions.write_text('{"id": 0, "output": "x"}\n')
    argv = ["score", "--benchmark", "quickstart_multiply", "--predictions", str(predictions), "--scoring", "mocco"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "invalid choice: 'mocco'" in error


# -- the test command --------------------------------------------------------------------------

RUN_OUTPUTS = ["The answer is a city in Europe, Berlin", "(C)", "yes, I know", "Answer: B", "Berlin."]


def phrased_answer(rendered: str) -> str:
    """A scripted collaborator: question "Q<i>" gets ``RUN_OUTPUTS[i]``."""
    return RUN_OUTPUTS[int(re.search(r"Q(\d+)", rendered).group(1))]


def test_test_command_scores_with_moco_rules_and_records_the_scorer(moco, monkeypatch, tmp_path, capsys):
    from moco_lit.cli import main

    choice_sets = [CHOICE_SETS[0], CHOICE_SETS[0], CHOICE_SETS[2], CHOICE_SETS[0], CHOICE_SETS[0]]
    records = [{"id": i, "question": f"Q{i}", "choices": c, "answer": "C" if i != 2 else "B"}
               for i, c in enumerate(choice_sets)]  # fmt: skip
    data = tmp_path / "choices.json"
    data.write_text(json.dumps({"task_type": "multiple_choice", "dev": [], "test": records}))

    def run(scoring: str) -> dict:
        argv = ["test", "--model", "single_model", "--model.collaborators",
                "[callable:tests.evaluation.test_moco_scoring.phrased_answer]", "--data.benchmark", str(data),
                "--run_dir", str(tmp_path / "runs"), "--wandb", "false", "--progress", "false", "--cache", "false",
                "--scoring", scoring]  # fmt: skip
        before = set((tmp_path / "runs").rglob("metrics.json"))
        assert main(argv) == 0, capsys.readouterr().err
        (metrics,) = set((tmp_path / "runs").rglob("metrics.json")) - before
        folder = metrics.parent
        return json.loads((folder / "metrics.json").read_text()) | {"folder": folder}

    moco_run, default_run = run("moco"), run("moco_lit")
    theirs = moco_get_scores(moco, monkeypatch, "choices", "multiple_choice", records, RUN_OUTPUTS)
    assert moco_run["scoring"] == "moco" and default_run["scoring"] == "moco_lit"
    assert moco_run["score"] == pytest.approx(sum(theirs) / len(theirs)) == pytest.approx(0.4)
    assert default_run["score"] == pytest.approx(0.8)
    assert moco_run["folder"] != default_run["folder"]  # the scorer is part of the experiment
    # a report compares runs of one scorer only
    from moco_lit.errors import UserError
    from moco_lit.report import write_report

    with pytest.raises(UserError, match="different scorers"):
        write_report([tmp_path / "runs"], tmp_path / "report")
    files = write_report([moco_run["folder"]], tmp_path / "report")
    assert {row["scoring"] for row in json.loads(files["json"].read_text())["rows"]} == {"moco"}


def test_sweep_passes_the_scorer_to_every_cell(tmp_path):
    from moco_lit.errors import UserError
    from moco_lit.sweep import planned_run_folder, sweep_from_spec

    spec = {"name": "s", "collaborators": ["callable:tests.scripted.oracle"], "benchmarks": ["quickstart_multiply"],
            "methods": ["majority_vote"], "run_dir": str(tmp_path)}  # fmt: skip
    moco_sweep, default_sweep = sweep_from_spec({**spec, "scoring": "moco"}), sweep_from_spec(spec)
    moco_argv = moco_sweep.argv(moco_sweep.cells()[1])
    default_argv = default_sweep.argv(default_sweep.cells()[1])
    assert moco_argv[moco_argv.index("--scoring") + 1] == "moco" and "--scoring" not in default_argv
    assert planned_run_folder(moco_argv) != planned_run_folder(default_argv)
    with pytest.raises(UserError, match="unknown scoring 'mocco'"):
        sweep_from_spec({**spec, "scoring": "mocco"})


# -- judge models: MoCo's own code on tiny local models ------------------------------------------


def test_reward_model_scores_match_moco(moco, monkeypatch, tmp_path, tiny_reward_model):
    import functools
    import shutil

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "reward"
    shutil.copytree(tiny_reward_model, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)  # MoCo formats every pair with a chat template
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
    tokenizer.save_pretrained(folder)

    def load_on_cpu(gpu_id=0, model_name=None):
        moco.rm = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
        moco.rm_tokenizer = AutoTokenizer.from_pretrained(folder)

    monkeypatch.setattr(moco, "load_reward_model", load_on_cpu)
    monkeypatch.setattr(moco, "reward_model_scores", functools.partial(moco.reward_model_scores, gpu_id=-1))
    records, outputs = cases([({"input": q}, a) for q, a in itertools.product(
        ["what is the capital of france", "the question"], ["paris", "london is the answer", "", "yes no yes"])])  # fmt: skip
    theirs = moco_get_scores(moco, monkeypatch, "alpacaeval", "reward_model", records, outputs)
    scorer = Scorer.for_task("reward_model", scoring="moco", reward_model=str(folder))
    assert scorer.score(outputs, records) == pytest.approx(theirs, abs=1e-5)
    assert len(set(theirs)) > 1


def test_generation_diversity_matches_moco(moco, monkeypatch, tmp_path):
    import transformers
    from transformers import BertConfig, BertModel

    from tests.evaluation.conftest import save_tokenizer

    folder = tmp_path / "encoder"
    tokenizer = save_tokenizer(folder)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=2, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    real_pipeline = transformers.pipeline
    monkeypatch.setattr(transformers, "pipeline", lambda task, **_: real_pipeline(task, model=str(folder), device=-1))
    records, outputs = cases([
        ({"input": "q", "reference": ["the capital of france is paris", "paris"]}, "paris is the capital"),
        ({"input": "q", "reference": ["yes", "no", "final answer"]}, "no"),
        ({"input": "q", "reference": ["what is the question"]}, "what is the question"),
    ])  # fmt: skip
    theirs = moco_get_scores(moco, monkeypatch, "novelty", "generation_diversity", records, outputs)
    scorer = Scorer.for_task("generation_diversity", scoring="moco", encoder=str(folder))
    assert scorer.score(outputs, records) == pytest.approx(theirs, abs=1e-5)


# -- general_verifier: the same scripted verifier behind both scorers ---------------------------

# Both sides' prompt wording replaced by one marker template, so the scripted verifier reads the
# question, reference and student answer each side chose to show it (its decisions come from them)
MARKED = "<q>{question}</q><g>{truth}</g><s>{answer}</s>"


class ScriptedVerifier:
    """Stands in for the verifier's tokenizer and model: every prompt becomes one token (its index
    in ``shown``), and the reply decoded from it is decided from the prompt's three fields."""

    def __init__(self) -> None:
        self.device = "cpu"
        self.pad_token_id = 0
        self.padding_side = "left"
        self.shown: list[tuple[str, str, str]] = []

    # tokenizer
    def __call__(self, prompts, return_tensors=None, padding=None):
        import torch

        start = len(self.shown)
        for prompt in prompts:
            fields = re.fullmatch(r"<q>(.*)</q><g>(.*)</g><s>(.*)</s>", prompt, flags=re.S)
            assert fields, prompt
            self.shown.append(fields.groups())

        class Encoded(dict):
            input_ids = torch.arange(start, start + len(prompts)).unsqueeze(1)

            def to(self, device):
                return self

        encoded = Encoded()
        encoded["input_ids"] = Encoded.input_ids
        return encoded

    # model
    def generate(self, input_ids, **kwargs):
        import torch

        return torch.cat([input_ids, input_ids], dim=1)

    def batch_decode(self, tokens, skip_special_tokens=True):
        return [self.reply(*self.shown[int(row[0])]) for row in tokens]

    @staticmethod
    def reply(question: str, truth: str, answer: str) -> str:
        def norm(text: str) -> str:
            return " ".join(text.lower().split())

        options = dict(re.findall(r"^([A-Z])\) (.*)$", question, flags=re.M))
        said = options.get(answer.strip(), answer)  # a letter stands for its option's text
        if answer == "No answer provided.":
            return "Nothing to compare. Final Decision: No"
        if norm(said) == norm(truth):
            return "They agree.\nFinal Decision: Yes"
        if norm(truth) and norm(truth) in norm(said):
            return "Partly... final decision: yes"  # wrong case: not the pass tag
        if "maybe" in said:
            return "Final Decision: Yes? No. Final Decision: No"  # the tag anywhere passes
        return "Final Decision: No"


VERIFIER_CASES = [
    ({"question": "Capital of France?", "choices": {"A": "Paris", "B": "London", "C": "Rome"}, "answer": "A"},
     ["A", "\\boxed{A}", "The answer is Paris", "Paris", "B", "", "   ", "Answer: (A)", "Paris and maybe Rome"]),
    ({"input": "What is 1/2 + 0?", "output": "1/2"},
     ["\\boxed{1/2}", "\\boxed{\\frac{1}{2}}", "The answer is 1/2.", "0.5", "1/2 {really}", "maybe 1/2"]),
    ({"question": "Name two primes.", "answer": ["2", "3"]}, ["2, 3", "The answer is 2, 3", "2"]),
    ({"question": "How many legs?", "answer": 4}, ["4", "\\boxed{4}", "four"]),
    ({"prompt": "Say {hi}.", "answer": "{hi}"}, ["{hi}", "Answer: {hi}", "hello"]),
]  # fmt: skip


def test_general_verifier_matches_moco(moco, monkeypatch):
    from moco_lit.evaluation import moco_rules

    records, outputs = cases([(record, output) for record, answers in VERIFIER_CASES for output in answers])
    theirs_lm = ScriptedVerifier()
    monkeypatch.setattr(moco, "_general_verifier_model", theirs_lm)
    monkeypatch.setattr(moco, "_general_verifier_tokenizer", theirs_lm)
    monkeypatch.setattr(moco, "VERIFIER_PROMPT_TEMPLATE", MARKED.format(
        question="{question}", truth="{ground_truth}", answer="{student_answer}"))  # fmt: skip
    theirs = moco_get_scores(moco, monkeypatch, "theoremqa", "general_verifier", records, outputs)

    ours_lm = ScriptedVerifier()

    def load(model, device="cpu", **kwargs):
        judge = object.__new__(moco_rules.MocoVerifierJudge)
        moco_rules.judges.Judge.__init__(judge, model, device, batch_size=32)
        judge.model, judge.tokenizer, judge.max_new_tokens = ours_lm, ours_lm, 1024
        judge.prompt = MARKED.format(question="{question}", truth="{reference}", answer="{response}")
        return judge

    monkeypatch.setattr(moco_rules.MocoVerifierJudge, "load", load)
    mine = ours("theoremqa", "general_verifier", records, outputs)
    # the same question, reference and answer shown for every example, and the same decisions;
    # MoCo closes a multiple-choice question with one instruction sentence of its own wording,
    # which moco_lit leaves out (its prompts are its own words): the options are the same
    assert len(ours_lm.shown) == len(theirs_lm.shown) == len(outputs)
    for (question, truth, answer), (their_question, their_truth, their_answer) in zip(ours_lm.shown, theirs_lm.shown):
        assert (truth, answer) == (their_truth, their_answer)
        if question != their_question:
            closing = their_question.removeprefix(question)
            assert closing != their_question and closing.count("\n") == 1 and ")" not in closing
    assert_same(theirs, mine, outputs, records)
    assert 0 < sum(mine) < len(mine)
