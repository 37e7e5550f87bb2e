"""MoCo compatibility: MoCo JSON configs become moco_lit recipes; MoCo output logs become runs.

A MoCo config (``python -m model_collaboration.main -c config.json``) holds ``method`` (the
module name, ``text_majority_vote``), ``task``, ``task_type``, ``gpu_ids``, ``model_names`` and a
free-form ``hyperparameters`` dict. :func:`convert_config` maps the method to its moco_lit short
name and every hyperparameter MoCo's method reads to a setting with the same meaning: a method
``__init__`` argument of the same name (found by inspecting the signature, so options added later
are picked up), one named in :data:`RENAMED`, or ``data.ratio``. Where the config leaves a setting
out, the recipe gets MoCo's default (:data:`MOCO_DEFAULTS`) wherever moco_lit's differs. A
setting moco_lit cannot express (:data:`UNSUPPORTED`, and the value rules in :data:`VALUE_RULES`)
stops the conversion with one line naming each; ``allow_lossy`` converts anyway and lists them in
the recipe's header. Settings that only say where MoCo keeps files or how it places models on GPUs
(:data:`MOCO_ONLY`) are dropped, as moco_lit does the equivalent itself.

A MoCo log (``logs/<task>_<models>_<score>_<method>.json``) holds ``task``, ``task_type``,
``model_names``, ``hyperparameters``, ``avg_test_score`` and ``logs``: one ``{input, output,
score}`` per test example, in the test split's order. :func:`runs_from_moco_logs` reads them as
report runs; :func:`moco_log_predictions` turns one into a ``{id, output}`` JSONL for ``score``.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import yaml

from moco_lit import methods
from moco_lit.argv import CommandParser
from moco_lit.data import load_benchmark
from moco_lit.errors import UserError
from moco_lit.methods.text import structure
from moco_lit.results import Run

LEVEL_PREFIXES = ("api_", "text_", "logit_", "weight_")

# MoCo method modules whose moco_lit name is not the module name without its level prefix
METHOD_ALIASES = {"sparta_stackelberg": "stackelberg"}

# MoCo's main.py hands these to its generation module for every method (and many methods read
# them again); the values it uses when a config leaves them out
GENERATION = {
    "max_response_length": ("max_new_tokens",),
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "batch_size": ("generation_batch_size",),
}
GENERATION_DEFAULTS = {"max_response_length": 512, "temperature": 0.7, "top_p": 0.9, "batch_size": 32}

# MoCo spells a particle swarm's settings two ways (its NumericSwarm's names in dare_ties and
# heterogeneous_swarms, its weight swarm's in model_swarms); moco_lit has one: the fields of the
# nested ``swarm:`` argument (moco_lit.search.SwarmConfig)
_SWARM_SHARED = ("inertia", "step_length", "step_length_factor", "minimum_step_length", "patience")
_NUMERIC_SWARM = {
    **{name: name for name in (*_SWARM_SHARED, "restart_patience", "repel_term", "weight_randomness")},
    "cognitive_coeff": "cognitive",
    "social_coeff": "social",
    "repel_coeff": "repel",
    "starting_velocity_mode": "starting_velocity",
}
_WEIGHT_SWARM = {
    **{name: name for name in (*_SWARM_SHARED, "restart_patience")},
    "cognitive_coefficient": "cognitive",
    "social_coefficient": "social",
    "repel_coefficient": "repel",
    "repel_term_flag": "repel_term",
    "weight_randomness_flag": "weight_randomness",
}


def _swarm(names: dict[str, str]) -> dict[str, tuple[str, ...]]:
    return {moco: (f"swarm.{field}",) for moco, field in names.items()}


# MoCo hyperparameters whose moco_lit setting has another name. A target is a method argument,
# ``swarm.<field>``, or ``data.<name>`` / ``trainer.<name>``; a key with several targets sets each.
RENAMED: dict[str, dict[str, tuple[str, ...]]] = {
    "dare_ties": _swarm(_NUMERIC_SWARM),
    "heterogeneous_swarms": _swarm(_NUMERIC_SWARM),
    "model_swarms": _swarm(_WEIGHT_SWARM),
    # MoCo's `temperature` is both the generation temperature (main.py) and GRPO's sampling one
    "agglm": {"temperature": ("temperature", "grpo_temperature"), "max_epochs": ("epochs_per_iteration",)},
    # MoCo's cascade reads it for the answers it scores (default 256); main.py for the others (512)
    "cascade": {"max_response_length": ("max_new_tokens", "scored_max_new_tokens")},
    "collm": {"training_dataset_name": ("training_data",), "max_sequence_length": ("max_seq_length",)},
    "graph_routing": {"embedding_model_name": ("embedding_model",)},
    "llm_blender": {
        "ranker_model_name": ("ranker",),
        "fuser_model_name": ("fuser",),
        "ranker_max_response_length": ("ranker_max_new_tokens",),
    },
    "multiagent_finetuning": {
        "sft_epochs": ("epochs_per_iteration",),
        "sft_learning_rate": ("learning_rate",),
    },
    "mentor_collab": {"task": ("mlp_task",)},
    "switch_generation": {
        "selector_model_name": ("selector_model",),
        "reward_model_name": ("rollout_reward_model",),
    },
    "trained_router": {
        "reward_model_name": ("tie_break_reward_model",),
        "num_train_epochs": ("trainer.max_epochs",),
    },
}

# What MoCo runs with where a config leaves a setting out, by moco_lit target, wherever moco_lit's
# default differs (including what MoCo fixes in code): written into the recipe unless the config
# sets that target. GENERATION_DEFAULTS (main.py's) come first; a method's own defaults win.
_GREEDY = {"temperature": 0.0, "top_p": 1.0}  # methods MoCo decodes greedily with its own loop
MOCO_DEFAULTS: dict[str, dict[str, Any]] = {
    # MoCo's discussion (hf_gen) writes up to 8192 tokens at temperature 1.0
    "bbmas": {"max_iterations": 10, "max_new_tokens": 8192, "temperature": 1.0, "top_p": 1.0},
    "cascade": {"scored_max_new_tokens": 256, "generation_batch_size": 8},
    # MoCo fine-tunes the generator for 2 epochs
    "collm": {
        "training_data": "nlile/hendrycks-MATH-benchmark",
        "max_seq_length": 2048,
        "trainer.max_epochs": 2,
        **_GREEDY,
    },
    "expo": {"alpha_candidates": [0.1, 0.2, 0.3, 0.4, 0.5]},
    "logit_contrastive": {"top_p": 1.0},
    "logit_fusion": {"top_p": 1.0},
    "lorahub": {"max_new_tokens": 256, "generation_batch_size": 4, **_GREEDY},
    # MoCo reads the ranker's verdict from the first A or B anywhere in its reply
    "llm_blender": {"verdict_parsing": "first_letter"},
    # MoCo's vote counts a reply with no readable answer as a vote for "no answer", and groups
    # answers by their text as extracted ("21" and "21.0" are two answers)
    "majority_vote": {"count_unparsed": True, "answer_grouping": "text"},
    # MoCo routes to the highest model number found anywhere in the router's reply
    "prompt_routing": {"route_parsing": "highest_substring"},
    "slm_mux": {"answer_grouping": "text"},
    # MoCo feeds mentor_collab the bare prompt, no chat template
    "mentor_collab": {**_GREEDY, "prompt": "raw"},
    "model_swarms": {"merge": "full"},
    "nudging": {"top_p": 1.0},
    "single_model": {"max_new_tokens": 100, "generation_batch_size": 8},
    "sparta": {"max_new_tokens": 256, "generation_batch_size": 1},
    "stackelberg": {"max_new_tokens": 256, "generation_batch_size": 1, "num_iterations": 1},
    # MoCo tunes the selector for 5 epochs
    "switch_generation": {"trainer.max_epochs": 5},
    "trained_router": {
        "tie_break_reward_model": "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2",
        "trainer.max_epochs": 5,
        "router_base_model": "Qwen/Qwen2.5-7B-Instruct",
    },
}

# Settings that only say where MoCo keeps its files, how it spreads models and jobs over GPUs,
# or how fast it runs: moco_lit does these itself (run folders, the Trainer's devices, its
# generation cache), so they are dropped without changing what is computed
MOCO_ONLY = {
    "resume": "moco_lit resumes its own run folder",
    # MoCo 1.1.2's agents decide to act whatever their idle time (should_take_action is always true)
    "agent_idle_threshold": "no effect in MoCo",
    "reuse_log": "moco_lit's generation cache reuses outputs",
    "max_parallel_generation_models": "GPU scheduling",
    "swarm_base_path": "MoCo's file location",
    "dare_ties_base_path": "MoCo's file location",
    "expo_base_path": "MoCo's file location",
    "agglm_log_path": "MoCo's file location",
    "base_dir": "MoCo's file location",
    "run_id": "names MoCo's log folder",
    "debug": "MoCo's console printing",
    "use_kv_cache": "speed only",
    "judge_batch_size": "batching only",
    "eval_batch_size": "batching only",
    "ranker_gpu_id": "GPU placement",
    "fuser_gpu_id": "GPU placement",
    "reward_model_gpu_id": "GPU placement",
    "online_judge_gpu_ids": "GPU placement",
    "gpus_per_grpo_job": "GPU placement",
    "max_parallel_grpo_jobs": "GPU scheduling",
    "parallel_grpo_training": "GPU scheduling",
    "parallel_dpo_training": "GPU scheduling",
}

# MoCo hyperparameters moco_lit's method has no setting for, and why. An option the method gains
# later under the same name is used instead (names are looked up in its signature first).
UNSUPPORTED: dict[str, dict[str, str]] = {
    "agglm": {
        "train_batch_size": "MoCo's is both GRPO's group size (group_size here) and a step's size "
        "(one group); a step here takes a data batch of questions"
    },
    "multiagent_finetuning": {
        "sft_batch_size": "a fine-tuning step takes one data batch of questions' items",
        "sft_grad_accum": "set trainer.accumulate_grad_batches yourself: steps differ in size",
    },
    "stackelberg": {
        **{
            key: "one decoding setting (temperature, top_p, max_new_tokens) serves every call but the judges'"
            for key in ("eval_max_response_length", "eval_temperature", "eval_top_p")
        },
        "dpo_learning_rate": "set learning_rate (its default is MoCo's 1e-6)",
        "dpo_epoch": "set epochs_per_iteration",
        "dpo_batch_size": "a DPO step takes one data batch of questions' pairs",
        "dpo_gradient_accumulation_steps": "set trainer.accumulate_grad_batches yourself",
    },
}

# A value rule decides from the value (and the rest of the config) what a setting becomes: a
# dict of recipe targets (empty: nothing to set, same result), or a string: why it cannot be
# expressed. A rule applies where the method has no argument of that name (one added later with
# MoCo's meaning is used instead), except for the names in OTHER_MEANING.
Rule = Callable[[Any, dict], "dict[str, Any] | str"]


def _equivalent_when(test: Callable[[Any, dict], bool], reason: str) -> Rule:
    return lambda value, hyper: {} if test(value, hyper) else reason


def _unused_unless(flag: str, reason: str) -> Rule:
    """MoCo reads the setting only when ``flag`` is set in the config."""
    return lambda value, hyper: reason if hyper.get(flag) else {}


def _unused_when(flag: str, reason: str) -> Rule:
    """MoCo reads the setting only when ``flag`` is not set in the config."""
    return lambda value, hyper: {} if hyper.get(flag) else reason


_SFT = "per-role fine-tuning settings: the trained ranker/fuser use the method's LoRA training arguments"

# MoCo's stackelberg leader_type values and aliases
_STACKELBERG_LEADERS = {
    "probabilistic": "probabilistic",
    "exp3": "probabilistic",
    "bandit": "probabilistic",
    "uniform": "uniform",
    "random": "uniform",
}
_STACKELBERG_TRAINING = {
    "dpo": "dpo",
    "preference": "dpo",
    "preference_optimization": "dpo",
    "direct_preference_optimization": "dpo",
    "grpo": "grpo",
    "online_grpo": "grpo",
}
_STACKELBERG_REWARD_SCALES = {
    "raw": "raw",
    "one_to_ten": "raw",
    "1_10": "raw",
    "minus_one_one": "minus_one_one",
    "-1_1": "minus_one_one",
}


def _stackelberg_training(hyper: dict) -> str | None:
    """MoCo's stackelberg training algorithm for a config (None: a name MoCo refuses)."""
    return _STACKELBERG_TRAINING.get(
        str(hyper.get("training_algorithm") or "dpo").strip().lower().replace("-", "_")
    )


def _grpo_epochs(value: Any, hyper: dict) -> dict[str, Any] | str:
    if _stackelberg_training(hyper) != "grpo":
        return {}  # MoCo's DPO path does not read it
    try:
        epochs = float(value)
    except (TypeError, ValueError):
        return f"grpo_epoch must be a number, got {value!r}"
    if epochs >= 1 and epochs.is_integer():
        return {"epochs_per_iteration": int(epochs)}
    return "GRPO trains whole epochs here (epochs_per_iteration)"


# MoCo's collm, lorahub and mentor_collab decode greedily with their own loops (the run's
# temperature and top_p unused); logit_fusion and nudging sample without a nucleus cut
_GREEDY_RULES: dict[str, Rule] = {
    "temperature": lambda v, h: {"temperature": 0.0},
    "top_p": lambda v, h: {"top_p": 1.0},
}

VALUE_RULES: dict[str, dict[str, Rule]] = {
    "*": {
        "load_in_8bit": _equivalent_when(
            lambda v, h: not v, "moco_lit loads weights unquantised; 8-bit weights change the outputs"
        ),
        "big_model_mode": _equivalent_when(
            lambda v, h: not v, "moco_lit holds each model on one device; it cannot split one over GPUs"
        ),
    },
    "agglm": {
        "lr_scheduler": lambda v, h: (
            {"lr_schedule": v} if v in ("cosine", "constant") else "lr_schedule here is cosine or constant"
        ),
    },
    "bbmas": {
        key: lambda v, h, key=key: (
            f"MoCo's run-wide {key} reaches only bbmas's dev-ranking calls; its "
            "discussion writes up to 8192 tokens at temperature 1.0 (one setting for both here)"
        )
        for key in ("max_response_length", "temperature", "top_p")
    },
    "collm": _GREEDY_RULES,
    "expo": {
        "sft_models": _equivalent_when(
            lambda v, h: v is None, "pairs are built from the collaborators' dev scores"
        ),
        "dpo_models": _equivalent_when(
            lambda v, h: v is None, "pairs are built from the collaborators' dev scores"
        ),
    },
    # MoCo's batch_size is also the router's masks per training step
    "graph_routing": {"batch_size": lambda v, h: {"generation_batch_size": v, "masks_per_step": v}},
    "llm_blender": {
        **{
            f"{role}_sft_{name}": _unused_unless(f"train_{role}_on_dev", _SFT)
            for role in ("ranker", "fuser")
            for name in ("batch_size", "gradient_accumulation_steps", "learning_rate", "epoch")
        },
        "fuser_max_response_length": _equivalent_when(
            lambda v, h: (
                v is None or v == h.get("max_response_length", GENERATION_DEFAULTS["max_response_length"])
            ),
            "the fuser writes with max_new_tokens like every other call",
        ),
    },
    "lorahub": _GREEDY_RULES,
    "logit_contrastive": {
        # MoCo's top_p reaches only the dev ranking calls; the contrastive decoding has no cut
        "top_p": lambda v, h: (
            {"top_p": 1.0}
            if float(v) >= 1.0
            else "MoCo applies top_p to the dev ranking calls but not to the contrastive decoding"
        ),
    },
    "logit_fusion": {
        "top_p": _GREEDY_RULES["top_p"],
        "mode": _equivalent_when(
            lambda v, h: v == "average", "MoCo implements only mode 'average' (weights: null)"
        ),
    },
    "mentor_collab": _GREEDY_RULES,
    "model_swarms": {
        "fast_merge_flag": lambda v, h: {"merge": "auto" if v else "full"},
        "base_model": _equivalent_when(
            lambda v, h: v is None, "the swarm has no separate base model setting"
        ),
    },
    "nudging": {
        "top_p": _GREEDY_RULES["top_p"],
        # MoCo decodes greedily without do_sample; moco_lit decodes greedily at temperature 0
        "do_sample": lambda v, h: {} if v else {"temperature": 0.0},
    },
    "sparta": {
        "current_iteration": _equivalent_when(
            lambda v, h: not v, "MoCo resumes from its own iteration folders"
        ),
    },
    "stackelberg": {
        "current_iteration": _equivalent_when(
            lambda v, h: not v, "MoCo resumes from its own iteration folders"
        ),
        # MoCo's aliases of its two leaders
        "leader_type": lambda v, h: (
            {"leader_type": _STACKELBERG_LEADERS[str(v).strip().lower().replace("-", "_")]}
            if str(v).strip().lower().replace("-", "_") in _STACKELBERG_LEADERS
            else f"MoCo knows no leader_type {v!r} (probabilistic or uniform)"
        ),
        # MoCo's older name of the uniform share, used where leader_uniform_mix is not given
        "instr_sample_gamma": lambda v, h: (
            {"leader_uniform_mix": v}
            if "leader_uniform_mix" not in h
            else {}
            if h["leader_uniform_mix"] == v
            else f"MoCo draws with leader_uniform_mix={h['leader_uniform_mix']} and updates with {v}"
        ),
        # MoCo's older switch to one leader per model, used where leader_scope is not given
        "instruction_selection": lambda v, h: (
            {"leader_scope": "per_model"}
            if str(v).lower() == "exp3_per_model" and "leader_scope" not in h
            else {}
        ),
        # MoCo's names of its two training algorithms
        "training_algorithm": lambda v, h: (
            {"training_algorithm": _stackelberg_training(h)}
            if _stackelberg_training(h)
            else f"MoCo knows no training_algorithm {v!r} (dpo or grpo)"
        ),
        # TRL's scale_rewards: True is group, False none
        "grpo_scale_rewards": lambda v, h: (
            {"grpo_scale_rewards": {True: "group", False: "none"}.get(v, v)}
            if {True: "group", False: "none"}.get(v, v) in ("group", "batch", "none")
            else f"TRL knows no scale_rewards {v!r} (group, batch or none)"
        ),
        # MoCo's reward scale names; any other value scales to [0, 1]
        "reward_scale": lambda v, h: {"reward_scale": _STACKELBERG_REWARD_SCALES.get(v, "zero_one")},
        "grpo_epoch": _grpo_epochs,
        **{
            key: lambda v, h: (
                "a GRPO step takes one data batch of questions' prompt rows (each with its group); "
                "set data.batch_size and trainer.accumulate_grad_batches yourself"
                if _stackelberg_training(h) == "grpo"
                else {}
            )
            for key in ("grpo_batch_size", "grpo_gradient_accumulation_steps")
        },
        "grpo_loss_type": _equivalent_when(
            lambda v, h: v == "grpo", "GRPO's loss here is TRL's grpo (a token mean per answer)"
        ),
        "judge_max_response_length": lambda v, h: {"judge_max_new_tokens": v},
        "judge_top_p": _equivalent_when(
            lambda v, h: float(v) >= 1.0, "the judges decode without a nucleus cut"
        ),
    },
}

# moco_lit arguments named like a MoCo hyperparameter but meaning something else, or a MoCo
# setting the method does not use as moco_lit does: the value rule decides, never the name
OTHER_MEANING: dict[str, set[str]] = {
    "bbmas": {"temperature", "top_p"},
    "collm": {"temperature", "top_p"},
    "lorahub": {"temperature", "top_p"},
    "logit_contrastive": {"top_p"},
    "logit_fusion": {"top_p"},
    "nudging": {"top_p"},
    "mentor_collab": {"temperature", "top_p"},
    # MoCo's aliases map to its two leaders (not to ours) and its two training algorithms
    "stackelberg": {"leader_type", "training_algorithm", "grpo_scale_rewards", "reward_scale"},
}

# Whole-config conditions: a branch MoCo takes that moco_lit runs differently, whichever keys are set
BRANCH_RULES: dict[str, Callable[[dict], str | None]] = {}

CONFIG_KEYS = ("method", "task", "task_type", "gpu_ids", "model_names", "hyperparameters")


def moco_method_name(name: str) -> str:
    """MoCo's method module (``text_majority_vote``) or log suffix (``majority_vote``) → short name."""
    available = methods.names()
    candidates = [name] + [name[len(p) :] for p in LEVEL_PREFIXES if name.startswith(p)]
    for candidate in candidates:
        candidate = METHOD_ALIASES.get(candidate, candidate)
        if candidate in available:
            return candidate
    raise UserError(
        f"MoCo method {name!r} has no moco_lit counterpart; available methods: {', '.join(available)}"
    )


def read_moco_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read MoCo config {path}: {err}") from err
    missing = [key for key in ("method", "task", "model_names") if key not in (config or {})]
    if not isinstance(config, dict) or missing:
        raise UserError(
            f"{path} is not a MoCo config: missing {', '.join(missing)}; expected keys {CONFIG_KEYS}"
        )
    return config


def method_arguments(method: type) -> dict[str, inspect.Parameter]:
    """Every ``__init__`` argument of a method class and its bases, by name."""
    found: dict[str, inspect.Parameter] = {}
    for cls in reversed(method.__mro__):
        if "__init__" in vars(cls):
            for parameter in inspect.signature(cls.__init__).parameters.values():
                if parameter.name != "self" and parameter.kind not in (
                    parameter.VAR_KEYWORD,
                    parameter.VAR_POSITIONAL,
                ):
                    found[parameter.name] = parameter
    return found


def map_setting(
    name: str, key: str, value: Any, hyper: dict, accepted: set[str]
) -> dict[str, Any] | str | None:
    """Where MoCo's ``key`` goes for method ``name``: recipe targets and values, a reason it cannot
    be expressed, or None when MoCo's method does not read it. Targets are method arguments or
    ``data.<name>`` / ``trainer.<name>``; an empty dict means nothing needs setting."""
    if key == "ratio":
        return _ratio(value)
    rule = VALUE_RULES.get(name, {}).get(key) or VALUE_RULES["*"].get(key)
    if rule is not None and (key not in accepted or key in OTHER_MEANING.get(name, ())):
        return rule(value, hyper)
    if key in RENAMED.get(name, {}):
        targets = RENAMED[name][key]
        missing = [t for t in targets if t.partition(".")[0] not in {*accepted, "data", "trainer"}]
        if missing:
            return f"moco_lit's {name} has no {', '.join(missing)}"
        return dict.fromkeys(targets, value)
    if key in accepted:
        return {key: value}
    if key in GENERATION:
        return dict.fromkeys(GENERATION[key], value)
    if key in MOCO_ONLY:
        return {}
    if key in UNSUPPORTED.get(name, {}):
        return UNSUPPORTED[name][key]
    return None


def _ratio(value: Any) -> dict[str, Any] | str:
    """MoCo keeps the first ``int(len(split) * ratio)`` examples of dev and test: ``data.ratio``."""
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        return f"ratio must be a number, got {value!r}"
    if ratio <= 0:
        return "a ratio <= 0 leaves MoCo with no examples"
    return {} if ratio >= 1 else {"data.ratio": ratio}


def convert_config(config: dict, allow_lossy: bool = False) -> tuple[dict, list[str]]:
    """(recipe dict, header notes) for a MoCo config dict.

    Raises a UserError naming every setting moco_lit cannot express, unless ``allow_lossy``: then
    they are listed in the notes (the recipe's header) and left out.
    """
    name = moco_method_name(config["method"])
    accepted = set(method_arguments(methods.get(name)))
    hyper = dict(config.get("hyperparameters") or {})
    models = list(config["model_names"])
    targets: dict[str, Any] = {}
    lost: list[str] = []
    ignored: list[str] = []
    # settings decided by a value rule come last: they may override a plain one (nudging's
    # do_sample sets the temperature), whatever the order of the config's keys
    ruled = {key for key in {**VALUE_RULES["*"], **VALUE_RULES.get(name, {})} if key not in accepted}
    ruled |= OTHER_MEANING.get(name, set())
    for key, value in sorted(hyper.items(), key=lambda item: item[0] in ruled):
        mapped = map_setting(name, key, value, hyper, accepted)
        if isinstance(mapped, str):
            lost.append(f"{key}={value!r} ({mapped})")
        elif mapped is None:
            ignored.append(key)
        else:
            targets.update(mapped)
    if name == "structure":
        problem = _structure_graph(hyper, len(models), targets)
        if problem:
            lost.append(problem)
    if name in BRANCH_RULES and (problem := BRANCH_RULES[name](hyper)):
        lost.append(problem)
    for target, value in {**_generation_defaults(), **MOCO_DEFAULTS.get(name, {})}.items():
        if target not in targets and ("." in target or target in accepted):
            targets[target] = value
    if lost and not allow_lossy:
        raise UserError(
            f"MoCo's {config['method']} settings moco_lit cannot express: {'; '.join(lost)}. "
            "Pass --allow_lossy to convert without them (they are listed in the recipe's header)."
        )
    notes = [f"dropped (moco_lit cannot express it): {item}" for item in lost]
    if ignored:
        notes.append(f"ignored (MoCo's {config['method']} does not read them): {', '.join(ignored)}")
    return _recipe(name, models, config, targets), notes


def _generation_defaults() -> dict[str, Any]:
    return {GENERATION[key][0]: value for key, value in GENERATION_DEFAULTS.items()}


def _recipe(name: str, models: list, config: dict, targets: dict[str, Any]) -> dict:
    init_args: dict[str, Any] = {"collaborators": models}
    data: dict[str, Any] = {"benchmark": config["task"]}
    if config.get("task_type"):
        data["task_type"] = config["task_type"]
    trainer = _trainer(config.get("gpu_ids"))
    for target, value in targets.items():
        section, _, field = target.rpartition(".")
        if section in ("", "data", "trainer"):
            {"": init_args, "data": data, "trainer": trainer}[section][field] = value
        else:  # a nested argument of the method (swarm.<field>)
            init_args.setdefault(section, {})[field] = value
    return {
        "model": {"class_path": methods.class_path(name), "init_args": init_args},
        "data": data,
        "trainer": trainer,
    }


def moco_structure_matrix(structure_type: str, count: int, matrix: list | None = None) -> list[list[int]]:
    """MoCo's communication graph for ``count`` models: ``m[j][i] = 1`` when model i reads model j.

    MoCo's graphs: ``chain`` (i—i+1), ``circle`` (the chain closed), ``tree`` (binary heap order),
    ``star`` (hub 0 joined to all, and the others in a ring 1—2—…—(n-1)—1), ``complete``; all
    undirected. ``other`` is the given matrix.
    """
    if structure_type == "other":
        return [[int(x) for x in row] for row in matrix or []]
    edges: set[tuple[int, int]] = set()
    if structure_type == "complete":
        edges = {(i, j) for i in range(count) for j in range(count) if i != j}
    elif structure_type == "chain":
        edges = {(i, i + 1) for i in range(count - 1)}
    elif structure_type == "circle":
        edges = {(i, (i + 1) % count) for i in range(count)}
    elif structure_type == "tree":
        edges = {((child - 1) // 2, child) for child in range(1, count)}
    elif structure_type == "star":
        edges = {(0, i) for i in range(1, count)} | {(i, i + 1) for i in range(1, count - 1)}
        if count > 1:
            edges.add((1, count - 1))  # closes the ring (a self-loop on node 1 with two models)
    else:
        raise UserError(
            f"MoCo structure_type {structure_type!r}: expected chain, tree, star, circle, complete or other"
        )
    matrix_out = [[0] * count for _ in range(count)]
    for i, j in edges:
        matrix_out[i][j] = matrix_out[j][i] = 1
    return matrix_out


def _structure_graph(hyper: dict, count: int, targets: dict[str, Any]) -> str | None:
    """Name moco_lit's topology with MoCo's graph, or give the graph as a matrix (``other``)."""
    targets.pop("structure_matrix", None)
    kind = hyper.get("structure_type")
    if kind is None:
        return "structure_type is missing (MoCo stops without it)"
    moco = moco_structure_matrix(kind, count, hyper.get("structure_matrix"))
    if len(moco) != count or any(len(row) != count for row in moco):
        return f"structure_matrix must be {count}x{count}, one row per model"
    if any(moco[i][i] for i in range(count)):
        return f"MoCo's {kind} graph lets a model read its own answer as a neighbour's"
    reads = [[j for j in range(count) if j != i and moco[j][i]] for i in range(count)]
    names = [n for n in get_args(structure.StructureType) if n != "other"]
    for candidate in sorted(names, key=lambda n: n != kind):  # MoCo's own name first
        if structure.neighbours_of(candidate, count) == reads:
            targets["structure_type"] = candidate
            return None
    targets["structure_type"] = "other"
    targets["structure_matrix"] = moco
    return None


def _trainer(gpu_ids: Any) -> dict:
    """MoCo places models on ``gpu_ids``; moco_lit runs data-parallel over the same devices."""
    if not gpu_ids:
        return {"accelerator": "cpu", "devices": 1}
    ids = [int(i) for i in (gpu_ids if isinstance(gpu_ids, list) else [gpu_ids])]
    return {"accelerator": "gpu", "devices": ids}


def recipe_yaml(recipe: dict, notes: list[str], source: str, target: str | None = None) -> str:
    header = [
        f"# Converted from the MoCo config {source}.",
        f"#   python -m moco_lit test -c {target or 'RECIPE.yaml'}   (`fit` first if the method trains)",
    ]
    header += [f"# {note}" for note in notes]
    return "\n".join(header) + "\n" + yaml.safe_dump(recipe, sort_keys=False, default_flow_style=False)


def convert_file(
    path: str | Path, output: str | Path | None = None, allow_lossy: bool = False
) -> tuple[str, list[str]]:
    """Convert a MoCo config file; writes ``output`` when given. Returns (YAML text, notes)."""
    recipe, notes = convert_config(read_moco_config(path), allow_lossy)
    text = recipe_yaml(recipe, notes, Path(path).name, None if output is None else str(output))
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
    return text, notes


# -- MoCo output logs ---------------------------------------------------------------------------


def is_moco_log(path: str | Path) -> bool:
    path = Path(path)
    if path.suffix != ".json" or path.name in {"metrics.json", "report.json"}:
        return False
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("logs"), list) and "task" in data


def read_moco_log(path: str | Path) -> dict:
    """A MoCo log with its method name (from the file name) and outputs; a UserError if it has none."""
    path = Path(path)
    if not is_moco_log(path):
        raise UserError(f"{path} is not a MoCo log (a JSON object with 'task' and a 'logs' list)")
    data = json.loads(path.read_text())
    entries = [e for e in data["logs"] if isinstance(e, dict)]
    if not entries or not all("output" in e for e in entries):
        raise UserError(f"{path}: MoCo log entries carry no 'output'; nothing to score or compare")
    return {**data, "logs": entries, "method": _method_from_filename(path, data)}


def _method_from_filename(path: Path, data: dict) -> str:
    # <task>_<models or model>_<score>_<method>.json; the task may contain underscores
    rest = path.stem.removeprefix(f"{data['task']}_")
    match = re.search(r"_(-?\d+(?:\.\d+)?(?:e-?\d+)?)_(.+)$", rest)
    raw = match.group(2) if match else rest.rsplit("_", 1)[-1]
    try:
        return moco_method_name(raw)
    except UserError:
        return raw  # a MoCo method moco_lit lacks still shows in the report, by its MoCo name


def _test_ids(task: str, task_type: str | None, count: int) -> list[str]:
    """The ids of the first ``count`` test examples of ``task``; positions when it cannot be loaded."""
    try:
        records = load_benchmark(task, task_type=task_type).test
        if len(records) >= count:
            return [str(r["id"]) for r in records[:count]]
    except UserError:
        pass
    return [str(i) for i in range(count)]


def runs_from_moco_logs(paths: list[Path]) -> list[Run]:
    """Report runs (``moco_lit.results.Run``) from MoCo logs; a single_model log is one model's scores."""
    runs = []
    for path in paths:
        log = read_moco_log(path)
        ids = _test_ids(log["task"], log.get("task_type"), len(log["logs"]))
        scores = {key: entry.get("score") for key, entry in zip(ids, log["logs"])}
        specs = tuple(str(m) for m in log.get("model_names") or [])
        hyper = log.get("hyperparameters") or {}
        present = [s for s in scores.values() if s is not None]
        runs.append(
            Run(
                path=str(path),
                method=log["method"],
                label=log["method"],
                level="baseline" if log["method"] == "single_model" else "",
                benchmark=log["task"],
                specs=specs,
                names=tuple(s.split("/")[-1] for s in specs),
                score=log.get("avg_test_score", sum(present) / len(present) if present else None),
                n=len(scores),
                tokens=0.0,
                calls=0.0,
                scores=scores,
                single={specs[0]: scores} if log["method"] == "single_model" and specs else {},
                decoding=(hyper.get("max_response_length"), hyper.get("temperature"), hyper.get("top_p")),
                source="moco_log",
                mtime=path.stat().st_mtime,
            )
        )
    return runs


def moco_log_predictions(log_path: str | Path, test_records: list[dict]) -> Path:
    """Write the outputs of a MoCo log as ``<stem>.predictions.jsonl`` (ids by test-split position)."""
    log_path = Path(log_path)
    log = read_moco_log(log_path)
    if len(log["logs"]) > len(test_records):
        raise UserError(
            f"{log_path} has {len(log['logs'])} outputs but the test split has {len(test_records)} examples"
        )
    target = log_path.with_name(f"{log_path.stem}.predictions.jsonl")
    lines = [
        json.dumps({"id": record["id"], "output": entry["output"]}, ensure_ascii=False)
        for record, entry in zip(test_records, log["logs"])
    ]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def moco_log_task(path: str | Path) -> str | None:
    """The benchmark a MoCo log was made on (None for anything else): ``score`` needs no --benchmark."""
    return json.loads(Path(path).read_text()).get("task") if is_moco_log(path) else None


def main(argv: list[str]) -> int:
    """``python -m moco_lit convert moco_config.json [-o recipe.yaml]``."""
    parser = CommandParser(
        prog="python -m moco_lit convert", description="Turn a MoCo JSON config into a moco_lit recipe YAML."
    )
    parser.add_argument(
        "config", help="MoCo config file (method, task, task_type, gpu_ids, model_names, ...)"
    )
    parser.add_argument("-o", "--output", default=None, help="recipe file to write (default: print it)")
    parser.add_argument(
        "--allow_lossy",
        action="store_true",
        help="convert even when some MoCo settings have no moco_lit counterpart (listed in the header)",
    )
    args = parser.parse_args(argv)
    text, notes = convert_file(args.config, args.output, args.allow_lossy)
    if args.output is None:
        print(text, end="")
    else:
        dropped = sum(note.startswith("dropped") for note in notes)
        print(
            f"wrote {args.output}" + (f" ({dropped} setting(s) dropped; see its header)" if dropped else "")
        )
    return 0
