"""Collaborators: one model + its tokenizer (+ an optional PEFT adapter), loaded once per process.

A recipe names collaborators as strings (a hub id, a local folder, a ``.gguf`` file, a short name of a
package-shipped checkpoint, ``folder+adapter_folder`` for a LoRA adapter on a base, or
``callable:pkg.module.fn`` for a Python function that answers prompts) or as dicts
``{path, adapter, name, dtype}``. :func:`load_collaborator` keeps every loaded model in a
process-wide pool, so methods, sweeps and judges that name the same model share one copy.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import try_to_load_from_cache
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer

from moco_lit.errors import UserError, load_failure
from moco_lit.model_files import resolve_model

log = logging.getLogger(__name__)

Message = dict[str, str]
Prompt = str | Sequence[Message]
"""A user message, or a whole chat (a list of ``{"role", "content"}`` dicts)."""


class RawText(str):
    """A prompt the model reads as it is: no chat template, only the start token its tokenizer
    adds on its own (MoCo's token-level methods feed the raw prompt this way)."""


PLAIN_ROLE_NAMES = {"system": "", "user": "User: ", "assistant": "Assistant: "}
PLAIN_TURN_STARTS = ("\nUser:", "\nAssistant:")
"""Where a model reading the plain-text fallback starts writing the next turn itself: its answer
ends there (a model without a chat template has no end-of-turn token to stop on)."""


@dataclass(frozen=True)
class CollaboratorSpec:
    """What a recipe says about one collaborator."""

    path: str
    adapter: str | None = None
    name: str | None = None
    dtype: str = "auto"
    system_prompt: str | None = None  # a system message before every prompt this model reads

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.path.startswith(("callable:", "quickstart:")):
            return self.path.replace(":", ".").rsplit(".", 1)[-1]
        base = self.path.rstrip("/").split("/")[-1]
        return f"{base}+{Path(self.adapter).name}" if self.adapter else base


def parse_spec(entry: str | dict | CollaboratorSpec) -> CollaboratorSpec:
    if isinstance(entry, CollaboratorSpec):
        return entry
    if isinstance(entry, str):
        if not entry.strip():
            raise UserError("model.collaborators has an empty entry; give a hub id, a folder or a .gguf file")
        if "+" in entry and not entry.startswith("callable:"):
            base, adapter = entry.split("+", 1)
            return CollaboratorSpec(path=base, adapter=adapter)
        return CollaboratorSpec(path=entry)
    if isinstance(entry, dict):
        unknown = set(entry) - {"path", "adapter", "name", "dtype", "system_prompt"}
        if "path" not in entry or unknown:
            raise UserError(
                f"collaborator {entry!r}: expected keys path (required), adapter, name, dtype, system_prompt"
                + (f"; unknown: {sorted(unknown)}" if unknown else "")
            )
        return CollaboratorSpec(**entry)
    raise UserError(f"collaborator {entry!r}: expected a string or a dict with a 'path'")


@dataclass(eq=False)
class Collaborator:
    """A language model that takes part in a collaboration.

    ``model`` is a ``transformers`` causal LM (possibly a ``peft`` model), or None for a scripted
    collaborator whose answers come from ``respond(rendered_prompt[, seed]) -> str | (str, confidence)``
    (tests, demos, or a wrapper around a remote API). ``fingerprint`` identifies the exact weights for the generation
    cache; methods that change weights in place (merges, training) must call :meth:`refresh_fingerprint`.
    """

    name: str
    spec: CollaboratorSpec
    tokenizer: Any = None
    model: Any = None
    respond: Callable[..., str | tuple[str, float]] | None = None
    fingerprint: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Text that ends an answer besides the end token: the next plain-text turn, for models
        that read the plain-text fallback; none for chat templates and scripted collaborators."""
        return () if self.model is None or self.has_chat_template else PLAIN_TURN_STARTS

    @property
    def device(self) -> torch.device:
        if self.model is None:
            return torch.device("cpu")
        return next(self.model.parameters()).device

    def render(self, prompt: Prompt, enable_thinking: bool | None = False) -> str:
        """The exact text the model reads: its chat template, or a plain-text fallback without one.

        ``enable_thinking`` goes to the template (False turns Qwen3's thinking off, as MoCo does;
        templates that do not use it ignore it); None leaves the template's own default.
        """
        if isinstance(prompt, RawText):
            start = self.tokenizer("")["input_ids"] if self.tokenizer is not None else []
            bos = getattr(self.tokenizer, "bos_token_id", None)
            return (self.tokenizer.bos_token if bos is not None and start[:1] == [bos] else "") + prompt
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        system = self.spec.system_prompt
        if system and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": system}, *messages]
        if self.has_chat_template:
            options = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **options
            )
        return render_plain(messages)

    def refresh_fingerprint(self, salt: str) -> None:
        """Mark the weights as changed (``salt`` names the change: a merge recipe, a training step)."""
        self.fingerprint = hashlib.sha256(f"{self.fingerprint}|{salt}".encode()).hexdigest()[:24]

    def to(self, device: torch.device | str) -> Collaborator:
        if self.model is not None and self.device != torch.device(device):
            self.model.to(device)
        return self


def render_plain(messages: Sequence[Message]) -> str:
    """Plain-text chat for tokenizers without a template: ``User: …`` / ``Assistant: …`` turns."""
    turns = [PLAIN_ROLE_NAMES.get(m["role"], f"{m['role']}: ") + m["content"] for m in messages]
    return "\n\n".join(turns) + "\n\nAssistant:"


_POOL: dict[tuple, Collaborator] = {}


def load_collaborator(
    entry: str | dict | CollaboratorSpec, device: torch.device | str = "cpu"
) -> Collaborator:
    """Load (once per process) and return the collaborator named by ``entry``, on ``device``."""
    spec = parse_spec(entry)
    key = (spec, str(torch.device(device)))
    if key not in _POOL:
        _POOL[key] = _load(spec, torch.device(device))
    return _POOL[key]


def release_collaborators() -> None:
    """Forget every pooled model (frees memory between unrelated experiments)."""
    _POOL.clear()


def check_collaborators(entries: Sequence[str | dict | CollaboratorSpec]) -> None:
    """Every collaborator can be found, checked before the first one loads: a scripted one
    imports, a short name is fetched, a path exists, and offline a Hub name is in the local cache
    (a typo in the last model of a pool costs no loading of the others)."""
    for entry in entries:
        spec = parse_spec(entry)
        if spec.path in {key[0].path for key in _POOL}:
            continue  # loaded already
        if spec.path.startswith("callable:"):
            _load_callable(spec)
            continue
        path = resolve_model(spec.path)
        for name in (path, spec.adapter):
            if name and not Path(name).expanduser().exists() and not _in_hub_cache_or_online(name):
                raise UserError(
                    f"cannot load model {name!r}: not a local folder, and not in the Hugging Face cache "
                    "(offline); give a local folder, or a short name from `python -m moco_lit models list`"
                )


def _in_hub_cache_or_online(name: str) -> bool:
    """Online, the Hub decides when the model loads; offline, whether its config is cached."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in {"1", "true", "yes", "on"}:
        return True
    try:
        found = try_to_load_from_cache(name, "config.json") or try_to_load_from_cache(
            name, "adapter_config.json"
        )
    except Exception:  # noqa: BLE001 - a malformed repo id: let the loader say so
        return True
    return isinstance(found, str)


def load_causal_lm(
    name: str, label: str, dtype: torch.dtype | None = None, lora: dict | None = None, path: str | None = None
):
    """``name`` (a short name, folder or hub id; ``path`` when resolved already) as a causal LM and
    its tokenizer (pad token set), with a fresh LoRA adapter when ``lora`` gives its settings
    (``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules``); a failure is one line naming
    ``label`` and ``name``."""
    path = path or resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **({} if dtype is None else {"dtype": dtype}))
    except (OSError, ValueError, json.JSONDecodeError, SafetensorError) as err:
        raise UserError(f"cannot load {label} {name!r}: {load_failure(err)}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if lora is not None:
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))
    return model, tokenizer


def lora_of(hparams: Any) -> dict:
    """The LoRA settings of a method's ``lora_r``, ``lora_alpha``, ``lora_dropout`` and
    ``lora_target_modules`` arguments, as ``load_causal_lm(lora=...)`` takes them."""
    return {
        "r": hparams.lora_r,
        "lora_alpha": hparams.lora_alpha,
        "lora_dropout": hparams.lora_dropout,
        "target_modules": list(hparams.lora_target_modules),
    }


def _load(spec: CollaboratorSpec, device: torch.device) -> Collaborator:
    if spec.path.startswith("callable:"):
        return _load_callable(spec)
    path = resolve_model(spec.path)
    dtype = _choose_dtype(spec.dtype, device)
    model, tokenizer = load_causal_lm(spec.path, "model", dtype, path=path)
    if spec.adapter:
        model = _attach_adapter(model, spec.adapter)
    model.to(device).eval()
    tokenizer.padding_side = "left"
    log.info("loaded %s (%s) on %s", spec.display_name, dtype, device)
    return Collaborator(
        name=spec.display_name,
        spec=spec,
        tokenizer=tokenizer,
        model=model,
        fingerprint=weights_fingerprint(path, spec.adapter),
    )


def _attach_adapter(model: Any, adapter: str) -> Any:
    if not Path(adapter, "adapter_config.json").exists() and Path(adapter).exists():
        raise UserError(f"adapter {adapter!r} has no adapter_config.json; expected a PEFT adapter folder")
    try:
        return PeftModel.from_pretrained(model, adapter)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load adapter {adapter!r}: {load_failure(err)}") from err


def _load_callable(spec: CollaboratorSpec) -> Collaborator:
    target = spec.path.removeprefix("callable:")
    module_name, _, attr = target.replace(":", ".").rpartition(".")
    try:
        respond = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise UserError(f"collaborator {spec.path!r}: cannot import {target!r} ({err})") from err
    return Collaborator(
        name=spec.display_name,
        spec=spec,
        respond=respond,
        fingerprint=hashlib.sha256(spec.path.encode()).hexdigest()[:24],
    )


def _choose_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested != "auto":
        try:
            return getattr(torch, requested)
        except AttributeError as err:
            raise UserError(f"dtype {requested!r}: expected auto, float32, bfloat16 or float16") from err
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def weights_fingerprint(path: str, adapter: str | None) -> str:
    """Identify the weights cheaply: config + weight files' names, sizes and mtimes (or the hub id)."""
    parts = [path, adapter or ""]
    for folder in filter(None, [path, adapter]):
        if Path(folder).is_dir():
            for file in sorted(Path(folder).iterdir()):
                if file.suffix in {".json", ".safetensors", ".bin", ".model"}:
                    stat = file.stat()
                    parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
