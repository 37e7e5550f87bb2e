"""README's first experiment, run as written (its marked block), gives the numbers README quotes.

The numbers and the block are read through benchmarks/quoted_numbers.py, the registry of every
quoted number, so they are written down in one place: README.md itself.
"""

from __future__ import annotations

import pytest

from benchmarks import quoted_numbers as quoted


@pytest.mark.slow
def test_the_first_experiment_runs_as_written_and_gives_the_readme_numbers(capsys):
    """Needs the quickstart's specialists (the quickstart trains them; CI runs it before the tests)."""
    source = quoted.SOURCES["first_experiment"]
    if source.missing():
        pytest.skip(source.missing())
    commands = quoted.readme_block("first-experiment")
    assert [c[:4] for c in commands] == [
        ["python", "-m", "moco_lit", "test"],
        ["python", "-m", "moco_lit", "fit"],
        ["python", "-m", "moco_lit", "test"],
    ]
    values = quoted.regenerate(source)
    capsys.readouterr()
    findings = quoted.check(["first_experiment"], produced={"first_experiment": values})
    assert quoted.differences(findings) == []
    assert {f.key for f in findings if f.status == "same"} == set(source.provides)
    assert values["n"] == "180" and float(values["routed"]) > float(values["best_single"])
