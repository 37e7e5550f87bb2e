"""arena.LoraAgents: several trainable agents on one loaded model, each learning in the same step."""

from __future__ import annotations

import torch

from moco_lit.collaborators import load_collaborator
from moco_lit.methods.text.arena import LoraAgents


def _loss(agents: LoraAgents, key: str) -> torch.Tensor:
    agent = agents.agents[key]
    model = agents.activate(agent)
    ids = agent.tokenizer("What is 3 times 4?", return_tensors="pt")["input_ids"]
    return model(input_ids=ids, labels=ids).loss


def test_agents_on_one_shared_base_all_get_gradients_in_one_step(tiny_models):
    base = load_collaborator(tiny_models[0])
    agents = LoraAgents({"ranker": base, "fuser": base}, layout="shared_base", lora_r=2)
    # peft's set_adapter freezes every adapter but the active one: both must still learn
    (_loss(agents, "ranker") + _loss(agents, "fuser")).backward()
    for key in ("ranker", "fuser"):
        # lora_B: B starts at zero, so A's first gradient is zero by construction
        own = [p for n, p in agents.named_parameters() if f".{key}." in n and "lora_B" in n]
        assert own and all(p.grad is not None and p.grad.abs().sum() > 0 for p in own), key


def test_full_fine_tuning_keys_include_tied_weights(tiny_models):
    agents = LoraAgents({"agent0": load_collaborator(tiny_models[0])}, lora=False)
    keys = agents.trainable_keys("agents.")
    # a checkpoint keeps these keys: the tied output layer must be among them to load again
    state = {"agents." + name for name in agents.state_dict()}
    assert keys == state
