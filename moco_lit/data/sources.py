"""Where benchmark examples come from, and the checks they pass on the way in.

A benchmark is two lists of records, ``dev`` and ``test``, in MoCo's record schema. They come from
(in the order ``load_benchmark`` tries them):

1. the synthetic benchmarks of ``moco_lit.data.synthetic`` (``quickstart``, ...);
2. a path to a file: MoCo JSON (``{"task_type", "dev": [...], "test": [...]}``) or JSONL (one
   record a line, each with ``"split": "dev"`` or ``"test"``);
3. a benchmark name looked up in ``data_dir`` (``NAME.json`` or ``NAME.jsonl``);
4. a registered name: MoCo's own file in the fetched cache (``python -m moco_lit data fetch modelco``);
5. a registered name with a Hub converter (``moco_lit.data.hub``), through ``datasets``.

Every record is validated where it enters: a missing or repeated id, a field its task type needs,
an answer that is not one of the choices, a line that is not JSON: each ends with one ``UserError``
line naming the file, the split and the record. Ids become strings. Order is the file's order, so
the same name always gives the same examples in the same order.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from moco_lit import paths
from moco_lit.data.benchmark import SPLITS, Benchmark, check_task_type, validate_records
from moco_lit.data.hub import load_hub_benchmark
from moco_lit.data.registry import BENCHMARKS, BenchmarkInfo, get_benchmark
from moco_lit.data.synthetic import synthetic_benchmark
from moco_lit.errors import UserError
from moco_lit.runs import benchmark_name

log = logging.getLogger(__name__)

MODELCO_VERSION = "1.1.2"


def modelco_cache_dir(version: str = MODELCO_VERSION) -> Path:
    """The folder ``fetch_modelco`` fills with MoCo's data files."""
    return paths.subdir("data") / f"modelco-{version}"


# ---------------------------------------------------------------------------------------------
# file formats


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON (line {error.lineno}: {error.msg}).") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read the file ({error.strerror}).") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start}); save the file as UTF-8.") from None


def read_moco_json(
    path: str | Path, task_type: str | None = None, name: str | None = None, repeated_ids: bool = False
) -> Benchmark:
    """A MoCo-format JSON file: ``{"task_type", "dev": [...], "test": [...]}``.

    ``task_type`` overrides the file's own; a missing ``dev`` or ``test`` key is an empty split.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not any(split in data for split in SPLITS):
        raise UserError(f'{path}: expected a MoCo-format object with "dev" and/or "test" lists of records.')
    chosen = _chosen_task_type(task_type, data.get("task_type"), path)
    splits = {
        split: validate_records(data.get(split, []), chosen, str(path), split, repeated_ids)
        for split in SPLITS
    }
    return Benchmark(name or _stem(path), chosen, splits["dev"], splits["test"], source=str(path))


def read_jsonl(
    path: str | Path, task_type: str | None = None, name: str | None = None, repeated_ids: bool = False
) -> Benchmark:
    """A JSONL file: one record a line, each with ``"split": "dev"`` or ``"test"``.

    The task type is ``task_type``, else the registry's for a known file name, else the
    ``"task_type"`` field the records carry (all the same). Blank lines are skipped.
    """
    path = Path(path)
    by_split: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    record_types: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UserError(f"{path}: cannot read the file ({error.strerror}).") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start}); save the file as UTF-8.") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = _parse_jsonl_line(line, path, number)
        by_split[record.pop("split")].append(record)
        if "task_type" in record:
            record_types.add(str(record["task_type"]))
    if len(record_types) > 1:
        raise UserError(f"{path}: records disagree on task_type ({', '.join(sorted(record_types))}).")
    known = BENCHMARKS.get(name or _stem(path))
    fallback = known.task_type if known else next(iter(record_types), None)
    chosen = _chosen_task_type(task_type, fallback, path)
    splits = {
        split: validate_records(by_split[split], chosen, str(path), split, repeated_ids) for split in SPLITS
    }
    return Benchmark(name or _stem(path), chosen, splits["dev"], splits["test"], source=str(path))


def _parse_jsonl_line(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: line {number} is not valid JSON ({error.msg}).") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}.")
    if record.get("split") not in SPLITS:
        raise UserError(
            f'{path}: line {number}: "split" must be "dev" or "test", got {record.get("split")!r}.'
        )
    return record


def _chosen_task_type(requested: str | None, from_file: Any, path: Path) -> str:
    if requested and from_file and requested != from_file:
        log.warning("%s: using task type %r instead of the file's %r", path, requested, from_file)
    return check_task_type(requested or from_file, str(path))


def _stem(path: Path) -> str:
    return benchmark_name(str(path))


def read_benchmark_file(
    path: str | Path, task_type: str | None = None, name: str | None = None, repeated_ids: bool = False
) -> Benchmark:
    """A ``.json`` (MoCo format) or ``.jsonl`` file, chosen by extension."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path, task_type, name, repeated_ids)
    if path.suffix == ".json":
        return read_moco_json(path, task_type, name, repeated_ids)
    raise UserError(f"{path}: unsupported file type {path.suffix!r}; expected .json (MoCo format) or .jsonl.")


# ---------------------------------------------------------------------------------------------
# resolution


def _looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith((".json", ".jsonl")) or "/" in name_or_path or "\\" in name_or_path


def _find_in_folder(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.json", folder / f"{name}.jsonl"):
        if candidate.is_file():
            return candidate
    return None


def load_benchmark(
    name_or_path: str, data_dir: str | Path | None = None, task_type: str | None = None, seed: int = 0
) -> Benchmark:
    """Resolve ``name_or_path`` to a validated ``Benchmark`` (order in the module docstring).

    ``seed`` only reaches the synthetic benchmarks; files and Hub splits do not depend on it.
    """
    synthetic = synthetic_benchmark(name_or_path, seed)
    if synthetic is not None:
        return synthetic
    path = Path(name_or_path).expanduser()
    if path.is_file():
        known = BENCHMARKS.get(_stem(path))
        return read_benchmark_file(path, task_type, repeated_ids=bool(known and known.repeated_ids))
    if path.is_dir():
        raise UserError(
            f"{path} is a folder; pass --data.data_dir {path} together with --data.benchmark NAME."
        )
    if _looks_like_path(name_or_path):
        raise UserError(f"Benchmark file {name_or_path!r} does not exist.")
    return _load_by_name(name_or_path, data_dir, task_type)


def _load_by_name(name: str, data_dir: str | Path | None, task_type: str | None) -> Benchmark:
    info = BENCHMARKS.get(name)
    repeated_ids = bool(info and info.repeated_ids)
    if data_dir is not None:
        found = _find_in_folder(Path(data_dir).expanduser(), name)
        if found is None:
            raise UserError(f"No {name}.json or {name}.jsonl in --data.data_dir {data_dir}.")
        return read_benchmark_file(found, task_type, name, repeated_ids)
    # get_benchmark raises the "unknown benchmark" error, with close matches, for unknown names.
    return _load_registered(get_benchmark(name), task_type)


def _load_registered(info: BenchmarkInfo, task_type: str | None) -> Benchmark:
    cached = modelco_cache_dir() / info.moco_file
    if cached.is_file():
        return read_moco_json(cached, task_type, info.name, info.repeated_ids)
    if info.hub is not None:
        return load_hub_benchmark(info.hub)
    raise UserError(
        f"Benchmark {info.name!r} needs MoCo's data files: run `python -m moco_lit data fetch modelco` "
        "or pass --data.data_dir FOLDER holding its .json file."
    )
