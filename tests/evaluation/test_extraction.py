"""Answer filters: each rule of docs/scoring.md with its tricky cases."""

import pytest

from moco_lit.evaluation.extraction import (
    answer_key,
    answers_equal,
    best_alias_f1,
    extract_choice,
    extract_code,
    extract_final_answer,
    normalize_answer,
    parse_aliases,
    parse_number,
    strip_thinking,
    token_f1,
)

CHOICES = {"A": "Paris", "B": "London", "C": "Berlin", "D": "Rome"}


def test_strip_thinking_keeps_text_after_last_think():
    assert strip_thinking("<think>A? no</think> maybe </think> B") == "B"
    assert strip_thinking("  plain answer ") == "plain answer"


@pytest.mark.parametrize(
    "response, expected",
    [
        ("B", "B"),
        ("(c).", "C"),
        ("**D**", "D"),
        ("I think the answer is (B)", "B"),
        ("Answer: A. On reflection, Answer: C", "C"),  # several markers: the last wins
        ("The final answer is (D).", "D"),
        ("\\boxed{A}", "A"),
        ("Options (A) and (B) are wrong, so C) it is.", "C"),
        ("<think>The answer is A</think>The answer is B", "B"),
    ],
)
def test_extract_choice_letters_and_markers(response, expected):
    assert extract_choice(response, CHOICES) == expected


def test_answer_phrase_outranks_a_later_bare_marker():
    assert extract_choice("The answer is (B). Option (C) is a distractor.", CHOICES) == "B"


@pytest.mark.parametrize(
    "response",
    ["I think so.", "The answer is a matter of taste", "Apple. Banana. Cherry.", "etc."],
)
def test_letters_inside_words_or_lowercase_prose_do_not_count(response):
    assert extract_choice(response, {"A": "x1", "B": "x2", "C": "x3", "I": "x4"}) is None


def test_only_keys_of_choices_count():
    assert extract_choice("The answer is (E)", CHOICES) is None
    assert extract_choice("E) no, D) yes", CHOICES) == "D"


def test_option_text_equal_to_response_and_last_ending_option():
    assert extract_choice("london.", CHOICES) == "B"
    assert extract_choice("It is not Paris; it is Berlin", CHOICES) == "C"
    # Overlapping options end at the same place: the longer, more specific one wins.
    assert extract_choice("weight is 0.8 lb", {"A": "8 lb", "B": "0.8 lb"}) == "B"
    # Option text must not match inside a longer word.
    assert extract_choice("that is nothing", {"A": "no", "B": "yes"}) is None


@pytest.mark.parametrize(
    "response, expected",
    [
        ("so \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{\\sqrt{\\frac{a}{b}}}", "\\sqrt{\\frac{a}{b}}"),
        ("\\box{42}", "42"),
        ("\\boxed{7} and a cut-off \\boxed{8", "7"),
        ("Work...\nFinal Answer: 42.\n", "42"),
        ("The answer is $5$.", "5"),
        ("Answer: 3\nHmm.\nAnswer: **4**", "4"),
        ("just words", "just words"),
    ],
)
def test_extract_final_answer(response, expected):
    assert extract_final_answer(response) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("1,234,567", "1234567"),
        ("x + 1", "x+1"),
        ("3.14", "3.14"),
        ("Port-la-Montagne", "port la montagne"),
        ("x-y", "x-y"),
        ("(a)", "a"),  # a lone "a" is an option label, not an article
        ("\\dfrac{1}{2}", "1/2"),
        ("50\\%", "50%"),
        ("60^\\circ", "60"),
        ("\\text{(B)}", "b"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    "pred, gold, answer_type",
    [
        ("112.00", "112", None),
        ("$112", "112", None),
        ("\\$1,234", "1234", None),
        ("18 dollars", "18", None),
        ("1/2", "0.5", None),
        ("\\frac{1}{2}", "0.5", None),
        ("[1, 2]", "1, 2", None),
        ("1, 2", "[1, 2]", "list of integer"),
        ("[0.5, 2]", "[0.50, 2.0]", "list of float"),
        ("yes", "True", None),
        ("False.", "no", "bool"),
        ("0.833", "0.8333", "float"),
        ("(A)", "A", None),
        ("A", "(A)", None),
        ("(a)", "(a)", "option"),
        ("> } ]", "> } ]", None),
        ("Eiffel tower", "the Eiffel Tower", None),
    ],
)
def test_answers_equal_accepts(pred, gold, answer_type):
    assert answers_equal(pred, gold, answer_type)


@pytest.mark.parametrize(
    "pred, gold, answer_type",
    [
        ("112.5", "112", None),  # integers compare exactly
        ("0.833", "0.8333", None),  # 1e-4 relative tolerance without answer_type float
        ("[1, 2, 3]", "[1, 2]", None),
        ("no", "True", None),
        ("", "(a)", "option"),
        (">", "> } ]", None),
        ("x+1", "x-1", None),
    ],
)
def test_answers_equal_rejects(pred, gold, answer_type):
    assert not answers_equal(pred, gold, answer_type)


def test_parse_number_forms():
    assert parse_number("-3.5") == -3.5
    assert parse_number("1,234") == 1234
    assert parse_number("50%") == 50
    assert parse_number("7/0") is None
    assert parse_number("seven") is None


def test_token_f1_and_popqa_aliases():
    assert token_f1("the cat sat", "cat") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0
    gold = '["Toulon", "Port-la-Montagne", "Tolon"]'
    assert parse_aliases(gold) == ["Toulon", "Port-la-Montagne", "Tolon"]
    assert best_alias_f1("Port la Montagne", gold) == 1.0
    # Aliases may contain commas; the list is parsed as JSON, not split on commas.
    assert (
        best_alias_f1("Christmas Island, Other Territories", '["cx", "Christmas Island, Other Territories"]')
        == 1.0
    )
    assert parse_aliases("Jiggle Jiggle") == ["Jiggle Jiggle"]


def test_extract_code_prefers_last_python_block():
    text = "```python\ndef f():\n    return 1\n```\nthen\n```python\ndef g():\n    return 2\n```\n```\nprint(g())\n```"
    assert extract_code(text) == "def g():\n    return 2"
    assert extract_code("```\nx = 1\n```") == "x = 1"
    assert extract_code("```python\ndef cut():\n    return") == "def cut():\n    return"
    assert extract_code("def bare():\n    pass") == "def bare():\n    pass"


def test_answer_key_canonicalises_for_voting():
    record = {"choices": CHOICES}
    assert answer_key("multiple_choice", "Answer: C", record) == "C"
    keys = {answer_key("exact_match", out, {}) for out in ["\\boxed{0.5}", "1/2", "Answer: \\frac{1}{2}"]}
    assert keys == {"1/2"}
    assert answer_key("exact_match", "The answer is Yes", {}) == "true"
    assert answer_key("f1_match", "\\boxed{The Toulon}", {}) == "toulon"
    assert answer_key("reward_model", "anything", {}) is None


def test_digit_keys_count_like_letters():
    choices = {"1": "joined together as one landmass", "2": "split apart", "3": "sunk", "4": "frozen"}
    assert extract_choice("2", choices) == "2"
    assert extract_choice("The answer is (3).", choices) == "3"
    assert extract_choice("They were split apart.", choices) == "2"
