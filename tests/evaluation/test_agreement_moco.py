"""Agreement with MoCo's own scoring functions: the installed ``modelco`` (or an sdist unpacked at /tmp/moco).

Skipped when neither is present. Clear-cut outputs must score the same; the cases where moco_lit
deliberately differs (docs/scoring.md) are listed and checked to differ as documented.
"""

import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from moco_lit.evaluation.extraction import answers_equal, best_alias_f1, extract_choice, extract_final_answer

_INSTALLED = importlib.util.find_spec("model_collaboration")
MOCO_DATA = (
    Path(_INSTALLED.submodule_search_locations[0]) / "data"
    if _INSTALLED
    else Path("/tmp/moco/modelco-1.1.2/model_collaboration/data")
)
pytestmark = pytest.mark.skipif(
    not (MOCO_DATA / "eval.py").exists(),
    reason="MoCo not installed (pip install --no-deps modelco==1.1.2) nor unpacked at /tmp/moco",
)


def _stub(patch: pytest.MonkeyPatch, absent: set[str], name: str, **attributes) -> None:
    """Stands in for a package of ``absent`` (not installed) only while MoCo's module is loaded:
    a real package, where installed, stays untouched for the rest of the suite."""
    if name.partition(".")[0] not in absent or name in sys.modules:
        return
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch._dynamo probes specs
    module.__dict__.update(attributes)
    patch.setitem(sys.modules, name, module)


@pytest.fixture(scope="module")
def moco():
    """MoCo's eval.py, with its unused API/plotting dependencies stubbed out where missing."""
    absent = {name for name in ("tenacity", "openai", "sklearn") if importlib.util.find_spec(name) is None}
    with pytest.MonkeyPatch.context() as patch:
        _stub(patch, absent, "tenacity", retry=lambda **_: lambda f: f, wait_random_exponential=lambda **_: None,
              stop_after_attempt=lambda *_: None)  # fmt: skip
        _stub(patch, absent, "openai", AzureOpenAI=object)
        _stub(patch, absent, "sklearn")
        _stub(patch, absent, "sklearn.metrics")
        _stub(patch, absent, "sklearn.metrics.pairwise", cosine_similarity=None)
        spec = importlib.util.spec_from_file_location("moco_eval", MOCO_DATA / "eval.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def moco_choice(moco, response: str, choices: dict[str, str]) -> str | None:
    return moco.parse_model_response_mcq(response, list(choices.values()))[0]


def moco_exact(moco, response: str, gold: str, answer_type: str | None = None) -> bool:
    return moco.calculate_exact_match(moco.extract_answer_text(response), gold, answer_type) == 1.0


CHOICES = {"A": "Paris", "B": "London", "C": "Berlin", "D": "Rome"}
AGREED_CHOICES = [
    "B",
    "(C)",
    "The answer is (B).",
    "Answer: D",
    "Final answer: C",
    "Answer: A. Wait, no. Answer: C",
    "London",
    "It is not Paris, it is Berlin",
    "I think the answer is (B)",
    "The answer is (B). Option (C) is only a distractor.",
    "nothing here",
]
# moco_lit reads these differently on purpose (docs/scoring.md, "Multiple choice"): (ours, MoCo's).
DIFFERENT_CHOICES = {
    "The answer is a city in Europe": (CHOICES, None, "A"),  # lower-case "a" after "answer is" is prose
    "That is nothing to worry about": ({"A": "no", "B": "yes"}, None, "A"),  # option text inside a word
}


def test_multiple_choice_agreement(moco):
    for response in AGREED_CHOICES:
        assert extract_choice(response, CHOICES) == moco_choice(moco, response, CHOICES), response
    for response, (choices, ours, theirs) in DIFFERENT_CHOICES.items():
        assert (extract_choice(response, choices), moco_choice(moco, response, choices)) == (ours, theirs)


AGREED_EXACT = [
    ("\\boxed{112}", "112", None),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", None),
    ("The answer is 1,234", "1234", None),
    ("\\boxed{$112}", "112", None),
    ("\\boxed{112.00}", "112", None),
    ("Final Answer: 7\n", "8", None),
    ("\\boxed{True}", "True", "bool"),
    ("\\boxed{[1, 2]}", "[1, 2]", "list of integer"),
    ("\\boxed{(A)}", "(A)", None),
    ("\\boxed{valid}", "invalid", None),
    ("\\boxed{0.34}", "0.34", "float"),
]
# (response, gold, answer_type): moco_lit's verdict, which MoCo does not share.
DIFFERENT_EXACT = {
    ("\\boxed{1/2}", "0.5", None): True,  # fractions are numbers
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", None): True,  # LaTeX fraction spellings
    ("\\boxed{50}", "50\\%", None): True,  # percent sign dropped, not divided by 100
    ("\\boxed{}", "(a)", "option"): False,  # "(a)" is not an article to drop
    ("\\boxed{>}", "> } ]", None): False,  # symbol-only references keep their brackets
}


def test_exact_match_agreement(moco):
    for response, gold, answer_type in AGREED_EXACT:
        ours = answers_equal(extract_final_answer(response), gold, answer_type)
        assert ours == moco_exact(moco, response, gold, answer_type), (response, gold)
    for (response, gold, answer_type), ours in DIFFERENT_EXACT.items():
        assert answers_equal(extract_final_answer(response), gold, answer_type) == ours
        assert moco_exact(moco, response, gold, answer_type) != ours, (response, gold)


def test_f1_agreement_on_real_popqa_aliases(moco):
    records = json.loads((MOCO_DATA / "popqa.json").read_text())["test"][:200]
    for record in records:
        first_alias = json.loads(record["output"])[0]
        for response in (f"\\boxed{{{first_alias}}}", "\\boxed{Paris}"):
            extracted = extract_final_answer(response)
            moco_f1 = max(
                moco.calculate_f1_score(moco.extract_answer_text(response), alias)
                for alias in json.loads(record["output"])
            )
            assert best_alias_f1(extracted, record["output"]) == pytest.approx(moco_f1), record["id"]


def test_multiple_choice_agreement_on_real_mmlu_redux(moco):
    records = json.loads((MOCO_DATA / "mmlu_redux.json").read_text())["test"][:200]
    for record in records:
        choices, gold = record["choices"], record["answer"]
        for response in (gold, f"The answer is ({gold}).", f"Answer: {gold}", choices[gold]):
            assert extract_choice(response, choices) == moco_choice(moco, response, choices) == gold
