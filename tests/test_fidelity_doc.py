"""docs/fidelity.md: one row per method, options that exist, differential tests that exist."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest

from moco_lit import methods

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "fidelity.md"
OPTION = re.compile(r"→\s*`([^`]+)`")
NODE = re.compile(r"`((?:tests/[\w/]+\.py)?::\w+)`")


def rows() -> dict[str, list[str]]:
    """Method name -> its cells (method, MoCo file, verdict, deviations, differential test)."""
    table = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("method", "") and not set(cells[0]) <= {"-"}:
            table[cells[0]] = cells
    return table


def init_arguments(cls: type) -> dict[str, inspect.Parameter]:
    """Every named ``__init__`` argument of the method and of the classes it passes ``**kwargs`` to."""
    found: dict[str, inspect.Parameter] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass) and klass is not object:
            hints = typing.get_type_hints(klass.__init__)
            for name, parameter in inspect.signature(klass.__init__).parameters.items():
                if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) and name != "self":
                    found[name] = parameter.replace(annotation=hints.get(name, parameter.annotation))
    return found


def accepts(parameter: inspect.Parameter, value: str) -> bool:
    """Whether ``value`` (as written on the command line) fits the argument's type."""
    annotation = parameter.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return value in {str(choice) for choice in typing.get_args(annotation)}
    if annotation is bool:
        return value in ("true", "false")
    if annotation in (int, float):
        try:
            annotation(value)
        except ValueError:
            return False
    return True


def test_every_method_has_a_row():
    missing = sorted(set(methods.names()) - set(rows()))
    assert not missing, f"docs/fidelity.md has no row for: {', '.join(missing)}"


@pytest.mark.parametrize("name", sorted(set(methods.names()) & set(rows())))
def test_named_options_exist(name):
    arguments = init_arguments(methods.get(name))
    for option in OPTION.findall(rows()[name][3]):
        key, _, value = option.partition("=")
        assert key in arguments, (
            f"{name}: docs/fidelity.md names `{option}`, but {name} has no argument {key!r}"
        )
        if value:
            assert accepts(arguments[key], value), f"{name}: `{option}` is not a valid value of {key}"


@pytest.mark.parametrize("name", sorted(rows()))
def test_named_differential_tests_exist(name):
    file = None
    for node in NODE.findall(rows()[name][4]):
        path, _, function = node.partition("::")
        file = path or file
        assert file, f"{name}: `{node}` repeats a file but none came before it"
        source = ROOT / file
        assert source.exists() and f"def {function}(" in source.read_text(encoding="utf-8"), (
            f"{name}: docs/fidelity.md names {file}::{function}, which does not exist"
        )


def test_the_checks_catch_a_missing_option():
    arguments = init_arguments(methods.get("majority_vote"))
    assert "count_unparsed" in arguments and "temperature" in arguments and "no_such_option" not in arguments
    assert accepts(arguments["tie"], "dev-based") and not accepts(arguments["tie"], "sometimes")
    assert not accepts(arguments["count_unparsed"], "maybe")
