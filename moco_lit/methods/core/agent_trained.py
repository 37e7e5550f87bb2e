"""What the trained text methods share: trainable LoRA agents on collaborators and a base module
whose ``fit`` alternates "make training data" and "train on it" (SPARTA's ratings: ``text/ratings.py``).

Not a method (no ``method_name``): ``multiagent_finetuning``, ``sparta``, ``stackelberg``,
``agglm``, ``distillation`` and the trained ``llm_blender`` build on these pieces.

:class:`LoraAgents` holds trainable copies of some loaded models. ``layout: shared_base`` puts one
named LoRA adapter per agent on a single copy of a base they all share (the adapter is switched
before each use); ``one_by_one`` gives each agent its own copy (different bases, or full
fine-tuning), and a training step computes the agents' losses one after another. The pooled
originals are never touched, so an untrained run in the same process still sees the base models.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from safetensors.torch import save_file
from torch import nn

from moco_lit.collaborators import Collaborator, Prompt
from moco_lit.dev_table import DevTable
from moco_lit.errors import UserError
from moco_lit.generation import DecodingConfig, Generation
from moco_lit.methods.core.dev_trained import DevTrainedModule
from moco_lit.methods.core.module import Example
from moco_lit.training import (
    completion_batch,
    completion_logps,
    dpo_loss,
    reference_logps,
    token_logps,
)

log = logging.getLogger(__name__)

Layout = Literal["auto", "shared_base", "one_by_one"]

# -- trainable agents --------------------------------------------------------------------------


def weighted_sft_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Completion-only cross-entropy, token mean per row, then the ``weights``-weighted row mean."""
    picked, mask = token_logps(logits, labels)
    per_row = -picked.sum(-1) / mask.sum(-1).clamp(min=1)
    weights = weights.to(per_row)
    return (per_row * weights).sum() / weights.sum().clamp(min=1e-8)


def _tensor_digest(tensors: Iterator[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


class LoraAgents(nn.Module):
    """Trainable copies of loaded models, one agent per key (``agent0``, ``ranker``, ...)."""

    def __init__(
        self,
        models: dict[str, Collaborator],
        layout: Layout = "auto",
        lora: bool = True,
        lora_r: int = 64,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        lora_target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    ) -> None:
        super().__init__()
        missing = [key for key, c in models.items() if c.model is None]
        if missing:
            raise UserError(f"cannot train {missing}: scripted collaborators have no weights")
        # one loaded model behind every agent (the pool gives one object per spec)
        same_base = len({id(c) for c in models.values()}) <= 1
        if layout == "auto":
            layout = "shared_base" if same_base and lora else "one_by_one"
        if layout == "shared_base" and not (same_base and lora):
            raise UserError(
                "multi_model: shared_base needs LoRA and every trained agent on the same base model "
                f"(got {sorted({c.spec.path for c in models.values()})}); use one_by_one"
            )
        self.layout = layout
        self.lora = lora
        self._lora_args = dict(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout)
        self._targets = list(lora_target_modules)
        self.bases = nn.ModuleDict()
        self.agents: dict[str, Collaborator] = {}
        self._where: dict[int, tuple[str, str]] = {}  # id(agent) -> (bases key, adapter name)
        for key, original in models.items():
            base_key = "shared" if layout == "shared_base" else key
            adapter = key if layout == "shared_base" else "default"
            if base_key not in self.bases:
                self.bases[base_key] = self._trainable_copy(original.model, adapter)
            elif lora:
                self.bases[base_key].add_adapter(adapter, self._lora_config())
            agent = Collaborator(
                name=original.name,
                spec=original.spec,
                tokenizer=original.tokenizer,
                model=self.bases[base_key],
            )
            agent.fingerprint = f"{original.fingerprint}:{key}"
            self.agents[key] = agent
            self._where[id(agent)] = (base_key, adapter)
        # DDP reduces only the gradients of weights that require one when it wraps the module
        self._unfreeze_adapters()
        log.info("trainable agents %s (%s, %s)", list(self.agents), layout, "LoRA" if lora else "full")

    def _lora_config(self) -> LoraConfig:
        return LoraConfig(target_modules=self._targets, task_type="CAUSAL_LM", **self._lora_args)

    def _trainable_copy(self, model: nn.Module, adapter: str) -> nn.Module:
        copied = copy.deepcopy(model)
        if not self.lora:
            return copied.requires_grad_(True)
        return get_peft_model(copied, self._lora_config(), adapter_name=adapter)

    def owns(self, collaborator: Collaborator) -> bool:
        return id(collaborator) in self._where

    def activate(self, agent: Collaborator) -> nn.Module:
        """Make ``agent``'s adapter the active one; returns the module to call."""
        base_key, adapter = self._where[id(agent)]
        model = self.bases[base_key]
        if self.layout == "shared_base" and model.active_adapter != adapter:
            model.set_adapter(adapter)
            # a step that runs several agents must still reach each of them with its gradient
            self._unfreeze_adapters()
        return model

    def _unfreeze_adapters(self) -> None:
        """peft freezes every adapter but the active one (on adding one, on switching): every
        agent's weights must require a gradient all the same."""
        for parameter in self.trainable_parameters():
            parameter.requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        # by name, not requires_grad: peft freezes the inactive adapters of a shared base
        return [p for n, p in self.named_parameters() if not self.lora or "lora_" in n]

    def trainable_keys(self, prefix: str) -> set[str]:
        # every name of a shared weight (a tied output layer too): the checkpoint must hold each key
        named = self.named_parameters(remove_duplicate=False)
        return {prefix + n for n, _ in named if not self.lora or "lora_" in n}

    def export(self, key: str, folder: Path) -> Path:
        """Save agent ``key`` where ``base+folder`` loads it again: its LoRA adapter in PEFT's
        format (``adapter_config.json`` + ``adapter_model.safetensors``), or the whole model when
        fine-tuned in full; with the tokenizer."""
        agent = self.agents[key]
        base_key, adapter = self._where[id(agent)]
        model = self.bases[base_key]
        folder.mkdir(parents=True, exist_ok=True)
        if self.lora:
            # one adapter of a shared base, under the names PEFT gives a single saved adapter
            tensors = get_peft_model_state_dict(model, adapter_name=adapter)
            save_file(
                {k: v.detach().contiguous() for k, v in tensors.items()}, folder / "adapter_model.safetensors"
            )
            model.peft_config[adapter].save_pretrained(folder)
        else:
            model.save_pretrained(folder)
        agent.tokenizer.save_pretrained(folder)
        return folder

    def refresh_fingerprints(self) -> None:
        """Fingerprint each agent by its own trained weights, so the generation cache stays exact."""
        for key, agent in self.agents.items():
            base_key, adapter = self._where[id(agent)]
            named = self.bases[base_key].named_parameters()
            own = (p for n, p in named if not self.lora or "lora_" in n and f".{adapter}." in n)
            agent.fingerprint = f"{agent.spec.path}:{key}:{_tensor_digest(own)}"

    def agent_weights(self, key: str) -> dict[str, torch.Tensor]:
        """A CPU copy of agent ``key``'s own trained weights (its adapter, or the whole model)."""
        base_key, adapter = self._where[id(self.agents[key])]
        named = self.bases[base_key].named_parameters()
        own = ((n, p) for n, p in named if not self.lora or "lora_" in n and f".{adapter}." in n)
        return {n: p.detach().to("cpu", copy=True) for n, p in own}

    def load_agent_weights(self, key: str, weights: dict[str, torch.Tensor]) -> None:
        """Put weights from :meth:`agent_weights` back into agent ``key``."""
        base_key, _ = self._where[id(self.agents[key])]
        named = dict(self.bases[base_key].named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                named[name].copy_(value)

    @contextmanager
    def generating(self) -> Iterator[None]:
        """Eval mode (no dropout) while generating; the training mode is restored afterwards."""
        modes = [module.training for module in self.bases.values()]
        for module in self.bases.values():
            module.eval()
        try:
            yield
        finally:
            for module, mode in zip(self.bases.values(), modes):
                module.train(mode)


# -- the base of trained text methods ----------------------------------------------------------


class AgentTrainedModule(DevTrainedModule):
    """``fit`` = for each of ``num_iterations``: :meth:`build_iteration` makes training items from
    dev (with the current agents) and the Trainer trains ``epochs_per_iteration`` epochs on them.

    Subclasses say which models train (:meth:`models_to_train`), fill ``self.items`` (dev example
    id -> list of items) in :meth:`build_iteration`, and compute an item list's loss in
    :meth:`items_loss`. Each iteration's items go to ``<method>_iter<k>.jsonl`` in the run folder.

    Under DDP every rank builds the iteration (same weights, same seeds) and then takes rank 0's
    items, buffers (ratings, scores) and :attr:`iteration_attributes`, so ranks can never train on
    different data. Which agents learn depends on a step's questions, so DDP runs with
    ``find_unused_parameters`` (an idle agent's gradient stays None on every rank, as in one
    process) and a rank without items this step backpropagates a zero through ``ddp_anchor``. The
    iteration's items and attributes travel in checkpoints: a fit resumed between two epochs of
    one iteration trains on them again instead of building the iteration a second time.

    Args (shared by every trained text method; the defaults are MoCo's SFT settings):
    learning_rate, weight_decay: AdamW's (MoCo's SFT: 1e-5, 0).
    lr_schedule, warmup_steps: see ``DevTrainedModule``; the cosine restarts every iteration, as
        each of MoCo's iterations is a training run of its own.
    num_iterations, epochs_per_iteration: build-then-train iterations, and epochs in each.
    multi_model: ``shared_base`` (one loaded model, one LoRA adapter per agent), ``one_by_one``
        (a copy per agent) or ``auto`` (shared when every agent copies one model and LoRA is on).
    lora, lora_r, lora_alpha, lora_dropout, lora_target_modules: LoRA adapters (``lora: false``
        fine-tunes every weight); MoCo's r 64, alpha 16, dropout 0.1 on the attention projections.
    max_length: prompt + completion tokens per training sequence (MoCo's SFT: 4096).
    export_dir: save each trained agent to ``export_dir/<agent>`` when ``fit`` ends (and on
        ``predict`` from a checkpoint): a PEFT adapter folder that loads as ``base+folder``
        wherever a model is named, or the whole model when fine-tuned in full.
    """

    # plain attributes an iteration builds (besides buffers): shared by the ranks, checkpointed
    iteration_attributes: tuple[str, ...] = ("items", "built_iteration")

    def __init__(
        self,
        collaborators: list[str | dict],
        learning_rate: float = 1e-5,
        weight_decay: float = 0.0,
        num_iterations: int = 1,
        epochs_per_iteration: int = 1,
        multi_model: Layout = "auto",
        lora: bool = True,
        lora_r: int = 64,
        lora_alpha: int = 16,
        lora_dropout: float = 0.1,
        lora_target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"],  # noqa: B006
        max_length: int = 4096,
        export_dir: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(collaborators, learning_rate=learning_rate, weight_decay=weight_decay, **kwargs)
        self.export_dir = export_dir
        self.keep_out_of_checkpoint("export_dir")
        for name, value in (
            ("num_iterations", num_iterations),
            ("epochs_per_iteration", epochs_per_iteration),
        ):
            if value < 1:
                raise UserError(f"{self.method_name}.{name} must be >= 1, got {value}")
        self.num_iterations = num_iterations
        self.epochs_per_iteration = epochs_per_iteration
        self.multi_model = multi_model
        self.max_length = max_length
        self.agents: LoraAgents | None = None
        self.items: dict[str, list[dict]] = {}
        self.built_iteration: int | None = None  # the iteration ``items`` belong to
        self.register_buffer("iteration", torch.tensor(0))
        self.strict_loading = not lora  # a LoRA checkpoint holds the adapters only
        # never optimised: a rank with no training items in a step still joins the gradient
        # all-reduce through it (see ``training_step``)
        self.ddp_anchor.requires_grad_(True)

    # -- what a subclass writes ---------------------------------------------------------------

    def models_to_train(self) -> dict[str, Collaborator]:
        """The loaded models to train, by agent key; default: every collaborator (``agent{i}``)."""
        return {f"agent{i}": c for i, c in enumerate(self.collaborators)}

    def install_agents(self) -> None:
        """Default: the trained agents replace the collaborators they copy (``agent{i}`` -> i)."""
        for key, agent in self.agents.agents.items():
            if key.startswith("agent"):
                self.collaborators[int(key.removeprefix("agent"))] = agent

    def build_iteration(self, iteration: int) -> dict[str, list[dict]]:
        raise NotImplementedError

    def items_loss(self, items: list[dict]) -> torch.Tensor:
        raise NotImplementedError

    def finish_training(self) -> None:
        """Hook at the end of the last epoch (before its checkpoint): pick the tested agent etc."""

    # -- building the agents ------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            self._let_agents_sit_out_steps()

    def _let_agents_sit_out_steps(self) -> None:
        """Turn on DDP's ``find_unused_parameters`` before the module is wrapped.

        Touching idle adapters with a zero loss instead would give AdamW zero gradients and move
        those adapters by momentum and weight decay, steps one process never takes.
        """
        strategy = self.trainer.strategy
        if isinstance(strategy, DeepSpeedStrategy) or not isinstance(strategy, DDPStrategy):
            return  # DeepSpeed (a DDPStrategy too) partitions gradients its own way
        ddp_kwargs = strategy._ddp_kwargs  # what DDPStrategy passes to DistributedDataParallel
        if not ddp_kwargs.get("find_unused_parameters"):
            log.info("%s: DDP with find_unused_parameters (agents idle in a step)", self.method_name)
        ddp_kwargs["find_unused_parameters"] = True

    def configure_model(self) -> None:
        if self.agents is None:
            hp = self.hparams
            self.agents = LoraAgents(
                self.models_to_train(),
                layout=self.multi_model,
                lora=hp.lora,
                lora_r=hp.lora_r,
                lora_alpha=hp.lora_alpha,
                lora_dropout=hp.lora_dropout,
                lora_target_modules=hp.lora_target_modules,
            ).to(self.device)
            self.install_agents()
            self.agents.refresh_fingerprints()

    def ask(
        self,
        model: int | Collaborator,
        prompts: Sequence[Prompt],
        ids: Sequence[str],
        *,
        step: str = "",
        decoding: DecodingConfig | None = None,
    ) -> list[Generation]:
        collaborator = self.collaborators[model] if isinstance(model, int) else model
        if self.agents is None or not self.agents.owns(collaborator):
            return super().ask(model, prompts, ids, step=step, decoding=decoding)
        self.agents.activate(collaborator)
        with self.agents.generating():
            return super().ask(model, prompts, ids, step=step, decoding=decoding)

    def ask_samples(self, model: int, prompts, ids, num_samples: int, *, step: str = ""):
        if self.agents is not None and self.agents.owns(self.collaborators[model]):
            self.agents.activate(self.collaborators[model])
            with self.agents.generating():
                return super().ask_samples(model, prompts, ids, num_samples, step=step)
        return super().ask_samples(model, prompts, ids, num_samples, step=step)

    # -- losses on one agent ------------------------------------------------------------------

    def _tokens(self, agent: Collaborator, prompts: Sequence[Prompt], completions: Sequence[str]):
        rendered = [agent.render(p, self.decoding.enable_thinking) for p in prompts]
        batch = completion_batch(agent.tokenizer, rendered, completions, self.max_length)
        return {key: value.to(self.device) for key, value in batch.items()}

    def agent_sft_loss(
        self,
        key: str,
        prompts: Sequence[Prompt],
        completions: Sequence[str],
        weights: Sequence[float] | None = None,
    ) -> torch.Tensor:
        agent = self.agents.agents[key]
        model = self.agents.activate(agent)
        tokens = self._tokens(agent, prompts, completions)
        logits = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).logits
        weight = torch.tensor(list(weights) if weights is not None else [1.0] * len(prompts))
        return weighted_sft_loss(logits, tokens["labels"], weight.to(self.device))

    def agent_dpo_loss(
        self, key: str, prompts: Sequence[Prompt], chosen: Sequence[str], rejected: Sequence[str], beta: float
    ) -> torch.Tensor:
        agent = self.agents.agents[key]
        model = self.agents.activate(agent)
        tokens = self._tokens(agent, list(prompts) * 2, list(chosen) + list(rejected))
        policy = completion_logps(model, tokens)
        reference = reference_logps(model, tokens)  # adapter disabled (LoRA); itself when fully tuned
        n = len(prompts)
        return dpo_loss(policy[:n], policy[n:], reference[:n], reference[n:], beta)

    @torch.no_grad()
    def agent_completion_logps(
        self, key: str, prompts: Sequence[Prompt], completions: Sequence[str]
    ) -> torch.Tensor:
        """Each completion's summed log-probability under agent ``key`` (for checks and reports)."""
        agent = self.agents.agents[key]
        model = self.agents.activate(agent)
        with self.agents.generating():
            return completion_logps(model, self._tokens(agent, prompts, completions))

    # -- fit -------------------------------------------------------------------------------------

    def prepare_training(self, table: DevTable) -> list[int]:
        self.trainer.fit_loop.max_epochs = self.num_iterations * self.epochs_per_iteration
        return table.best_models(self.dev_ranking())

    def dev_examples(self) -> list[Example]:
        return self.trainer.datamodule.examples("dev")

    def on_train_epoch_start(self) -> None:
        iteration = self.current_epoch // self.epochs_per_iteration
        if self.built_iteration != iteration:  # a resumed iteration keeps its checkpointed items
            self.agents.refresh_fingerprints()
            self.items = self.build_iteration(iteration)
            self.built_iteration = iteration
            self.iteration.fill_(iteration)
            self.take_rank_zero_state()
            count = sum(len(v) for v in self.items.values())
            log.info("%s iteration %d: %d training items", self.method_name, iteration, count)
            self.write_items(f"{self.method_name}_iter{iteration}.jsonl")

    def iteration_state(self) -> dict[str, Any]:
        """The method's own buffers and :attr:`iteration_attributes` (not the agents' weights)."""
        return {
            "buffers": {name: buffer.cpu() for name, buffer in self.named_buffers(recurse=False)},
            "attributes": self._iteration_attributes(),
        }

    def _iteration_attributes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.iteration_attributes}

    def load_iteration_state(self, state: dict[str, Any]) -> None:
        own = dict(self.named_buffers(recurse=False))
        for name, value in state["buffers"].items():
            own[name].copy_(value)
        for name, value in state["attributes"].items():
            setattr(self, name, value)

    def take_rank_zero_state(self) -> None:
        """Every rank takes rank 0's iteration state.

        The ranks computed it alike, so this only removes float differences between devices;
        building on every rank (rather than on rank 0 while the others wait in the broadcast) keeps
        a long iteration clear of the process group's timeout.
        """
        if self.trainer.world_size > 1:
            self.load_iteration_state(self.trainer.strategy.broadcast(self.iteration_state(), src=0))

    def write_items(self, filename: str) -> None:
        folder = self.runtime.run_folder
        if folder is None or self.global_rank != 0:
            return
        lines = [
            json.dumps({"id": i, **item}, ensure_ascii=False, default=str)
            for i, v in self.items.items()
            for item in v
        ]
        (folder.path / filename).write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def training_step(self, batch: list[Example], batch_idx: int) -> torch.Tensor | None:
        items = [item for example in batch for item in self.items.get(example["id"], [])]
        if not items:  # nothing to learn from these questions this iteration
            if self.trainer.world_size == 1:
                return None
            # a DDP rank may not skip the step: it joins the gradient all-reduce with a zero
            return self.ddp_anchor.sum() * 0.0
        loss = self.items_loss(items)
        self.log("train/loss", loss, batch_size=len(items), prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # the epoch's checkpoint is written before `on_train_epoch_end` hooks: finish here instead
        if not self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        if self.current_epoch + 1 >= self.num_iterations * self.epochs_per_iteration:
            self.agents.refresh_fingerprints()
            self.finish_training()
            self.trained.fill_(True)
            self.take_rank_zero_state()
            self.export_agents()

    def configure_optimizers(self) -> dict | None:
        parameters = self.agents.trainable_parameters()
        if not parameters:  # only scripted collaborators: the method's state still evolves (ratings)
            return None
        return self.adamw_with_schedule(parameters)

    def lr_horizon(self) -> int:
        return max(1, super().lr_horizon() // self.num_iterations)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        keep = self.agents.trainable_keys("agents.")
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("agents.") or k in keep
        }
        checkpoint["iteration_attributes"] = self._iteration_attributes()  # buffers are saved already

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        # without them (an older checkpoint) a resumed fit builds its iteration again
        for name, value in checkpoint.get("iteration_attributes", {}).items():
            setattr(self, name, value)

    # -- evaluation with the trained agents ---------------------------------------------------

    def _refresh_before_eval(self) -> None:
        if self.agents is not None:
            self.agents.refresh_fingerprints()

    def on_test_start(self) -> None:
        super().on_test_start()
        self._refresh_before_eval()

    def on_validation_start(self) -> None:
        super().on_validation_start()
        self._refresh_before_eval()

    def on_predict_start(self) -> None:
        super().on_predict_start()
        self._refresh_before_eval()
        self.export_agents()

    def export_agents(self) -> list[Path]:
        """With ``export_dir``, save every trained agent to ``export_dir/<agent>`` (rank 0 only)."""
        if not self.export_dir or self.agents is None or not bool(self.trained) or self.global_rank != 0:
            return []
        folders = [self.agents.export(key, Path(self.export_dir) / key) for key in self.agents.agents]
        self.note(f"{self.method_name}: trained agents saved to {', '.join(map(str, folders))}")
        return folders

    def score_on_dev(self, models: Sequence[int | Collaborator], step: str) -> list[float]:
        """Mean dev score of each model answering alone (one batched call per model)."""
        examples = self.dev_examples()
        ids = [e["id"] for e in examples]
        means = []
        for model in models:
            outputs = self.ask(model, [e["prompt"] for e in examples], ids, step=step)
            scores = [s for s in self.score([o.text for o in outputs], examples) if s is not None]
            means.append(sum(scores) / len(scores) if scores else math.nan)
        self._example_cost.clear()
        return means
