"""Answer extraction and comparison: the named filters that turn a model's text into an answer.

Every rule here is a small function with its own tests (``tests/evaluation/test_extraction.py``);
``docs/scoring.md`` states each rule in prose and lists where moco_lit deliberately differs from
MoCo. Nothing outside ``moco_lit.evaluation`` parses answers.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections import Counter
from fractions import Fraction

from moco_lit.evaluation.task_types import find_task_type

__all__ = [
    "answer_key",
    "answers_equal",
    "best_alias_f1",
    "canonical_value",
    "extract_choice",
    "extract_code",
    "extract_final_answer",
    "normalize_answer",
    "parse_aliases",
    "parse_bool",
    "parse_list",
    "parse_number",
    "strip_thinking",
    "token_f1",
]

# ---------------------------------------------------------------------------------------------
# Reasoning traces
# ---------------------------------------------------------------------------------------------


def strip_thinking(text: str) -> str:
    """The text after the last ``</think>``; the whole text when there is none."""
    head, sep, tail = text.rpartition("</think>")
    return tail.strip() if sep else text.strip()


# ---------------------------------------------------------------------------------------------
# Multiple choice
# ---------------------------------------------------------------------------------------------

# "Not inside a word": no letter or digit may touch the choice letter on either side, so the
# "I" of "I think" (followed by a space, not a marker) and the "A" of "Apple." never count.
_NOT_IN_WORD_BEFORE = r"(?<![A-Za-z0-9])"
_NOT_IN_WORD_AFTER = r"(?![A-Za-z0-9])"

# Phrases that announce the answer. The phrase itself is case-insensitive; the letter after it
# must be upper case, so "the answer is a matter of taste" does not read as option A.
_ANSWER_PHRASE = (
    r"(?i:(?:final\s+)?answer(?:\s+is)?|correct\s+(?:option|choice|answer)(?:\s+is)?|"
    r"(?:i\s+)?(?:choose|select|pick)|option\s+is|choice\s+is)"
)


def _letter_group(choices: dict[str, str]) -> str:
    # Keys are letters in most files, digits in some (arc_challenge has "1".."4").
    letters = [k for k in choices if len(k) == 1 and k.isalnum()]
    return "|".join(re.escape(k.upper()) for k in letters) or r"(?!x)x"


def _bare_letter(response: str, letters: str) -> str | None:
    """The whole response is one letter, maybe in parentheses, bold or followed by punctuation."""
    pattern = rf"[\s*(\[]*({letters})[\s*)\]]*[.:!]?"
    match = re.fullmatch(pattern, response.strip(), flags=re.IGNORECASE)
    return match.group(1).upper() if match else None


def _last_marker(response: str, letters: str) -> str | None:
    """The last letter announced by a marker; answer phrases outrank bare "(C)" / "C)" / "C."."""
    letter = rf"{_NOT_IN_WORD_BEFORE}({letters}){_NOT_IN_WORD_AFTER}"
    strong = [
        rf"{_ANSWER_PHRASE}\s*(?:[:=\-]\s*)?(?:option\s+|choice\s+)?[*(\[{{\s]*{letter}",
        rf"\\boxed\{{\s*(?:\\text\{{\s*)?\(?{letter}",
    ]
    weak = [rf"\(\s*{letter}\s*\)", rf"{letter}\)", rf"{letter}\.(?![A-Za-z0-9])"]
    for tier in (strong, weak):
        hits = [m for pattern in tier for m in re.finditer(pattern, response)]
        if hits:
            return max(hits, key=lambda m: m.start(1)).group(1)
    return None


def _option_norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip().rstrip(".,;:!? ").strip()


def _option_span_end(response: str, option: str) -> int:
    """End of the last whole-word occurrence of ``option`` in ``response``; -1 when absent."""
    left = _NOT_IN_WORD_BEFORE if option[:1].isalnum() else ""
    right = _NOT_IN_WORD_AFTER if option[-1:].isalnum() else ""
    ends = [m.end() for m in re.finditer(rf"{left}{re.escape(option)}{right}", response)]
    return ends[-1] if ends else -1


def _option_by_text(response: str, choices: dict[str, str]) -> str | None:
    """The option whose text is the whole response, else whose text ends last (longer wins ties)."""
    normalized = _option_norm(response)
    for key, text in choices.items():
        if _option_norm(str(text)) and normalized == _option_norm(str(text)):
            return key
    lowered = re.sub(r"\s+", " ", response.lower())
    best: tuple[int, int, str] | None = None
    for key, text in choices.items():
        option = _option_norm(str(text))
        if not option:
            continue
        end = _option_span_end(lowered, option)
        if end >= 0 and (best is None or (end, len(option)) > best[:2]):
            best = (end, len(option), key)
    return best[2] if best else None


def extract_choice(text: str, choices: dict[str, str]) -> str | None:
    """The option key a response picks, or None.

    Order: a bare letter; the last explicit marker; the whole response equal to an option's text;
    the option whose text ends last in the response. Only keys of ``choices`` count.
    """
    response = strip_thinking(text)
    letters = _letter_group(choices)
    keys = {k.upper(): k for k in choices}
    letter = _bare_letter(response, letters) or _last_marker(response, letters)
    if letter is not None:
        return keys[letter]
    return _option_by_text(response, choices)


# ---------------------------------------------------------------------------------------------
# Free-form answers
# ---------------------------------------------------------------------------------------------

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox|box)\s*\{")
# Line markers, most specific first in the alternation so "Final Answer:" is not read as "Answer:".
_ANSWER_LINE = re.compile(
    r"(?:final\s+answer\s*(?:is)?\s*[:\-]?|the\s+(?:final\s+)?answer\s+is\s*[:\-]?|answer\s*:)"
    r"[ \t]*([^\n]*)",
    flags=re.IGNORECASE,
)


def _balanced_body(text: str, open_brace: int) -> str | None:
    """Content of the brace group opening at ``open_brace``; None when it never closes."""
    depth = 0
    for i in range(open_brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (also ``\\box``/``\\fbox``), nested braces kept."""
    bodies = [_balanced_body(text, m.end() - 1) for m in _BOX_COMMAND.finditer(text)]
    complete = [b for b in bodies if b is not None]
    return complete[-1].strip() if complete else None


def _clean_answer_line(line: str) -> str:
    # Answer lines often carry markdown bold or inline-math dollars around the value itself.
    line = line.strip().strip("*").strip().rstrip(". ").strip()
    if len(line) > 1 and line.startswith("$") and line.endswith("$") and line.count("$") == 2:
        line = line[1:-1].strip()
    return line


def extract_final_answer(text: str) -> str:
    """Last ``\\boxed{…}``; else the last "Final Answer:" / "The answer is" / "Answer:" line; else all."""
    response = strip_thinking(text)
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed
    lines = [_clean_answer_line(m.group(1)) for m in _ANSWER_LINE.finditer(response)]
    lines = [line for line in lines if line]
    return lines[-1] if lines else response.strip()


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[^\n]*\n(.*?)```", flags=re.DOTALL)


def extract_code(text: str) -> str:
    """The last fenced block tagged python (else the last fenced block, else the whole text)."""
    response = strip_thinking(text)
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(response)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    if python or blocks:
        return (python or [body for _, body in blocks])[-1].strip("\n")
    # An unclosed fence (generation cut off) still starts the code.
    opened = re.search(r"```[^\n]*\n(.*)", response, flags=re.DOTALL)
    return (opened.group(1) if opened else response).strip("\n")


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

# Light LaTeX clean-up so "\dfrac{1}{2}", "\frac12" and "1/2" normalise alike; order matters.
_LATEX_REWRITES: list[tuple[str, str]] = [
    (r"\\[dt]frac", r"\\frac"),
    (r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"(\1)/(\2)"),
    (r"\\frac\s*(\d)\s*(\d)", r"\1/\2"),
    (r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}", r"\1"),
    (r"\^\s*\{?\\circ\}?|\\circ|°", ""),
    (r"\\left|\\right|\\[!,;: ]|\\displaystyle", ""),
    (r"\\%", "%"),
    (r"\\?\$", ""),
]
_MATH_OPERATORS = "+-*/^=<>%"
_PUNCTUATION = re.compile(r"[!\"#&'(),:;?@\[\\\]_`{|}~$.]")


def _rewrite_latex(s: str) -> str:
    for pattern, replacement in _LATEX_REWRITES:
        s = re.sub(pattern, replacement, s)
    # "(1)/(2)" from a \frac of plain numbers reads better and parses as "1/2".
    return re.sub(r"\((-?\d+(?:\.\d+)?)\)/\((-?\d+(?:\.\d+)?)\)", r"\1/\2", s)


def normalize_answer(s: str) -> str:
    """Lower-case, simplify LaTeX, drop punctuation but keep math, drop articles, squeeze spaces.

    Kept: ``+ - * / ^ = < > %`` and a ``.`` between digits (a decimal point). A ``-`` between two
    words (two letters or more each side) is a word hyphen and becomes a space ("Port-la-Montagne" = "port la montagne").
    Commas between digit groups ("1,234") are thousands separators and vanish; other commas
    separate words. Articles go only when more than one word is left, so the answer "(a)" stays "a".
    """
    s = _rewrite_latex(str(s).lower())
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    s = re.sub(r"(?<=\d)\.(?=\d)", "\0", s)  # protect decimal points from punctuation removal
    s = re.sub(r"(?<=[^\W\d_]{2})-(?=[^\W\d_]{2})", " ", s)
    s = _PUNCTUATION.sub(" ", s).replace("\0", ".")
    s = re.sub(rf"\s*([{re.escape(_MATH_OPERATORS)}])\s*", r"\1", s)
    words = s.split()
    if len(words) > 1:
        words = [w for w in words if w not in ("a", "an", "the")]
    return " ".join(words)


# ---------------------------------------------------------------------------------------------
# Values: numbers, booleans, lists
# ---------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?")


def parse_number(s: str) -> float | None:
    """A number written as ``112``, ``-3.5``, ``1,234``, ``$112.00``, ``50%``, ``1/2``, ``\\frac{1}{2}``.

    A percent sign is dropped (``50%`` = 50), as math answer keys write it either way.
    """
    t = _rewrite_latex(str(s).strip()).replace(" ", "")
    t = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", t).strip("$").rstrip(".%").strip()
    t = t.lower()
    if _NUMBER.fullmatch(t):
        return float(t)
    fraction = re.fullmatch(rf"\(?({_NUMBER.pattern})\)?/\(?({_NUMBER.pattern})\)?", t)
    if fraction:
        numerator, denominator = float(fraction.group(1)), float(fraction.group(2))
        return numerator / denominator if denominator else None
    return None


def parse_bool(s: str) -> bool | None:
    """``True``/``yes`` → True, ``False``/``no`` → False (any case, trailing punctuation ignored)."""
    t = str(s).strip().strip("*").strip().rstrip(".!").lower()
    if t in ("true", "yes"):
        return True
    if t in ("false", "no"):
        return False
    return None


def parse_list(s: str, *, allow_bare: bool = False) -> list[str] | None:
    """``[1, 2]`` (or ``1, 2`` when ``allow_bare``) as a list of item strings; None otherwise."""
    t = str(s).strip()
    # Parentheses make a list only with a comma inside: "(a)" is an option label, not a list.
    if (t.startswith("[") and t.endswith("]")) or (t.startswith("(") and t.endswith(")") and "," in t):
        try:
            value = ast.literal_eval(t)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = None
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        inner = t[1:-1]
    elif allow_bare and "," in t:
        inner = t
    else:
        return None
    items = [item.strip() for item in inner.split(",")]
    return items if all(items) else None


def _parse_number_with_unit(s: str) -> float | None:
    """A number, also when one trailing unit word follows it ("18 dollars", "5 cm")."""
    number = parse_number(s)
    if number is None:
        unit = re.fullmatch(r"\s*(\S+?)\s*[A-Za-z]+\.?\s*", str(s))
        number = parse_number(unit.group(1)) if unit else None
    return number


def _numbers_equal(pred: float, gold: float, *, gold_is_integer: bool, rel_tol: float) -> bool:
    if gold_is_integer:
        return pred == gold
    return math.isclose(pred, gold, rel_tol=rel_tol, abs_tol=0.0 if gold else 1e-12)


def _looks_integer(s: str) -> bool:
    return bool(re.fullmatch(r"[-+]?\$?\d{1,3}(?:,\d{3})+|[-+]?\$?\d+", str(s).strip()))


def answers_equal(pred: str, gold: str, answer_type: str | None = None) -> bool:
    """Whether an extracted answer equals the reference: as values when both parse, else as text.

    Booleans (True/yes) and lists compare as values; numbers compare exactly when the reference
    is an integer and with relative tolerance otherwise (1e-2 for ``answer_type == "float"``,
    which marks TheoremQA's rounded references; 1e-4 elsewhere).
    """
    pred, gold = str(pred), str(gold)
    kind = (answer_type or "").lower()
    if kind.startswith("list") or parse_list(gold) is not None:
        gold_items = parse_list(gold, allow_bare=True)
        pred_items = parse_list(pred, allow_bare=True)
        if gold_items is not None:
            if pred_items is None or len(pred_items) != len(gold_items):
                return False
            item_type = kind.removeprefix("list of ").strip() or None
            return all(answers_equal(p, g, item_type) for p, g in zip(pred_items, gold_items))
    gold_bool = parse_bool(gold)
    if gold_bool is not None and kind in ("", "bool"):
        return parse_bool(pred) == gold_bool
    gold_number, pred_number = parse_number(gold), _parse_number_with_unit(pred)
    if gold_number is not None and pred_number is not None:
        is_integer = kind == "integer" or (not kind and _looks_integer(gold))
        tolerance = 1e-2 if kind == "float" else 1e-4
        return _numbers_equal(pred_number, gold_number, gold_is_integer=is_integer, rel_tol=tolerance)
    if not any(c.isalnum() for c in gold):
        # References made only of symbols (bbh's dyck task: "> } ]") would lose their brackets.
        return "".join(pred.split()) == "".join(gold.split())
    return normalize_answer(pred) == normalize_answer(gold)


# ---------------------------------------------------------------------------------------------
# Token F1 with alias lists
# ---------------------------------------------------------------------------------------------


def token_f1(pred: str, gold: str) -> float:
    """SQuAD-style token F1 of the normalised strings (1.0 when both are empty)."""
    pred_tokens, gold_tokens = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def parse_aliases(gold: str | list[str]) -> list[str]:
    """Accepted answers: a JSON/Python list (popqa stores one as a string) or the single string."""
    if isinstance(gold, list):
        return [str(g) for g in gold]
    text = str(gold).strip()
    if text.startswith("[") and text.endswith("]"):
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(value, list) and value:
                return [str(v) for v in value]
    return [text]


def best_alias_f1(pred: str, gold: str | list[str]) -> float:
    """Max token F1 of ``pred`` over the reference's aliases."""
    return max(token_f1(pred, alias) for alias in parse_aliases(gold))


# ---------------------------------------------------------------------------------------------
# Canonical answers for voting
# ---------------------------------------------------------------------------------------------


def canonical_value(answer: str) -> str:
    """The form equal free-form answers share: numbers as exact fractions (so "0.5", "1/2" and
    "\\frac{1}{2}" are one answer), yes/no as true/false, other text normalised."""
    number = parse_number(answer)
    if number is not None and math.isfinite(number):
        exact = Fraction(number).limit_denominator(10**6)
        if abs(float(exact) - number) <= 1e-9 * max(1.0, abs(number)):
            return str(exact)
        return repr(number)
    boolean = parse_bool(answer)
    if boolean is not None:
        return str(boolean).lower()
    return normalize_answer(answer)


def answer_key(task_type: str, output: str, record: dict, by: str = "value") -> str | None:
    """The canonical answer an output gives, for majority voting; None when the type has none.

    The task type's spec extracts the answer and gives its vote key: multiple_choice → the option
    key; exact_match / f1_match → the normalised extracted answer (``canonical_value``).
    ``by="text"`` keeps the extracted answer as written (MoCo's votes: "21" and "21.0" are
    different answers).
    """
    spec = find_task_type(task_type)
    if spec is None or spec.vote_key is None:
        return None
    answer = spec.extract(output, record)
    if answer is None or by == "text":
        return answer
    return spec.vote_key(answer) or None
