from __future__ import annotations

import json
from pathlib import Path

import pytest

from moco_lit.data import sources
from moco_lit.data.sources import Benchmark, load_benchmark, read_jsonl, read_moco_json
from moco_lit.errors import UserError
from tests.data.conftest import mc_record, write_json


def one_line_error(call, *fragments: str) -> str:
    """Run ``call``, expect a one-line UserError containing every fragment."""
    with pytest.raises(UserError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# -- loading ------------------------------------------------------------------------------------


def test_moco_json_file_by_path(mc_file: Path) -> None:
    benchmark = load_benchmark(str(mc_file))
    assert (benchmark.name, benchmark.task_type) == ("tiny_mc", "multiple_choice")
    assert [r["id"] for r in benchmark.dev] == ["0", "1", "2"]  # ids normalised to str, order kept
    assert [r["id"] for r in benchmark.test] == ["10", "11", "12", "13", "14"]
    assert benchmark.source == str(mc_file)


def test_task_type_argument_overrides_the_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "free.json", {"dev": [{"id": 1, "input": "hi"}], "test": []})
    one_line_error(lambda: load_benchmark(str(path)), "no task type", "--data.task_type")
    assert load_benchmark(str(path), task_type="text_generation").task_type == "text_generation"
    one_line_error(lambda: load_benchmark(str(path), task_type="poetry"), "unknown task type 'poetry'")


def test_folder_lookup_by_name(tmp_path: Path, mc_file: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    mc_file.rename(folder / "gsm8k_like.json")
    assert len(load_benchmark("gsm8k_like", data_dir=folder).test) == 5
    one_line_error(lambda: load_benchmark("absent", data_dir=folder), "absent.json", str(folder))
    one_line_error(lambda: load_benchmark(str(folder)), "is a folder", "--data.data_dir")


def test_registered_name_uses_the_modelco_cache(isolated_home: Path) -> None:
    cache = sources.modelco_cache_dir()
    cache.mkdir(parents=True)
    write_json(
        cache / "agieval_tiny.json", {"task_type": "multiple_choice", "dev": [mc_record(1)], "test": []}
    )
    benchmark = load_benchmark("agieval_tiny")
    assert benchmark.name == "agieval_tiny" and len(benchmark.dev) == 1


def test_registered_name_without_data_says_how_to_fetch() -> None:
    one_line_error(
        lambda: load_benchmark("agieval"), "python -m moco_lit data fetch modelco", "--data.data_dir"
    )


def test_registered_name_falls_back_to_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    from moco_lit.data import hub

    monkeypatch.setitem(
        hub.HUB_LOADERS, "gsm8k", lambda load: Benchmark("gsm8k", "exact_match", source="fake")
    )
    assert load_benchmark("gsm8k").source == "fake"


def test_unknown_name_and_missing_path() -> None:
    one_line_error(lambda: load_benchmark("gsm8kk"), "gsm8k", "data list")
    one_line_error(lambda: load_benchmark("nowhere/file.json"), "does not exist")


def test_synthetic_names_resolve_first(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Benchmark("gsm8k", "exact_match", source="synthetic")
    monkeypatch.setattr(sources, "synthetic_benchmark", lambda name, seed: fake if name == "gsm8k" else None)
    assert load_benchmark("gsm8k") is fake


def test_jsonl_with_split_field(tmp_path: Path) -> None:
    lines = [
        {"id": 1, "split": "dev", "input": "a", "output": "1", "task_type": "exact_match"},
        {"id": 2, "split": "test", "input": "b", "output": "2", "task_type": "exact_match"},
        {"id": 1, "split": "test", "input": "c", "output": "3", "task_type": "exact_match"},
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    benchmark = load_benchmark(str(path))
    assert benchmark.task_type == "exact_match" and benchmark.name == "mine"
    assert [r["id"] for r in benchmark.dev] == ["1"] and [r["id"] for r in benchmark.test] == ["2", "1"]
    assert "split" not in benchmark.test[0]


def test_jsonl_task_type_from_the_registry_name(tmp_path: Path) -> None:
    path = tmp_path / "gsm8k.jsonl"
    path.write_text(json.dumps({"id": 1, "split": "test", "input": "a", "output": "1"}), encoding="utf-8")
    assert read_jsonl(path).task_type == "exact_match"


def test_same_name_same_examples(mc_file: Path) -> None:
    first, second = load_benchmark(str(mc_file)), load_benchmark(str(mc_file))
    assert first.dev == second.dev and first.test == second.test


def test_repeated_ids_are_renamed_for_flagged_moco_files(tmp_path: Path) -> None:
    folder = tmp_path / "moco"
    folder.mkdir()
    records = [{"id": 7, "input": f"q{i}", "output": "1"} for i in range(3)]
    write_json(folder / "math.json", {"task_type": "exact_match", "dev": records, "test": []})
    benchmark = load_benchmark("math", data_dir=folder)
    assert [r["id"] for r in benchmark.dev] == ["7", "7#2", "7#3"]


# -- validation errors ----------------------------------------------------------------------------


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"dev": [', encoding="utf-8")
    one_line_error(lambda: read_moco_json(path), str(path), "not valid JSON", "line 1")


def test_bad_jsonl_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    good = json.dumps({"id": 1, "split": "dev", "input": "a"})
    path.write_text(f"{good}\n{{oops\n", encoding="utf-8")
    one_line_error(
        lambda: read_jsonl(path, task_type="text_generation"), str(path), "line 2", "not valid JSON"
    )


def test_jsonl_bad_split(tmp_path: Path) -> None:
    path = tmp_path / "split.jsonl"
    path.write_text(json.dumps({"id": 1, "split": "train", "input": "a"}), encoding="utf-8")
    one_line_error(lambda: read_jsonl(path, task_type="text_generation"), "line 1", "'train'")


def test_jsonl_records_disagree_on_task_type(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"id": i, "split": "dev", "input": "a", "output": "b", "task_type": t}
        for i, t in enumerate(["exact_match", "f1_match"])
    ]
    path.write_text("\n".join(map(json.dumps, rows)), encoding="utf-8")
    one_line_error(lambda: read_jsonl(path), "disagree")


def test_not_a_moco_object(tmp_path: Path) -> None:
    path = write_json(tmp_path / "list.json", [1, 2])
    one_line_error(lambda: read_moco_json(path), str(path), "MoCo-format")


@pytest.mark.parametrize(
    ("record", "fragments"),
    [
        ({"question": "q", "choices": {"A": "a"}, "answer": "A"}, ("dev record 0", 'missing "id"')),
        ({"id": 3, "choices": {"A": "a"}, "answer": "A"}, ("(id '3')", "lacks 'question'")),
        ({"id": 3, "question": "q", "answer": "A"}, ("lacks 'choices'",)),
        ({"id": 3, "question": "q", "choices": {"A": "a"}}, ("lacks 'answer'",)),
        (
            {"id": 3, "question": "q", "choices": {"A": "a", "B": "b"}, "answer": "C"},
            ("answer 'C'", "['A', 'B']"),
        ),
        ({"id": 3, "question": "q", "choices": ["a", "b"], "answer": "A"}, ("'choices' must be",)),
        ({"id": 3, "question": 5, "choices": {"A": "a"}, "answer": "A"}, ("'question' must be a string",)),
        ("just text", ("expected an object",)),
    ],
)
def test_multiple_choice_record_errors(tmp_path: Path, record: object, fragments: tuple[str, ...]) -> None:
    path = write_json(tmp_path / "bad.json", {"task_type": "multiple_choice", "dev": [record], "test": []})
    one_line_error(lambda: read_moco_json(path), str(path), *fragments)


@pytest.mark.parametrize(
    ("task_type", "record", "fragment"),
    [
        ("exact_match", {"id": 1, "input": "q"}, "lacks 'output'"),
        ("f1_match", {"id": 1, "output": "a"}, "lacks 'input'"),
        ("coding", {"id": 1, "input": "q"}, "lacks 'test'"),
        ("noncompliance", {"id": 1, "input": "q"}, "lacks 'category'"),
        ("generation_diversity", {"id": 1, "input": "q", "reference": "one"}, "'reference' must be a list"),
    ],
)
def test_required_fields_per_task_type(tmp_path: Path, task_type: str, record: dict, fragment: str) -> None:
    path = write_json(tmp_path / "bad.json", {"task_type": task_type, "dev": [], "test": [record]})
    one_line_error(lambda: read_moco_json(path), "test record 0", fragment)


def test_duplicate_ids_in_a_split(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "dup.json",
        {"task_type": "multiple_choice", "dev": [mc_record(1), mc_record("1")], "test": []},
    )
    one_line_error(lambda: read_moco_json(path), "dev record 1", "(id '1')", "duplicate id", "record 0")


def test_same_id_in_dev_and_test_is_fine(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "ok.json", {"task_type": "multiple_choice", "dev": [mc_record(1)], "test": [mc_record(1)]}
    )
    assert len(read_moco_json(path).test) == 1


def test_null_reference_output_is_kept(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "null.json",
        {"task_type": "exact_match", "dev": [], "test": [{"id": 1, "input": "q", "output": None}]},
    )
    assert read_moco_json(path).test[0]["output"] is None


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,input\n", encoding="utf-8")
    one_line_error(lambda: load_benchmark(str(path)), "unsupported file type '.csv'")


def test_benchmark_split_names() -> None:
    one_line_error(lambda: Benchmark("x", "exact_match").split("train"), "'train'")
