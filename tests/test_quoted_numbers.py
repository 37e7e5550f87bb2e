"""The numbers README.md and the recipe headers quote are registered with the run that gives them
(benchmarks/quoted_numbers.py), and the quickstart's are the ones its last run gives."""

from __future__ import annotations

import shutil

import pytest

from benchmarks import quoted_numbers as quoted


def test_every_number_that_looks_like_a_result_is_registered():
    assert quoted.unregistered() == []


def test_every_quote_matches_once_and_its_source_gives_or_names_each_value():
    for quote in quoted.QUOTES:
        quoted.find(quote)  # raises unless exactly one match
        source = quoted.SOURCES[quote.source]
        assert quote.keys, quote.pattern
        assert set(quote.keys) <= source.provides | source.by_hand, (quote.source, quote.keys)
    assert {q.source for q in quoted.QUOTES} == set(quoted.SOURCES)


@pytest.fixture
def copy_of_the_docs(tmp_path, monkeypatch):
    shutil.copy(quoted.ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(quoted.ROOT / "recipes", tmp_path / "recipes")
    monkeypatch.setattr(quoted, "ROOT", tmp_path)
    return tmp_path


def test_a_new_unregistered_number_fails_the_lint(copy_of_the_docs):
    readme = copy_of_the_docs / "README.md"
    readme.write_text(readme.read_text() + "\nThe vote now scores 0.512 in 41 s.\n")
    recipe = copy_of_the_docs / "recipes" / "real" / "moa.yaml"
    recipe.write_text("# peak memory 3.1 GB\n" + recipe.read_text())
    lines = readme.read_text().count("\n")
    assert quoted.unregistered() == [
        f"README.md:{lines}: 0.512",
        f"README.md:{lines}: 41 s",
        "recipes/real/moa.yaml:1: 3.1 GB",
    ]


def test_a_stale_result_is_reported_and_rewritten_and_a_measurement_refreshed(copy_of_the_docs):
    fresh = {
        "best_single": "0.333",
        "routed": "0.961",
        "routed_low": "0.922",
        "routed_high": "0.981",
        "n": "180",
    }
    findings = quoted.check(["first_experiment"], produced={"first_experiment": fresh})
    assert quoted.differences(findings) == [
        "README.md: routed (first_experiment) quotes '0.978', the run gives '0.961'",
        "README.md: routed_low (first_experiment) quotes '0.944', the run gives '0.922'",
        "README.md: routed_high (first_experiment) quotes '0.991', the run gives '0.981'",
    ]
    quoted.check(["first_experiment"], write=True, produced={"first_experiment": fresh})
    assert "collaboration 0.961 (95% CI [0.922, 0.981])" in (copy_of_the_docs / "README.md").read_text()
    again = quoted.check(["first_experiment"], produced={"first_experiment": fresh})
    assert quoted.differences(again) == [] and {f.status for f in again} == {"same"}

    timing = {"first_min": "3", "first_s": "5", "rerun_s": "19"}
    findings = quoted.check(["quickstart_timing"], write=True, produced={"quickstart_timing": timing})
    assert quoted.differences(findings) == []  # measurements never "differ"
    assert {f.key for f in findings if f.status == "by hand"} == {
        "specialist_min_s",
        "specialist_max_s",
        "specialist_s",
        "retrain_s",
    }
    text = (copy_of_the_docs / "README.md").read_text()
    assert "took 3 min 5 s the first time" in text and "each) and 19 s afterwards" in text
    assert "rerun trains nothing (about 19 s here" in text


def test_a_recipe_header_quotes_its_own_run():
    assert quoted.recipe_commands("sparta") == [
        "fit  -c recipes/real/sparta.yaml",
        "test -c recipes/real/sparta.yaml --ckpt_path last",
    ]
    assert quoted.recipe_commands("cascade") == ["test -c recipes/real/cascade.yaml"]
    assert quoted.recipe_commands("distillation")[0].startswith("validate -c recipes/real/majority_vote.yaml")
    assert [quoted.fmt_minutes(s) for s in (100, 150, 420, 500)] == ["1.5", "2.5", "7", "8"]


@pytest.mark.skipif(
    not (quoted.quickstart_report() / "runs.json").is_file(),
    reason="no quickstart report under runs/: run `python -m moco_lit quickstart` (CI does, first)",
)
def test_the_quickstart_numbers_are_those_of_its_last_run():
    findings = quoted.check(["quickstart", "results_md"])
    assert quoted.differences(findings) == []
    results = [q for q in quoted.QUOTES if q.source in {"quickstart", "results_md"}]
    assert sum(f.status == "same" for f in findings) == sum(len(q.keys) for q in results)
