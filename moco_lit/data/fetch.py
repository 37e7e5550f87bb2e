"""Fetch MoCo's benchmark files (the exact dev/test splits of the paper) into the cache.

MoCo publishes its 45 data files inside the sdist of the ``modelco`` package on PyPI, so they
are fetched with the user's own pip (its index, proxy and certificates apply), then the
``model_collaboration/data/*.json`` members are copied out. The cache folder appears only once
complete: files are written to a temporary folder beside it and renamed at the end.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from moco_lit.data.sources import MODELCO_VERSION, modelco_cache_dir
from moco_lit.errors import UserError

log = logging.getLogger(__name__)

DATA_FOLDER = "model_collaboration/data/"


def pip_download_command(version: str, dest: Path) -> list[str]:
    """The pip command that downloads the modelco sdist (no wheel, no dependencies) into ``dest``."""
    return [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        f"modelco=={version}", "-d", str(dest),
    ]  # fmt: skip


def _run_pip(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _failure(what: str, version: str) -> UserError:
    command = shlex.join(pip_download_command(version, Path("DOWNLOADS")))
    return UserError(
        f"Fetching MoCo's data failed: {what}. Where the network is reachable run `{command}`, "
        f"copy the {DATA_FOLDER}*.json files of that sdist into a folder and pass --data.data_dir FOLDER."
    )


def _download_sdist(version: str, dest: Path) -> Path:
    command = pip_download_command(version, dest)
    log.info("Downloading modelco==%s (sdist) with pip ...", version)
    try:
        result = _run_pip(command)
    except OSError as error:
        raise _failure(f"could not start pip ({error})", version) from None
    if result.returncode != 0:
        last_line = (result.stderr or result.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise _failure(f"pip exited with code {result.returncode} ({last_line[0].strip()})", version)
    archives = sorted(dest.glob("modelco-*.tar.gz")) + sorted(dest.glob("modelco-*.zip"))
    if not archives:
        raise _failure(f"pip downloaded no modelco sdist into {dest}", version)
    return archives[0]


def _data_members(names: list[str]) -> list[str]:
    """Archive members that are data files directly inside ``model_collaboration/data/``."""
    return [
        name
        for name in names
        if name.endswith(".json") and name.rsplit("/", 1)[0].endswith(DATA_FOLDER.rstrip("/"))
    ]


def extract_data_files(archive: Path, dest: Path) -> int:
    """Copy the data JSON files of ``archive`` (tar.gz or zip) flat into ``dest``; their count."""
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as bundle:
            for name in _data_members(bundle.namelist()):
                # only the base name is used, so no member can write outside ``dest``
                (dest / Path(name).name).write_bytes(bundle.read(name))
                count += 1
        return count
    with tarfile.open(archive, "r:*") as bundle:
        members = {member.name: member for member in bundle.getmembers() if member.isfile()}
        for name in _data_members(list(members)):
            source = bundle.extractfile(members[name])
            if source is not None:
                (dest / Path(name).name).write_bytes(source.read())
                count += 1
    return count


def fetch_modelco(version: str = MODELCO_VERSION, force: bool = False) -> Path:
    """MoCo's data files for ``version`` in the cache, downloading them unless already there."""
    target = modelco_cache_dir(version)
    if target.is_dir() and any(target.glob("*.json")) and not force:
        log.info("MoCo data %s already in %s", version, target)
        return target
    # the staging folder sits beside the target so the final rename stays on one file system
    with tempfile.TemporaryDirectory(prefix=f".modelco-{version}-", dir=target.parent) as staging:
        staging_path = Path(staging)
        archive = _download_sdist(version, staging_path / "download")
        count = extract_data_files(archive, staging_path / "data")
        if count == 0:
            raise _failure(f"{archive.name} holds no {DATA_FOLDER}*.json files", version)
        if target.exists():
            shutil.rmtree(target)
        (staging_path / "data").rename(target)
    log.info("MoCo data %s: %d files in %s", version, count, target)
    print(f"Fetched {count} MoCo data files into {target}", file=sys.stderr)
    return target
