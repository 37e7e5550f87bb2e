"""Defaults are MoCo's: decoding, token budgets, chat template options, training settings.

``MOCO_DEFAULTS`` is the table (with where MoCo sets each value); when MoCo is installed, the
values are also read from its source, so the table cannot drift from the reference.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import pytest
import torch

from moco_lit.collaborators import Collaborator, CollaboratorSpec
from moco_lit.generation import GenerationEngine
from moco_lit.methods.api.collm import CoLLM
from moco_lit.methods.api.graph_routing import GraphRouting
from moco_lit.methods.api.mentor_collab import MentorCollab
from moco_lit.methods.api.trained_router import TrainedRouter
from moco_lit.methods.core.agent_trained import AgentTrainedModule, LoraAgents
from moco_lit.methods.core.dev_trained import DevTrainedModule
from moco_lit.methods.core.module import CollaborationModule
from moco_lit.methods.single_model import SingleModel
from moco_lit.methods.text.agglm import AggLM
from moco_lit.methods.text.llm_blender import LlmBlender
from moco_lit.methods.weight.lorahub import LoraHub
from moco_lit.training import lr_factor

# (class, argument) -> (MoCo's value, where MoCo sets it, a pattern that finds it there)
MOCO_DEFAULTS = {
    (CollaborationModule, "max_new_tokens"): (512, "main.py:40", r'"max_response_length", (\d+)'),
    (CollaborationModule, "temperature"): (0.7, "main.py:41", r'"temperature", ([\d.]+)'),
    (CollaborationModule, "top_p"): (0.9, "main.py:42", r'"top_p", ([\d.]+)'),
    (CollaborationModule, "enable_thinking"): (
        False,
        "method/distributed_generation.py:214",
        r'tmpl_kwargs\["enable_thinking"\] = (False)',
    ),
    (SingleModel, "max_new_tokens"): (100, "method/single_model.py:89", r'"max_response_length", (\d+)'),
    # every SFT: LoRA r 64 / alpha 16 / dropout 0.1, lr 1e-5 on a cosine from step 0
    (AgentTrainedModule, "lora_r"): (64, "utils/distributed_sft.py:43", r"r=(\d+),"),
    (AgentTrainedModule, "lora_alpha"): (16, "utils/distributed_sft.py:44", r"lora_alpha=(\d+)"),
    (AgentTrainedModule, "lora_dropout"): (0.1, "utils/distributed_sft.py:45", r"lora_dropout=([\d.]+)"),
    (AgentTrainedModule, "learning_rate"): (1e-5, "utils/distributed_sft.py:17", r"learning_rate=([\de.-]+)"),
    (AgentTrainedModule, "max_length"): (4096, "utils/distributed_sft.py:73", r"max_length=(\d+)"),
    (DevTrainedModule, "lr_schedule"): (
        "cosine",
        "utils/distributed_sft.py:59",
        r'lr_scheduler_type="(\w+)"',
    ),
    (DevTrainedModule, "warmup_steps"): (0, "utils/distributed_sft.py:63", r"warmup_steps = (\d+)"),
    (DevTrainedModule, "weight_decay"): (0.0, "transformers TrainingArguments", None),
    (LoraAgents, "lora_r"): (64, "utils/distributed_sft.py:43", r"r=(\d+),"),
    (LoraAgents, "lora_alpha"): (16, "utils/distributed_sft.py:44", r"lora_alpha=(\d+)"),
    (LoraAgents, "lora_dropout"): (0.1, "utils/distributed_sft.py:45", r"lora_dropout=([\d.]+)"),
    (LlmBlender, "epochs_per_iteration"): (3, "method/text_llm_blender.py:173", r'"ranker_sft_epoch", (\d+)'),
    (AggLM, "learning_rate"): (1e-4, "method/text_agglm.py:57", r'"learning_rate", ([\de.-]+)'),
    (AggLM, "weight_decay"): (1e-5, "method/text_agglm.py:58", r'"weight_decay", ([\de.-]+)'),
    (AggLM, "grpo_temperature"): (1.0, "method/text_agglm.py:62", r'"temperature", ([\d.]+)'),
    (AggLM, "group_size"): (4, "method/text_agglm.py:63", r'"train_batch_size", (\d+)'),
    (GraphRouting, "learning_rate"): (1e-4, "method/api_graph_routing.py:39", r'"learning_rate", ([\de.-]+)'),
    (GraphRouting, "weight_decay"): (1e-4, "method/api_graph_routing.py:40", r'"weight_decay", ([\de.-]+)'),
    (GraphRouting, "hidden_features"): (8, "method/api_graph_routing.py:37", r'"hidden_features", (\d+)'),
    (GraphRouting, "in_edges"): (3, "method/api_graph_routing.py:38", r'"in_edges", (\d+)'),
    (GraphRouting, "train_epochs"): (500, "method/api_graph_routing.py:41", r'"train_epochs", (\d+)'),
    (GraphRouting, "masks_per_step"): (32, "method/api_graph_routing.py:42", r'"batch_size", (\d+)'),
    (GraphRouting, "train_mask_rate"): (
        0.5,
        "method/api_graph_routing.py:43",
        r'"train_mask_rate", ([\d.]+)',
    ),
    (GraphRouting, "split_ratio"): ((0.8, 0.1, 0.1), "method/api_graph_routing.py:124", None),
    (GraphRouting, "lr_schedule"): (
        "constant",
        "method/api_graph_routing.py:444 (AdamW, no scheduler)",
        None,
    ),
    # methods whose MoCo loop decodes greedily whatever the run's temperature
    (LoraHub, "temperature"): (0.0, "method/weight_lorahub.py:89 (do_sample=False)", None),
    (CoLLM, "temperature"): (0.0, "method/api_collm.py:658 (argmax)", None),
    (MentorCollab, "temperature"): (0.0, "utils/mentor_collab.py (argmax)", None),
}


def _default(cls: type, name: str):
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and name in inspect.signature(init).parameters:
            return inspect.signature(init).parameters[name].default
    raise AssertionError(f"{cls.__name__} has no argument {name}")


@pytest.mark.parametrize("key", list(MOCO_DEFAULTS), ids=[f"{c.__name__}.{n}" for c, n in MOCO_DEFAULTS])
def test_each_default_is_mocos(key):
    cls, name = key
    assert _default(cls, name) == MOCO_DEFAULTS[key][0]


MOCO_SOURCE = importlib.util.find_spec("model_collaboration")


@pytest.mark.skipif(MOCO_SOURCE is None, reason="MoCo (modelco) is not installed")
@pytest.mark.parametrize(
    "key",
    [k for k, v in MOCO_DEFAULTS.items() if v[2]],
    ids=[f"{c.__name__}.{n}" for (c, n), v in MOCO_DEFAULTS.items() if v[2]],
)
def test_the_table_matches_mocos_source(key):
    value, where, pattern = MOCO_DEFAULTS[key]
    file, line = where.split(":")
    source = Path(list(MOCO_SOURCE.submodule_search_locations)[0], file).read_text().splitlines()
    nearby = "\n".join(source[max(0, int(line) - 3) : int(line) + 2])  # releases shift lines a little
    found = re.search(pattern, nearby)
    assert found, f"{pattern!r} not found near {where}"
    assert type(value)(found.group(1) if not isinstance(value, bool) else found.group(1) == "True") == value


def test_trained_router_defaults_follow_the_router_kind():
    causal = TrainedRouter(["callable:tests.scripted.oracle", "callable:tests.scripted.wrong"])
    encoder = TrainedRouter(
        ["callable:tests.scripted.oracle", "callable:tests.scripted.wrong"], router="encoder"
    )
    # MoCo's router SFT (method/api_trained_router.py:158-159); the encoder head is this project's own
    assert (causal.learning_rate, causal.lr_schedule) == (1e-5, "cosine")
    assert (encoder.learning_rate, encoder.lr_schedule) == (1e-3, "constant")


def test_cosine_schedule_is_the_hugging_face_one_moco_trains_with():
    from transformers import get_cosine_schedule_with_warmup

    for warmup, horizon in ((0, 10), (3, 17)):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        reference = get_cosine_schedule_with_warmup(optimizer, warmup, horizon)
        for step in range(horizon + 1):
            assert lr_factor(step, horizon, "cosine", warmup) == pytest.approx(reference.lr_lambdas[0](step))
    assert lr_factor(7, 10, "constant") == 1.0


def test_the_cosine_restarts_every_iteration_of_a_trained_text_method(monkeypatch):
    """Each of MoCo's iterations is a training run of its own: the schedule starts again."""
    monkeypatch.setattr(DevTrainedModule, "lr_horizon", lambda self: 8)  # the whole fit: 8 steps
    module = AgentTrainedModule(["callable:tests.scripted.oracle"], num_iterations=2, learning_rate=1.0)
    config = module.adamw_with_schedule([torch.nn.Parameter(torch.zeros(1))])
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(8):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [lr_factor(step, 4, "cosine") for step in range(4)] * 2
    assert rates == pytest.approx(expected)
    assert rates[0] == 1.0 and rates[3] < 0.2 and rates[4] == 1.0


def test_constant_schedule_keeps_the_learning_rate():
    module = AgentTrainedModule(["callable:tests.scripted.oracle"], lr_schedule="constant", learning_rate=0.5)
    config = module.adamw_with_schedule([torch.nn.Parameter(torch.zeros(1))])
    for _ in range(5):
        config["optimizer"].step()
        config["lr_scheduler"]["scheduler"].step()
    assert config["optimizer"].param_groups[0]["lr"] == 0.5


THINKING_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
)


def _thinking_collaborator() -> Collaborator:
    """A scripted collaborator behind a Qwen3-like template that answers with what it read."""
    from moco_lit.quickstart import build_tokenizer

    tokenizer = build_tokenizer(["hello"], vocab_size=280)
    tokenizer.chat_template = THINKING_TEMPLATE
    return Collaborator(
        name="echo", spec=CollaboratorSpec("callable:echo"), tokenizer=tokenizer, respond=lambda text: text
    )


def test_thinking_is_off_by_default_and_none_keeps_the_templates_default():
    collaborator = _thinking_collaborator()
    module = CollaborationModule(["callable:tests.scripted.oracle"])
    assert module.decoding.enable_thinking is False
    assert collaborator.render("Hi", module.decoding.enable_thinking) == "<user>Hi<assistant><think></think>"
    assert collaborator.render("Hi", None) == "<user>Hi<assistant>"
    assert collaborator.render("Hi", True) == "<user>Hi<assistant>"


def test_the_thinking_switch_reaches_the_model_and_the_cache_key(tmp_path):
    from dataclasses import replace

    from moco_lit.cache import GenerationCache

    collaborator = _thinking_collaborator()
    engine = GenerationEngine(cache=GenerationCache(tmp_path / "cache.sqlite"), progress=False)
    off = CollaborationModule(["callable:tests.scripted.oracle"], temperature=0.0).decoding
    on = replace(off, enable_thinking=True)
    first = engine.generate(collaborator, ["Hi"], off)[0]
    second = engine.generate(collaborator, ["Hi"], on)[0]
    assert "<think></think>" in first.raw_text and "<think>" not in second.raw_text
    assert not second.cached  # another rendering, another cache entry
    assert engine.generate(collaborator, ["Hi"], off)[0].cached


def test_default_sampling_is_reproducible_per_example(tmp_path):
    """MoCo's temperature 0.7 by default: each example's draw comes from its own seed, so a rerun
    (resume, a fresh cache) gets the same outputs and another example gets another draw."""
    seen: list[int] = []

    def respond(rendered: str, seed: int) -> str:
        seen.append(seed)
        return f"{rendered[-12:]}#{seed % 1000}"

    collaborator = Collaborator(name="drawer", spec=CollaboratorSpec("callable:drawer"), respond=respond)

    def run() -> list[str]:
        module = CollaborationModule(["callable:tests.scripted.oracle"])
        module.collaborators = [collaborator]
        module.engine = GenerationEngine(progress=False)  # no cache: every output is drawn again
        return [o.text for o in module.ask(0, ["What is 2 times 3?"] * 2, ["ex1", "ex2"])]

    assert CollaborationModule(["callable:tests.scripted.oracle"]).decoding.greedy is False
    first, again = run(), run()
    assert first == again
    assert first[0] != first[1] and len(set(seen)) == 2 and 0 not in seen
