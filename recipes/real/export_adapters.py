"""Save the LoRA adapters of a trained text method's fit checkpoint as PEFT adapter folders.

    python recipes/real/export_adapters.py CHECKPOINT OUT_DIR

The trained text methods (distillation, multiagent_finetuning, sparta, stackelberg, agglm, the
trained llm_blender) keep their LoRA agents inside the Lightning checkpoint only. This writes one
folder per agent, ``OUT_DIR/<agent>/`` (``adapter_config.json`` + ``adapter_model.safetensors``),
which any recipe can then name as a collaborator ``base+OUT_DIR/<agent>``: the LoRA-tuned variants
that logit-level, Co-LLM and weight-level methods need.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

# agents.bases.<base>.base_model.model.<module path>.lora_A.<adapter>.weight
LORA_KEY = re.compile(
    r"^agents\.bases\.(?P<base>[^.]+)\.(?P<module>.+)\.(?P<part>lora_[AB])\.(?P<adapter>[^.]+)\.weight$"
)


def agent_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Each agent's LoRA tensors under PEFT's saved names (the adapter name taken out)."""
    agents: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        match = LORA_KEY.match(key)
        if match:
            # a shared base holds one named adapter per agent; a copy per agent holds "default"
            agent = match["adapter"] if match["base"] == "shared" else match["base"]
            agents.setdefault(agent, {})[f"{match['module']}.{match['part']}.weight"] = tensor.contiguous()
    return agents


def lora_config(hparams: dict, tensors: dict[str, torch.Tensor], base: str | None):
    """The LoRA settings the agents were trained with (the run's hyperparameters, else the defaults)."""
    from peft import LoraConfig

    rank = next(t.shape[0] for name, t in tensors.items() if name.endswith("lora_A.weight"))
    targets = sorted({name.split(".lora_")[0].rsplit(".", 1)[-1] for name in tensors})
    return LoraConfig(
        r=rank,
        lora_alpha=hparams.get("lora_alpha", 32),
        lora_dropout=hparams.get("lora_dropout", 0.05),
        target_modules=targets,
        task_type="CAUSAL_LM",
        base_model_name_or_path=base,
    )


def base_of(agent: str, hparams: dict) -> str | None:
    """The collaborator an ``agent<i>`` copies, as the recipe named it (a path or short name)."""
    collaborators = hparams.get("collaborators") or []
    if agent.startswith("agent") and agent.removeprefix("agent").isdigit():
        entry = collaborators[int(agent.removeprefix("agent"))]
        return entry["path"] if isinstance(entry, dict) else str(entry).split("+", 1)[0]
    return None


def export(checkpoint: Path, out_dir: Path) -> list[Path]:
    from safetensors.torch import save_file

    # a checkpoint this project wrote: its hyperparameters are plain Python values
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    agents = agent_tensors(saved["state_dict"])
    if not agents:
        raise SystemExit(
            f"error: {checkpoint} holds no LoRA agents (is it a trained text method's fit checkpoint?)"
        )
    hparams = dict(saved.get("hyper_parameters") or {})
    folders = []
    for agent, tensors in sorted(agents.items()):
        folder = out_dir / agent
        folder.mkdir(parents=True, exist_ok=True)
        lora_config(hparams, tensors, base_of(agent, hparams)).save_pretrained(folder)
        save_file(tensors, folder / "adapter_model.safetensors", metadata={"format": "pt"})
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a fit run's checkpoints/<name>.ckpt")
    parser.add_argument("out_dir", type=Path, help="one adapter folder per agent is written here")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        print(f"error: checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 2
    for folder in export(args.checkpoint, args.out_dir):
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
