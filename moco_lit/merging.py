"""Weight arithmetic on tensors kept in memory: the only place that does state-dict maths.

Sources are :class:`Weights` views (a model's own tensors, a LoRA model seen as full weights
``W + scale·B·A``, its base weights, or only its adapter tensors); nothing is copied to build a
view. A merge streams tensor by tensor into a *target* (the tensors of one resident model, written
in place under ``no_grad``), so the peak memory of a merge is the target plus one tensor's
temporaries. Architectures that do not match raise :class:`UserError` naming the first tensor that
differs. Tensor-level operations (``ties``, ``dare``, ``extrapolate``...) are plain functions, so
tests check them on hand-written tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from peft.tuners.lora import LoraLayer

from moco_lit.errors import UserError, did_you_mean

Combine = Callable[[str, list[torch.Tensor]], torch.Tensor]
"""Per-tensor rule: (tensor name, the sources' tensors in float32) -> the merged tensor."""

PEFT_PREFIX = "base_model.model."

DareRescale = Literal["l1", "inverse_density"]


# -- views of weights ---------------------------------------------------------------------------


@dataclass
class Weights:
    """Named tensors of one model, read lazily: ``names`` in order, ``shape(name)``, ``tensor(name)``."""

    label: str
    names: list[str]
    shape: Callable[[str], torch.Size]
    tensor: Callable[[str], torch.Tensor]

    @classmethod
    def of(cls, tensors: Mapping[str, torch.Tensor], label: str = "weights") -> Weights:
        return cls(label, list(tensors), lambda n: tensors[n].shape, lambda n: tensors[n])


def model_weights(model: torch.nn.Module, label: str = "model") -> Weights:
    """The model's own state-dict tensors (references, not copies)."""
    return Weights.of(model.state_dict(), label)


def _lora_layers(peft_model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {name: module for name, module in peft_model.named_modules() if isinstance(module, LoraLayer)}


def _plain_name(peft_name: str) -> str:
    """``base_model.model.x.q_proj.base_layer.weight`` -> ``x.q_proj.weight`` (the merged model's name)."""
    return peft_name.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")


def lora_full_weights(peft_model: torch.nn.Module, label: str = "lora", with_delta: bool = True) -> Weights:
    """A LoRA model seen as a plain model: each adapted weight is ``W + scale·B·A`` (or ``W`` alone).

    Names are those of the plain model (what ``merge_and_unload`` would give), so full models and
    LoRA collaborators merge with each other. The product is computed when a tensor is read.
    """
    state = peft_model.state_dict()
    layers = _lora_layers(peft_model)
    plain: dict[str, tuple[str, torch.nn.Module | None]] = {}
    for name in state:
        if ".lora_" in name or "lora_magnitude" in name:
            continue
        owner = name.rsplit(".base_layer.", 1)[0] if ".base_layer.weight" in name else None
        plain[_plain_name(name)] = (name, layers.get(owner) if owner else None)

    def tensor(name: str) -> torch.Tensor:
        source, layer = plain[name]
        weight = state[source]
        if layer is None or not with_delta:
            return weight
        adapter = layer.active_adapters[0]
        return weight + layer.get_delta_weight(adapter).to(weight.dtype)

    return Weights(label, list(plain), lambda n: state[plain[n][0]].shape, tensor)


def adapter_weights(peft_model: torch.nn.Module, label: str = "adapter") -> Weights:
    """Only the LoRA tensors (``lora_A``/``lora_B``) of a PEFT model, by parameter name."""
    tensors = {n: p for n, p in peft_model.named_parameters() if ".lora_" in n}
    if not tensors:
        raise UserError(f"{label} has no LoRA tensors; expected a PEFT LoRA adapter (base+adapter)")
    return Weights.of(tensors, label)


def is_lora(model: torch.nn.Module) -> bool:
    return bool(_lora_layers(model)) and hasattr(model, "peft_config")


def writable_tensors(model: torch.nn.Module, adapters_only: bool = False) -> dict[str, torch.Tensor]:
    """The tensors a merge writes into: the model's state dict, each shared (tied) tensor once."""
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if adapters_only and ".lora_" not in name:
            continue
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        out[name] = tensor
    return out


# -- checks -------------------------------------------------------------------------------------


def check_compatible(target: Mapping[str, torch.Tensor], sources: Sequence[Weights]) -> None:
    """Every source must hold every target tensor with the same shape; else name the first one."""
    for source in sources:
        names = set(source.names)
        for name, tensor in target.items():
            if name not in names:
                raise UserError(
                    f"cannot merge {source.label}: it has no tensor {name!r}; "
                    "merged models must share one architecture"
                )
            if source.shape(name) != tensor.shape:
                raise UserError(
                    f"cannot merge {source.label}: tensor {name!r} has shape {list(source.shape(name))}, "
                    f"expected {list(tensor.shape)}; merged models must share one architecture"
                )


class Scratch:
    """Reusable buffers for one merge's per-tensor temporaries, by slot name.

    On CPU a fresh tensor-sized allocation is page-faulted in by the kernel each time, which costs
    more than the arithmetic done in it; ``take`` hands out a view of a buffer kept across tensors
    (grown when a larger tensor comes). A view is valid until its slot is taken again.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def take(self, slot: str, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or like.dtype
        buffer = self._buffers.get(slot)
        if (
            buffer is None
            or buffer.numel() < like.numel()
            or buffer.dtype != dtype
            or buffer.device != like.device
        ):
            buffer = self._buffers[slot] = torch.empty(like.numel(), dtype=dtype, device=like.device)
        return buffer[: like.numel()].view(like.shape)


# -- the streaming driver -----------------------------------------------------------------------


@torch.no_grad()
def merge_into(target: Mapping[str, torch.Tensor], sources: Sequence[Weights], combine: Combine) -> None:
    """For each target tensor: read the sources' tensors, combine them in float32, copy in place."""
    check_compatible(target, sources)
    for name, out in target.items():
        tensors = [source.tensor(name).to(device=out.device, dtype=torch.float32) for source in sources]
        out.copy_(combine(name, tensors))


def linear(weights: Sequence[float]) -> Combine:
    """Σ w_i · x_i (a weighted average when the weights sum to 1)."""
    return lambda name, tensors: weighted_sum(tensors, weights)


def on_task_vectors(
    rule: Callable[[str, list[torch.Tensor]], torch.Tensor], scratch: Scratch | None = None
) -> Combine:
    """Apply ``rule`` to task vectors ``x_i − base``; the base must be the first source.

    With ``scratch`` the task vectors live in its buffers (valid until the next tensor).
    """
    scratch = scratch or Scratch()

    def combine(name: str, tensors: list[torch.Tensor]) -> torch.Tensor:
        base, *models = tensors
        deltas = [torch.sub(m, base, out=scratch.take(f"delta{i}", base)) for i, m in enumerate(models)]
        # a rule returns a tensor of its own, never a source's: add the base into it in place
        return rule(name, deltas).add_(base)

    return combine


def merge_linear(
    target: Mapping[str, torch.Tensor], sources: Sequence[Weights], weights: Sequence[float]
) -> None:
    _check_weights(sources, weights)
    merge_into(target, sources, linear(weights))


def merge_task_arithmetic(
    target: Mapping[str, torch.Tensor], base: Weights, sources: Sequence[Weights], weights: Sequence[float]
) -> None:
    """base + Σ w_i (x_i − base)."""
    _check_weights(sources, weights)
    merge_into(target, [base, *sources], on_task_vectors(lambda _, deltas: weighted_sum(deltas, weights)))


def merge_dare_ties(
    target: Mapping[str, torch.Tensor],
    base: Weights,
    sources: Sequence[Weights],
    weights: Sequence[float],
    *,
    density: float = 1.0,
    ties_density: float = 1.0,
    disjoint_mean: bool = False,
    sign_election: bool = True,
    seed: int = 0,
    dare_rescale: DareRescale = "l1",
) -> None:
    """DARE each task vector (keep ``density``, seeded per model and tensor), then TIES them.

    ``sign_election=False`` skips TIES (plain DARE task arithmetic).
    """
    _check_weights(sources, weights)
    scratch = Scratch()

    def rule(name: str, deltas: list[torch.Tensor]) -> torch.Tensor:
        dropped = [
            dare(d, 1.0 - density, tensor_seed(seed, i, name), dare_rescale) for i, d in enumerate(deltas)
        ]
        if not sign_election:
            return weighted_sum(dropped, weights)
        # the task vectors are this merge's own (scratch buffers or DARE's copies): TIES may reuse them
        return ties(
            dropped,
            weights,
            density=ties_density,
            disjoint_mean=disjoint_mean,
            reuse_inputs=True,
            scratch=scratch,
        )

    merge_into(target, [base, *sources], on_task_vectors(rule, scratch))


def merge_extrapolate(
    target: Mapping[str, torch.Tensor], source: Weights, toward: Weights, alpha: float
) -> None:
    """ExPO: ``toward + alpha · (toward − source)``."""
    merge_into(target, [source, toward], lambda _, t: extrapolate(t[1], t[0], alpha))


# -- tensor-level operations --------------------------------------------------------------------


def weighted_sum(tensors: Sequence[torch.Tensor], weights: Iterable[float]) -> torch.Tensor:
    out = torch.zeros_like(tensors[0])
    for tensor, weight in zip(tensors, weights, strict=True):
        out.add_(tensor, alpha=float(weight))
    return out


def task_vector(model: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    return model - base


def extrapolate(toward: torch.Tensor, source: torch.Tensor, alpha: float) -> torch.Tensor:
    """``toward + alpha·(toward − source)``; alpha 0 gives ``toward`` back exactly."""
    return toward + alpha * (toward - source) if alpha else toward.clone()


def trim_to_density(delta: torch.Tensor, density: float) -> torch.Tensor:
    """TIES trim: keep the ``density`` share of entries with the largest magnitude, zero the rest."""
    if density >= 1.0:
        return delta
    keep = int(round(density * delta.numel()))
    if keep <= 0:
        return torch.zeros_like(delta)
    threshold = delta.abs().flatten().kthvalue(delta.numel() - keep + 1).values
    return torch.where(delta.abs() >= threshold, delta, torch.zeros_like(delta))


def elect_sign(deltas: Sequence[torch.Tensor]) -> torch.Tensor:
    """TIES sign election: the sign of the total mass per entry (+1 where it is zero)."""
    total = torch.stack(list(deltas)).sum(dim=0)
    return torch.where(total >= 0, 1.0, -1.0).to(total.dtype)


def ties(
    deltas: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    *,
    density: float = 1.0,
    disjoint_mean: bool = False,
    reuse_inputs: bool = False,
    scratch: Scratch | None = None,
) -> torch.Tensor:
    """TIES-merging (Yadav et al., 2023): trim, elect the sign, combine the entries that agree.

    With weights, the deltas are scaled first; the agreeing weighted entries are summed (MoCo
    1.1.2's native merge), or with ``disjoint_mean`` divided by the total weight of the models that
    agree on each entry (the paper's disjoint mean; equal weights give the plain mean).
    ``reuse_inputs`` lets it scale the deltas in place, for callers that own them; with
    ``scratch`` the result and temporaries live in its buffers (valid until its next use).

    Computed one model at a time into a few buffers: on CPU the cost of TIES was mostly fresh
    tensor-sized allocations and boolean ``where``s, not arithmetic.
    """
    scratch = scratch or Scratch()
    weights = list(weights) if weights is not None else [1.0] * len(deltas)
    scaled = []
    for delta, weight in zip(deltas, weights, strict=True):
        trimmed = trim_to_density(delta, density)
        owned = reuse_inputs or trimmed is not delta
        scaled.append(trimmed.mul_(weight) if owned else trimmed * weight)
    first = scaled[0]
    flags = scratch.take("flags", first, torch.bool)
    sign = scratch.take("sign", first).copy_(first)
    for delta in scaled[1:]:
        sign.add_(delta)
    torch.ge(sign, 0, out=flags)
    sign.copy_(flags).mul_(2.0).sub_(1.0)  # the elected sign: +1 where the mass is >= 0
    total, agree = scratch.take("total", first).zero_(), scratch.take("agree", first)
    mass = scratch.take("mass", first).zero_() if disjoint_mean else None
    for delta, weight in zip(scaled, weights):
        # an entry agrees when it is non-zero with the elected sign
        torch.gt(torch.mul(delta, sign, out=agree), 0, out=flags)
        agree.copy_(flags)
        total.addcmul_(delta, agree)
        if mass is not None:
            mass.add_(agree, alpha=weight)
    if mass is None:
        return total
    # an entry no model agrees on has total 0: divide it by 1
    torch.eq(mass, 0, out=flags)
    return total.div_(mass.add_(agree.copy_(flags)))


def dare(delta: torch.Tensor, drop_rate: float, seed: int, rescale: DareRescale = "l1") -> torch.Tensor:
    """DARE (Yu et al., 2024): drop each entry with probability ``drop_rate``, rescale the rest.

    ``l1`` (MoCo's, after mergekit) scales the kept entries so the tensor keeps its L1 norm;
    ``inverse_density`` divides them by ``1 − drop_rate``, which keeps every entry's expectation
    (the paper's). The mask is :func:`dare_mask` of ``seed``.
    """
    if drop_rate <= 0.0:
        return delta
    if drop_rate >= 1.0:
        return torch.zeros_like(delta)
    kept = delta * dare_mask(delta.shape, drop_rate, seed).to(device=delta.device, dtype=delta.dtype)
    if rescale == "inverse_density":
        return kept / (1.0 - drop_rate)
    if rescale != "l1":
        raise UserError(f"DARE rescale must be l1 or inverse_density, got {rescale!r}")
    before, after = delta.abs().sum(), kept.abs().sum()
    if before < 1e-7 or after < 1e-7:  # nothing to rescale toward (MoCo's cut-offs)
        return kept
    return kept * (before / after)


def dare_mask(shape: Sequence[int], drop_rate: float, seed: int) -> torch.Tensor:
    """The entries DARE keeps (True) of a tensor of ``shape``: each dropped with probability
    ``drop_rate``, from ``seed`` alone (a CPU generator), so the same seed gives the same mask on
    any device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape), generator=generator) >= drop_rate


def lora_delta(lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
    """The full-weight change of one LoRA pair: ``scaling · B·A``."""
    return scaling * (lora_b @ lora_a)


def tensor_seed(seed: int, model: int, name: str) -> int:
    """A seed per (run seed, model, tensor), independent of the order tensors are visited in."""
    digest = hashlib.sha256(f"{seed}|{model}|{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _check_weights(sources: Sequence[Weights], weights: Sequence[float]) -> None:
    if len(sources) != len(weights):
        raise ValueError(f"{len(sources)} models but {len(weights)} weights")


# -- merge rules: a name -> one merge over weighted sources ------------------------------------
#
# A rule merges ``sources`` with one weight each into ``target`` (with a ``base`` when it works on
# task vectors). The searches propose weights and name a rule; they never do the arithmetic.
# A new rule is one function with this signature and one ``register_merge_rule`` line.

RuleFunction = Callable[..., None]
"""``(target, sources, weights, base, **params) -> None``: write the merge into ``target``."""


@dataclass(frozen=True)
class MergeRule:
    """A registered merge rule: its function, the parameters it accepts, whether it needs a base."""

    name: str
    function: RuleFunction
    params: frozenset[str]
    needs_base: bool = False

    def check_params(self, params: Mapping[str, object]) -> None:
        for key in params:
            if key not in self.params:
                accepted = ", ".join(sorted(self.params)) or "none"
                raise UserError(
                    f"merge rule {self.name} has no parameter {key!r}{did_you_mean(key, self.params)}; "
                    f"it accepts: {accepted}"
                )

    def apply(
        self,
        target: Mapping[str, torch.Tensor],
        sources: Sequence[Weights],
        weights: Sequence[float],
        base: Weights | None = None,
        **params: object,
    ) -> None:
        self.check_params(params)
        if self.needs_base and base is None:
            raise UserError(
                f"merge rule {self.name} works on task vectors and needs a base model (base_model_name)"
            )
        self.function(target, sources, weights, base, **params)


MERGE_RULES: dict[str, MergeRule] = {}


def register_merge_rule(
    name: str, function: RuleFunction, params: Iterable[str] = (), needs_base: bool = False
) -> MergeRule:
    """Make ``function`` usable by every weight search as ``merge_rule: <name>``."""
    rule = MergeRule(name, function, frozenset(params), needs_base)
    MERGE_RULES[name] = rule
    return rule


def merge_rule(name: str) -> MergeRule:
    """The registered rule called ``name``; an unknown name is a :class:`UserError`."""
    rule = MERGE_RULES.get(name)
    if rule is None:
        raise UserError(
            f"unknown merge rule {name!r}{did_you_mean(str(name), MERGE_RULES, cutoff=0.6)}; "
            f"known rules: {', '.join(sorted(MERGE_RULES))}"
        )
    return rule


def _linear_rule(target, sources, weights, base) -> None:
    merge_linear(target, sources, weights)


def _task_arithmetic_rule(target, sources, weights, base) -> None:
    merge_task_arithmetic(target, base, sources, weights)


def _ties_rule(target, sources, weights, base, density: float = 1.0, disjoint_mean: bool = False) -> None:
    merge_dare_ties(target, base, sources, weights, ties_density=density, disjoint_mean=disjoint_mean)


def _dare_ties_rule(target, sources, weights, base, **params) -> None:
    merge_dare_ties(target, base, sources, weights, **params)


def _extrapolate_rule(target, sources, weights, base, alpha: float = 0.3) -> None:
    """Two sources (source, toward); the weights are not used (ExPO's strength is ``alpha``)."""
    if len(sources) != 2:
        raise UserError(f"merge rule extrapolate takes two models (source, toward), got {len(sources)}")
    merge_extrapolate(target, sources[0], sources[1], alpha)


DARE_TIES_PARAMS = ("density", "ties_density", "disjoint_mean", "sign_election", "seed", "dare_rescale")

register_merge_rule("linear", _linear_rule)
register_merge_rule("task_arithmetic", _task_arithmetic_rule, needs_base=True)
register_merge_rule("ties", _ties_rule, ("density", "disjoint_mean"), needs_base=True)
register_merge_rule("dare_ties", _dare_ties_rule, DARE_TIES_PARAMS, needs_base=True)
register_merge_rule("extrapolate", _extrapolate_rule, ("alpha",))
