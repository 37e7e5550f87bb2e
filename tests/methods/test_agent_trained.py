"""agent_trained.LoraAgents: agents on one loaded model all learn in a step; agents export as PEFT folders."""

from __future__ import annotations

import pytest
import torch

from moco_lit.collaborators import load_collaborator
from moco_lit.methods.core.agent_trained import LoraAgents
from tests.conftest import collaborators_arg


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


@pytest.mark.parametrize("layout", ["shared_base", "one_by_one"])
def test_an_exported_agent_loads_as_base_plus_folder(layout, tiny_models, tmp_path):
    torch.manual_seed(0)
    base = load_collaborator(tiny_models[0])
    agents = LoraAgents({"agent0": base, "agent1": base}, layout=layout, lora_r=4, lora_alpha=8).eval()
    with torch.no_grad():  # as training would: each agent's B matrices become non-zero, differently
        for name, parameter in agents.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        plain = base.model(input_ids=ids).logits
        for key in ("agent0", "agent1"):
            folder = agents.export(key, tmp_path / layout / key)
            assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in folder.iterdir()}
            tuned = load_collaborator(f"{tiny_models[0]}+{folder}")  # the recipe syntax: base+adapter
            expected = agents.activate(agents.agents[key])(input_ids=ids).logits
            assert torch.allclose(tuned.model(input_ids=ids).logits, expected, atol=1e-5)
            assert not torch.allclose(expected, plain, atol=1e-3)


def test_fit_with_export_dir_saves_every_trained_agent(run_cli, tiny_models, tmp_path):
    common = [
        "--model",
        "multiagent_finetuning",
        "--model.collaborators",
        collaborators_arg([tiny_models[0]] * 2),
    ]
    common += ["--model.max_new_tokens", "4", "--model.lora_r", "4", "--data.benchmark", "quickstart"]
    export = tmp_path / "adapters"
    _, fitted = run_cli("fit", *common, "--data.dev_limit", "4", "--model.export_dir", str(export))
    agents = fitted.model.agents.eval()  # LoRA dropout off, as when the adapter is used
    assert sorted(p.name for p in export.iterdir()) == sorted(agents.agents)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    key = sorted(agents.agents)[-1]
    with torch.no_grad():
        expected = agents.activate(agents.agents[key])(input_ids=ids).logits
        tuned = load_collaborator(f"{tiny_models[0]}+{export / key}")
        assert torch.allclose(tuned.model(input_ids=ids).logits, expected, atol=1e-5)
    # an action of that run, not a setting: the checkpoint does not carry it into later runs
    checkpoint = torch.load(fitted.trainer.checkpoint_callback.best_model_path, weights_only=False)
    assert "export_dir" not in checkpoint["hyper_parameters"]


def test_an_agents_kept_weights_load_back_into_it_alone(tiny_models):
    # stackelberg keeps each iteration's weights to test the dev-best one
    base = load_collaborator(tiny_models[0])
    agents = LoraAgents({"agent0": base, "agent1": base}, layout="shared_base", lora_r=2).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])

    def logits(key: str) -> torch.Tensor:
        with torch.no_grad():
            return agents.activate(agents.agents[key])(input_ids=ids).logits

    kept = agents.agent_weights("agent0")
    assert kept and all(".agent0." in name for name in kept)
    before, other = logits("agent0"), logits("agent1")
    with torch.no_grad():  # training moves both agents
        for name, parameter in agents.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    assert not torch.allclose(logits("agent0"), before, atol=1e-4)
    moved_other = logits("agent1")
    agents.load_agent_weights("agent0", kept)
    assert torch.allclose(logits("agent0"), before) and not torch.allclose(moved_other, other, atol=1e-4)
    assert torch.allclose(logits("agent1"), moved_other)  # the other agent keeps its own
