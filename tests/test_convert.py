"""``convert``: every hyperparameter MoCo's methods read maps to a moco_lit setting with the same
meaning, or the conversion stops naming it; ``ratio`` cuts dev and test as MoCo does.

What MoCo reads is found by parsing its installed source (``hyperparameters.get("x", default)`` and
``hyperparameters["x"]`` in ``method/*.py`` and ``main.py``), so the tables in ``moco_lit.convert``
are checked against MoCo itself; those tests skip where MoCo is not installed.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from moco_lit.convert import (
    GENERATION,
    MOCO_ONLY,
    convert_config,
    map_setting,
    method_arguments,
    moco_method_name,
    moco_structure_matrix,
)
from moco_lit.errors import UserError

MODELS = ["Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "google/gemma-2-9b-it"]

_SPEC = importlib.util.find_spec("model_collaboration")
MOCO_ROOT = Path(_SPEC.submodule_search_locations[0]) if _SPEC else None
needs_moco = pytest.mark.skipif(MOCO_ROOT is None, reason="MoCo (modelco==1.1.2) is not installed")

# The 30 methods of MoCo 1.1.2 (its method/*.py less the generation module and the template)
MOCO_METHODS = (
    "api_cascade api_collm api_graph_routing api_mentor_collab api_nudging api_prompt_routing "
    "api_switch_generation api_trained_router logit_logit_contrastive logit_logit_fusion single_model "
    "text_agglm text_bbmas text_heterogeneous_swarms text_knowledge_card text_llm_blender "
    "text_majority_vote text_moa text_multiagent_feedback text_multiagent_finetuning "
    "text_multiagent_refine text_slm_mux text_sparta text_sparta_stackelberg text_structure "
    "weight_dare_ties weight_expo weight_greedy_soup weight_lorahub weight_model_swarms"
).split()

# Hyperparameter fields of MoCo's public examples/*.json beyond the four generation settings they
# all carry (max_response_length, temperature, top_p, batch_size); names only.
EXAMPLE_FIELDS = {
    "api_collm": {"training_num"},
    "api_graph_routing": {"model_descriptions", "task_description"},
    "api_prompt_routing": {"model_descriptions"},
    "api_switch_generation": {"selector_model_name"},
    "api_trained_router": {"model_descriptions"},
    "text_agglm": {"reuse_log", "train_batch_size"},
    "text_heterogeneous_swarms": {"max_iterations", "ratio"},
    "text_moa": {"round"},
    "text_multiagent_feedback": {"round"},
    "text_multiagent_refine": {"round"},
    "text_slm_mux": {"samples_per_model", "tie", "seed"},
    "text_sparta_stackelberg": set(
        "run_id instruction_selection reward_method opponent_selection training_algorithm leader_type "
        "num_iterations num_instructions num_duels_per_iteration grpo_batch_size "
        "grpo_gradient_accumulation_steps grpo_learning_rate grpo_epoch grpo_num_generations "
        "grpo_max_completion_length gpus_per_grpo_job parallel_grpo_training max_parallel_grpo_jobs "
        "judge_batch_size judge_max_response_length".split()
    ),
    "text_structure": {"structure_type"},
    "weight_dare_ties": {"base_model_name"},
    "weight_expo": {"mode"},
    "weight_lorahub": {"lorahub_dev_samples"},
    "weight_model_swarms": {"fast_merge_flag"},
}


# -- what MoCo reads ----------------------------------------------------------------------------


def hyperparameter_reads(path: Path) -> dict[str, str | None]:
    """Every ``hyperparameters.get("x", default)`` / ``hyperparameters["x"]`` of a MoCo file: the
    key and the default's source (None when there is none)."""
    found: dict[str, str | None] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "hyperparameters"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            default = ast.unparse(node.args[1]) if len(node.args) > 1 else None
            found.setdefault(node.args[0].value, default)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "hyperparameters"
            and isinstance(node.slice, ast.Constant)
        ):
            found.setdefault(node.slice.value, None)
    return found


def moco_reads(method: str) -> dict[str, str | None]:
    """What MoCo's ``method`` reads: its own keys, and main.py's for every method."""
    reads = hyperparameter_reads(MOCO_ROOT / "method" / f"{method}.py")
    for key, default in hyperparameter_reads(MOCO_ROOT / "main.py").items():
        reads.setdefault(key, default)
    return reads


def literal(source: str | None):
    try:
        return ast.literal_eval(source) if source is not None else None
    except (ValueError, SyntaxError):
        return None


@needs_moco
def test_the_method_list_and_the_global_settings_are_moco_s():
    files = {p.stem for p in (MOCO_ROOT / "method").glob("*.py")}
    assert files - {"__init__", "distributed_generation", "sample_approach"} == set(MOCO_METHODS)
    globals_ = hyperparameter_reads(MOCO_ROOT / "main.py")
    assert set(globals_) == {*GENERATION, "big_model_mode", "load_in_8bit"}
    for method, fields in EXAMPLE_FIELDS.items():  # the examples use no field MoCo does not read
        assert fields <= set(moco_reads(method)), method


def resolved(recipe: dict, target: str, arguments: dict):
    """A recipe target's value: set in the recipe, else the method's default."""
    section, _, field = target.rpartition(".")
    if section in ("data", "trainer"):
        return recipe[section].get(field)
    init_args = recipe["model"]["init_args"]
    if section:  # a field of a nested argument (swarm.<field>)
        nested = init_args.get(section, {})
        return nested[field] if field in nested else getattr(arguments[section].default, field)
    return init_args[field] if field in init_args else arguments[field].default


@needs_moco
@pytest.mark.parametrize("method", MOCO_METHODS)
def test_every_setting_moco_reads_is_mapped_or_named(method):
    """Per method: each key MoCo reads goes to settings that exist, or has a stated reason."""
    from moco_lit import methods

    name = moco_method_name(method)
    arguments = method_arguments(methods.get(name))
    for key, default in moco_reads(method).items():
        value = literal(default)
        mapped = map_setting(name, key, value, {}, set(arguments))
        assert mapped is not None, f"{method} reads {key!r} but convert does not know it"
        if isinstance(mapped, str):
            assert mapped.strip(), f"{method}.{key}: empty reason"
            continue
        for target in mapped:
            section, _, field = target.rpartition(".")
            assert section in {"", "data", "trainer"} or section in arguments, target
            assert section or field in arguments, f"{method}.{key} -> {target}: no such argument of {name}"
            if section in arguments:  # a field of a nested argument (swarm.<field>)
                assert hasattr(arguments[section].default, field), f"{method}.{key} -> {target}"


# MoCo's effective value differs from the key's own default here, where main.py's applies too
EFFECTIVE = {
    ("text_agglm", "temperature"): {"temperature": 0.7, "grpo_temperature": 1.0},
    # cascade's 256 budgets the answers it scores; the last level answers within main.py's 512
    ("api_cascade", "max_response_length"): {"max_new_tokens": 512, "scored_max_new_tokens": 256},
    # graph_routing reads split_ratio twice; the second read's default (80/10/10) is the one used
    ("api_graph_routing", "split_ratio"): {"split_ratio": (0.8, 0.1, 0.1)},
}


@needs_moco
@pytest.mark.parametrize("method", MOCO_METHODS)
def test_settings_left_out_get_moco_s_defaults(method):
    """A config without hyperparameters runs with MoCo's defaults, wherever they differ from ours."""
    from moco_lit import methods

    name = moco_method_name(method)
    arguments = method_arguments(methods.get(name))
    reads = moco_reads(method)
    structure = {"structure_type": "chain"} if name == "structure" else {}
    recipe, _ = convert_config(moco_config(method, structure), allow_lossy=True)
    main_defaults = hyperparameter_reads(MOCO_ROOT / "main.py")
    for key, source in reads.items():
        default = literal(source)
        if key in GENERATION and default is None:
            default = literal(main_defaults[key])
        if default is None or key in structure:
            continue
        mapped = map_setting(name, key, default, {}, set(arguments))
        if not isinstance(mapped, dict):
            continue
        expected = EFFECTIVE.get((method, key), mapped)
        for target, value in expected.items():
            assert resolved(recipe, target, arguments) == value, f"{method}: {key} -> {target}"


# -- a config per method carrying every field ---------------------------------------------------

# Where a MoCo setting lands under another name (checked here independently of convert's tables)
EXPECTED_TARGETS = {
    ("text_agglm", "temperature"): ("temperature", "grpo_temperature"),
    ("text_agglm", "max_epochs"): ("epochs_per_iteration",),
    ("api_cascade", "max_response_length"): ("max_new_tokens", "scored_max_new_tokens"),
    ("api_graph_routing", "batch_size"): ("generation_batch_size", "masks_per_step"),
    ("api_collm", "training_dataset_name"): ("training_data",),
    ("api_collm", "max_sequence_length"): ("max_seq_length",),
    ("api_graph_routing", "embedding_model_name"): ("embedding_model",),
    ("text_llm_blender", "ranker_model_name"): ("ranker",),
    ("text_llm_blender", "fuser_model_name"): ("fuser",),
    ("text_llm_blender", "ranker_max_response_length"): ("ranker_max_new_tokens",),
    ("text_multiagent_finetuning", "sft_epochs"): ("epochs_per_iteration",),
    ("text_multiagent_finetuning", "sft_learning_rate"): ("learning_rate",),
    ("api_mentor_collab", "task"): ("mlp_task",),
    ("api_switch_generation", "selector_model_name"): ("selector_model",),
    ("api_switch_generation", "reward_model_name"): ("rollout_reward_model",),
    ("api_trained_router", "reward_model_name"): ("tie_break_reward_model",),
    ("api_trained_router", "num_train_epochs"): ("trainer.max_epochs",),
    ("text_sparta_stackelberg", "judge_max_response_length"): ("judge_max_new_tokens",),
}
# MoCo's two spellings of a particle swarm's settings land in the fields of the one swarm argument
_SWARM_SAME = (
    "inertia",
    "step_length",
    "step_length_factor",
    "minimum_step_length",
    "patience",
    "restart_patience",
)
_SWARM_NUMERIC = {"cognitive_coeff": "cognitive", "social_coeff": "social", "repel_coeff": "repel"}
_SWARM_NUMERIC |= {"repel_term": "repel_term", "weight_randomness": "weight_randomness"}
_SWARM_NUMERIC |= {"starting_velocity_mode": "starting_velocity"}
_SWARM_WEIGHT = {
    "cognitive_coefficient": "cognitive",
    "social_coefficient": "social",
    "repel_coefficient": "repel",
}
_SWARM_WEIGHT |= {"repel_term_flag": "repel_term", "weight_randomness_flag": "weight_randomness"}
for _method, _names in (
    ("weight_dare_ties", _SWARM_NUMERIC),
    ("text_heterogeneous_swarms", _SWARM_NUMERIC),
    ("weight_model_swarms", _SWARM_WEIGHT),
):
    for _key, _field in {**{name: name for name in _SWARM_SAME}, **_names}.items():
        EXPECTED_TARGETS[(_method, _key)] = (f"swarm.{_field}",)
# Settings whose recipe value is derived from MoCo's, not copied
DERIVED = {
    ("weight_model_swarms", "fast_merge_flag"): {"merge": "auto"},  # the sample value is True
    ("text_structure", "structure_type"): {"structure_type": "chain"},
    ("text_structure", "structure_matrix"): {"structure_matrix": None},  # MoCo ignores it for chain
    ("api_nudging", "temperature"): {"temperature": 0.0},  # the sample do_sample is False: greedy
    ("api_nudging", "do_sample"): {"temperature": 0.0},
    # MoCo decodes these greedily with their own loops, whatever the run's temperature and top_p
    **{
        (method, key): {key: {"temperature": 0.0, "top_p": 1.0}[key]}
        for method in ("api_collm", "api_mentor_collab", "weight_lorahub")
        for key in ("temperature", "top_p")
    },
    # and these sample with no nucleus cut
    ("api_nudging", "top_p"): {"top_p": 1.0},
    ("logit_logit_fusion", "top_p"): {"top_p": 1.0},
    # MoCo scales a reward of any other name to [0, 1]
    ("text_sparta_stackelberg", "reward_scale"): {"reward_scale": "zero_one"},
}


def sample_value(key: str, default: str | None):
    """A value unlike MoCo's default, of the same type, for a field-by-field check."""
    value = literal(default)
    if key == "ratio":
        return 0.5
    if key == "structure_type":
        return "chain"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 3
    if isinstance(value, float):
        return round(value * 0.5 + 0.013, 6)
    if isinstance(value, list):
        return [*value, 0.6]
    if key in {"model_descriptions", "sft_models", "dpo_models"}:
        return [f"{key} {i}" for i in range(len(MODELS))]
    if key == "structure_matrix":
        return [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    if key == "split_ratio":
        return [0.6, 0.2, 0.2]
    if key.endswith("model_name") or key in {"base_model", "agg_model", "selector_base_model"}:
        return f"org/{key}-x"
    return f"{key}-x"


def moco_config(method: str, hyperparameters: dict, gpu_ids=(0, 1, 2)) -> dict:
    return {
        "method": method,
        "task": "gsm8k",
        "task_type": "exact_match",
        "gpu_ids": list(gpu_ids),
        "model_names": MODELS[:1] if method == "single_model" else list(MODELS),
        "hyperparameters": hyperparameters,
    }


@needs_moco
@pytest.mark.parametrize("method", MOCO_METHODS)
def test_a_config_with_every_field_converts_field_by_field(method):
    from moco_lit import methods

    name = moco_method_name(method)
    arguments = method_arguments(methods.get(name))
    reads = moco_reads(method)
    fields = {key: sample_value(key, default) for key, default in reads.items()}
    for key in EXAMPLE_FIELDS.get(method, ()):
        assert key in fields
    recipe, notes = convert_config(moco_config(method, fields), allow_lossy=True)
    init_args = recipe["model"]["init_args"]
    assert init_args["collaborators"] == moco_config(method, {})["model_names"]
    assert recipe["trainer"]["devices"] == [0, 1, 2] and recipe["data"]["benchmark"] == "gsm8k"
    dropped = [note for note in notes if note.startswith("dropped")]
    blocking = []
    for key, value in fields.items():
        outcome = map_setting(name, key, value, fields, set(arguments))
        if (method, key) in DERIVED:
            for target, expected in DERIVED[(method, key)].items():
                assert resolved(recipe, target, arguments) == expected, (method, key)
        elif isinstance(outcome, str):
            blocking.append(key)
            assert any(
                note.startswith(f"dropped (moco_lit cannot express it): {key}=") for note in dropped
            ), key
        elif key in MOCO_ONLY or outcome == {}:
            assert not any(f" {key}=" in note for note in notes), key
        elif key == "ratio":
            assert recipe["data"]["ratio"] == value
        elif (method, key) in EXPECTED_TARGETS:
            for target in EXPECTED_TARGETS[(method, key)]:
                assert resolved(recipe, target, arguments) == value, (method, key, target)
        elif key in arguments:
            assert init_args[key] == value, (method, key)
        else:
            assert key in GENERATION, (method, key, outcome)
            assert init_args[GENERATION[key][0]] == value, (method, key)
    # without the flag the same config stops, in one line naming every setting it would drop
    if blocking:
        with pytest.raises(UserError) as stopped:
            convert_config(moco_config(method, fields))
        message = str(stopped.value)
        assert "\n" not in message and "--allow_lossy" in message
        assert all(f"{key}=" in message for key in blocking), (blocking, message)
    else:
        assert convert_config(moco_config(method, fields))[0] == recipe


# -- MoCo's example configs, as the CLI takes them ------------------------------------------------

# (method, its example's hyperparameters beyond the generation four), with our own values
EXAMPLES = {
    "text_majority_vote": {"tie": "dev-based"},
    "text_moa": {"round": 2},
    "text_structure": {"structure_type": "star", "num_rounds": 2},
    "api_switch_generation": {"selector_model_name": "org/selector"},
    "api_trained_router": {"model_descriptions": ["a", "b", "c"]},
    "api_graph_routing": {"model_descriptions": ["a", "b", "c"], "task_description": "grade-school maths"},
    "weight_model_swarms": {"fast_merge_flag": 1},
    "weight_dare_ties": {"base_model_name": "Qwen/Qwen2.5-7B"},
    "weight_lorahub": {"lorahub_dev_samples": 100},
    "text_slm_mux": {"samples_per_model": 5, "tie": "dev-based", "seed": 42},
}
GENERATION_FIELDS = {"max_response_length": 384, "temperature": 0.6, "top_p": 0.85, "batch_size": 24}


@pytest.mark.parametrize("method", sorted(EXAMPLES))
def test_example_configs_become_recipes_the_cli_accepts(method, tmp_path, capsys):
    from moco_lit.cli import main

    config_path = tmp_path / f"{method}.json"
    config_path.write_text(json.dumps(moco_config(method, {**GENERATION_FIELDS, **EXAMPLES[method]})))
    recipe = tmp_path / f"{method}.yaml"
    assert main(["convert", str(config_path), "-o", str(recipe)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["test", "-c", str(recipe), "--print_config"])
    assert done.value.code in (0, None)
    init_args = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    greedy = method == "weight_lorahub"  # MoCo's lorahub decodes greedily
    assert init_args["max_new_tokens"] == 384 and init_args["generation_batch_size"] == 24
    assert (init_args["temperature"], init_args["top_p"]) == ((0.0, 1.0) if greedy else (0.6, 0.85))
    if method == "api_graph_routing":  # its batch_size is also the masks per training step
        assert init_args["masks_per_step"] == 24 and init_args["task_description"] == "grade-school maths"


def test_settings_moco_does_not_read_are_listed_as_ignored():
    recipe, notes = convert_config(
        moco_config("text_majority_vote", {"tie": "dev-based", "wait_flag": True, "load_in_8bit": False}, [])
    )
    assert recipe["model"]["class_path"] == "moco_lit.methods.text.majority_vote.MajorityVote"
    assert recipe["model"]["init_args"]["tie"] == "dev-based"
    assert recipe["trainer"] == {"accelerator": "cpu", "devices": 1}  # no gpu_ids: CPU
    assert notes == ["ignored (MoCo's text_majority_vote does not read them): wait_flag"]


def test_loading_in_8bit_stops_unless_lossy_is_allowed(tmp_path, capsys):
    from moco_lit.cli import main

    config = moco_config("text_moa", {"load_in_8bit": True, "big_model_mode": True, "round": 2})
    path = tmp_path / "moa.json"
    path.write_text(json.dumps(config))
    assert main(["convert", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "load_in_8bit=True" in err[0] and "big_model_mode=True" in err[0]
    assert main(["convert", str(path), "--allow_lossy", "-o", str(tmp_path / "moa.yaml")]) == 0
    text = (tmp_path / "moa.yaml").read_text()
    assert "# dropped (moco_lit cannot express it): load_in_8bit=True" in text
    assert yaml.safe_load(text)["model"]["init_args"]["round"] == 2


def test_settings_unused_by_moco_s_branch_do_not_stop_it():
    # a given selector: MoCo trains none, so its training settings are unused
    recipe, notes = convert_config(
        moco_config(
            "api_switch_generation", {"selector_model_name": "org/sel", "reward_model_name": "org/rm"}
        )
    )
    assert recipe["model"]["init_args"]["selector_model"] == "org/sel" and not notes
    # no selector: MoCo's training, every setting mapped (the reward model scores the rollouts)
    hyper = {"selector_base_model": "org/base", "reward_model_name": "org/rm", "patch_size": 10}
    recipe, notes = convert_config(moco_config("api_switch_generation", hyper))
    init = recipe["model"]["init_args"]
    assert (init["selector_base_model"], init["rollout_reward_model"], init["patch_size"]) == (
        "org/base",
        "org/rm",
        10,
    )
    assert init.get("selector_model") is None and recipe["trainer"]["max_epochs"] == 5 and not notes
    # the fuser's budget equal to everyone's is no loss; the reward model breaks router ties
    recipe, _ = convert_config(
        moco_config("text_llm_blender", {"max_response_length": 300, "fuser_max_response_length": 300})
    )
    assert recipe["model"]["init_args"]["max_new_tokens"] == 300
    recipe, _ = convert_config(moco_config("api_trained_router", {"reward_model_name": "org/rm"}))
    assert recipe["model"]["init_args"]["tie_break_reward_model"] == "org/rm"
    assert "reward_model" not in recipe["model"]["init_args"]
    # nudging without sampling decodes greedily
    recipe, _ = convert_config(moco_config("api_nudging", {"do_sample": False, "temperature": 0.9}))
    assert recipe["model"]["init_args"]["temperature"] == 0.0


def test_unknown_method_names_the_available_ones(tmp_path: Path):
    with pytest.raises(UserError, match="available methods: .*majority_vote"):
        convert_config(moco_config("text_telepathy", {}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"task": "gsm8k"}))
    from moco_lit.cli import main

    assert main(["convert", str(bad)]) == 2


# -- ratio --------------------------------------------------------------------------------------


def test_ratio_becomes_a_proportional_data_setting():
    recipe, notes = convert_config(moco_config("text_moa", {"ratio": 0.3}))
    assert recipe["data"]["ratio"] == 0.3 and "limit" not in recipe["data"] and not notes
    recipe, _ = convert_config(moco_config("text_moa", {"ratio": 1.0}))
    assert "ratio" not in recipe["data"]
    with pytest.raises(UserError, match="ratio=0"):
        convert_config(moco_config("text_moa", {"ratio": 0}))


def moco_format_task(folder: Path, dev: int, test: int) -> Path:
    def records(count: int, prefix: str) -> list[dict]:
        return [
            {"id": f"{prefix}{i}", "input": f"What is {i} times 3?", "output": str(3 * i)}
            for i in range(count)
        ]

    path = folder / "tiny_task.json"
    path.write_text(
        json.dumps({"task_type": "exact_match", "dev": records(dev, "d"), "test": records(test, "t")})
    )
    return path


@pytest.mark.parametrize("ratio", [0.07, 0.29, 0.3, 0.5, 0.57, 1.0])
def test_data_ratio_keeps_the_examples_moco_keeps(ratio, tmp_path):
    from moco_lit.data.datamodule import BenchmarkDataModule

    path = moco_format_task(tmp_path, dev=17, test=100)
    data = json.loads(path.read_text())
    module = BenchmarkDataModule(benchmark=str(path), ratio=ratio)
    module.setup("test")
    for split in ("dev", "test"):
        kept = data[split][: int(len(data[split]) * ratio)]  # MoCo's cut (eval.prepare_inputs)
        assert [e["id"] for e in module.examples(split)] == [r["id"] for r in kept], split
    # 0.29 * 100 is 28.999…: int() keeps 28, as MoCo does
    if ratio == 0.29:
        assert len(module.examples("test")) == 28


@needs_moco
def test_data_ratio_matches_moco_s_own_prepare_inputs(tmp_path, monkeypatch):
    from model_collaboration.data import eval as moco_eval

    from moco_lit.data.datamodule import BenchmarkDataModule

    path = moco_format_task(tmp_path, dev=13, test=41)
    monkeypatch.setattr(moco_eval, "DATA_DIR", str(tmp_path))
    for ratio in (0.1, 0.33, 0.7):
        module = BenchmarkDataModule(benchmark=str(path), ratio=ratio)
        for split in ("dev", "test"):
            moco_inputs = moco_eval.prepare_inputs("tiny_task", "exact_match", split, ratio=ratio)
            ours = [e["record"]["input"] for e in module.examples(split)]
            assert [text.split("\n\n")[0] for text in moco_inputs] == ours, (split, ratio)


def test_a_ratio_outside_zero_to_one_is_refused():
    from moco_lit.data.datamodule import BenchmarkDataModule

    for bad in (0, -0.5, 1.5):
        with pytest.raises(UserError, match="--data.ratio"):
            BenchmarkDataModule(ratio=bad)


# -- structure graphs ---------------------------------------------------------------------------


@needs_moco
def test_structure_types_convert_to_moco_s_graphs():
    from model_collaboration.method import text_structure

    from moco_lit.methods.text.structure import neighbours_of

    for kind in ("chain", "tree", "star", "circle", "complete"):
        for count in range(3, 7):
            moco = text_structure.generate_adj(count, kind).tolist()
            assert moco_structure_matrix(kind, count) == moco, (kind, count)
            recipe, _ = convert_config(
                {**moco_config("text_structure", {"structure_type": kind}), "model_names": MODELS[:1] * count}
            )
            init_args = recipe["model"]["init_args"]
            reads = [[j for j in range(count) if moco[j][i]] for i in range(count)]
            assert (
                neighbours_of(init_args["structure_type"], count, init_args.get("structure_matrix")) == reads
            )


def test_moco_s_star_is_a_hub_and_a_ring():
    recipe, _ = convert_config(
        moco_config("text_structure", {"structure_type": "star"}) | {"model_names": ["a"] * 5}
    )
    from moco_lit.methods.text.structure import neighbours_of

    init_args = recipe["model"]["init_args"]
    assert init_args["structure_type"] == "star"  # the same name means the same graph
    graph = neighbours_of(init_args["structure_type"], 5, init_args.get("structure_matrix"))
    assert graph == [[1, 2, 3, 4], [0, 2, 4], [0, 1, 3], [0, 2, 4], [0, 1, 3]]
    # with two models MoCo's star makes model 1 read itself, which moco_lit cannot do
    with pytest.raises(UserError, match="its own answer"):
        convert_config(
            moco_config("text_structure", {"structure_type": "star"}) | {"model_names": ["a", "b"]}
        )


# -- a converted MoCo config runs as MoCo's own run does ------------------------------------------


def run_converted(run_cli, tmp_path: Path, config: dict, task, policy):
    """``convert`` ``config``, then ``python -m moco_lit test -c`` the recipe on ``task`` with the
    harness's scripted models (the recipe names them as ``callable:`` collaborators)."""
    from moco_lit.cli import main
    from tests.parity import moco_harness

    config = {**config, "task": str(task.write(tmp_path)), "gpu_ids": []}
    (tmp_path / "moco.json").write_text(json.dumps(config))
    recipe_path = tmp_path / "converted.yaml"
    assert main(["convert", str(tmp_path / "moco.json"), "-o", str(recipe_path)]) == 0
    recipe = yaml.safe_load(recipe_path.read_text())
    specs = [f"callable:tests.parity.moco_harness.{model}" for model in config["model_names"]]
    recipe["model"]["init_args"]["collaborators"] = specs
    recipe_path.write_text(yaml.safe_dump(recipe))
    script = moco_harness.Script(task, policy)
    moco_harness._ACTIVE.append(script)
    try:
        code, cli = run_cli(
            "test", "-c", str(recipe_path), "--cache", "false", "--wandb", "false",
            "--run_dir", str(tmp_path / "lit_runs"),
        )  # fmt: skip
    finally:
        moco_harness._ACTIVE.remove(script)
    assert code == 0
    folder = cli.model.runtime.run_folder.path
    records = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    order = {r["id"]: i for i, r in enumerate(task.test)}
    records.sort(key=lambda r: order[r["id"]])
    metrics = json.loads((folder / "metrics.json").read_text())
    return recipe, moco_harness.LitRun(records, metrics, list(script.calls), script, cli.model)


DEV_ITEMS = [
    ("Which planet is red?", {"A": "Mars", "B": "Venus", "C": "Earth", "D": "Pluto"}, "A"),
    ("Which animal barks?", {"A": "cat", "B": "dog", "C": "cow", "D": "owl"}, "B"),
    ("Which metal is liquid when warm?", {"A": "iron", "B": "gold", "C": "mercury", "D": "tin"}, "C"),
    ("Which shape has three sides?", {"A": "square", "B": "circle", "C": "hexagon", "D": "triangle"}, "D"),
]
TEST_ITEMS = [
    ("Which colour is a clear sky?", {"A": "green", "B": "blue", "C": "red", "D": "black"}, "B"),
    ("Which animal has a trunk?", {"A": "elephant", "B": "mouse", "C": "frog", "D": "snake"}, "A"),
    ("Which bird cannot fly?", {"A": "crow", "B": "eagle", "C": "swan", "D": "penguin"}, "D"),
    ("Which season is coldest?", {"A": "winter", "B": "summer", "C": "spring", "D": "autumn"}, "A"),
    ("Which fruit is yellow?", {"A": "banana", "B": "plum", "C": "grape", "D": "cherry"}, "A"),
    ("Which tool cuts paper?", {"A": "scissors", "B": "spoon", "C": "cup", "D": "brush"}, "A"),
]


@needs_moco
def test_a_converted_majority_vote_config_runs_as_moco_runs_it(run_cli, tmp_path, monkeypatch):
    """A MoCo majority_vote config (its example's fields, a dev-based tie, ratio 0.5) converted and
    run gives the same calls, votes, outputs and score as MoCo's run_method on the same scripted
    models."""
    from tests.parity.moco_harness import assert_same, assert_same_calls, multiple_choice_task, run_moco

    task = multiple_choice_task(DEV_ITEMS, TEST_ITEMS, name="convert_vote")
    # ratio 0.5 keeps t0..t2 of six test questions and d0, d1 of four dev questions
    votes = {"t0": ["A", "B", "B"], "t1": [None, None, "B"], "t2": ["C", "D", "A"]}
    dev_right = {"alpha": {"d0"}, "beta": {"d0", "d1"}, "gamma": set()}
    models = ["alpha", "beta", "gamma"]

    def policy(ask) -> str:
        if ask.split == "dev":
            letter = ask.record["answer"] if ask.example in dev_right[ask.model] else "D"
        else:
            letter = votes[ask.example][models.index(ask.model)]
        return "I cannot tell." if letter is None else f"Answer: {letter}"

    hyper = {**GENERATION_FIELDS, "tie": "dev-based", "ratio": 0.5}
    config = {"method": "text_majority_vote", "task_type": "multiple_choice", "model_names": models}
    moco = run_moco(monkeypatch, tmp_path, "text_majority_vote", task, models, policy, hyper)
    recipe, lit = run_converted(run_cli, tmp_path, {**config, "hyperparameters": hyper}, task, policy)
    assert recipe["data"]["ratio"] == 0.5 and recipe["model"]["init_args"]["tie"] == "dev-based"
    assert_same_calls(moco.calls, lit.calls)
    assert {c.example for c in lit.calls} == {"t0", "t1", "t2", "d0", "d1"}  # both splits cut
    answers = [r["answer"] for r in lit.records]
    assert_same("voted answers", moco.outputs, answers)
    # t1: two unreadable replies outvote gamma's B, as in MoCo; t2: a three-way tie goes to beta
    assert answers == ["B", None, "D"]
    assert moco.score == lit.score == 2 / 3


@needs_moco
def test_a_converted_structure_star_config_runs_as_moco_runs_it(run_cli, tmp_path, monkeypatch):
    from tests.parity.moco_harness import assert_same, assert_same_calls, boxed, exact_match_task, run_moco

    task = exact_match_task(
        dev=[("What is 2 plus 3?", "5"), ("What is 4 plus 4?", "8")],
        test=[("What is 10 plus 11?", "21"), ("What is 20 plus 22?", "42")],
        name="convert_structure",
    )

    def policy(ask) -> str:
        truth = ask.record["output"]
        if ask.model == "alpha" or boxed(truth) in ask.quoted_contents:
            return boxed(truth)
        return boxed("0")

    models = ["alpha", "beta", "gamma", "delta", "epsilon"]
    hyper = {**GENERATION_FIELDS, "structure_type": "star", "num_rounds": 3}
    config = {
        "method": "text_structure",
        "task_type": "exact_match",
        "model_names": models,
        "hyperparameters": hyper,
    }
    moco = run_moco(monkeypatch, tmp_path, "text_structure", task, models, policy, hyper)
    recipe, lit = run_converted(run_cli, tmp_path, config, task, policy)
    assert_same_calls(moco.calls, lit.calls)
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score


def test_an_option_a_method_gains_under_moco_s_name_is_used():
    from moco_lit import methods

    # model_swarms has no base_model: a value other than MoCo's null cannot be expressed ...
    accepted = set(method_arguments(methods.get("model_swarms")))
    assert "base_model" not in accepted
    assert isinstance(map_setting("model_swarms", "base_model", "base", {}, accepted), str)
    # ... until the method gains the option under MoCo's name
    assert map_setting("model_swarms", "base_model", "base", {}, accepted | {"base_model"}) == {
        "base_model": "base"
    }
    # MoCo's two spellings of a swarm's settings map to the fields of the one swarm argument
    for name, moco_key, value, target in (
        ("heterogeneous_swarms", "repel_term", False, "swarm.repel_term"),
        ("heterogeneous_swarms", "starting_velocity_mode", "zero", "swarm.starting_velocity"),
        ("dare_ties", "cognitive_coeff", 0.5, "swarm.cognitive"),
        ("model_swarms", "cognitive_coefficient", 0.5, "swarm.cognitive"),
        ("model_swarms", "repel_term_flag", False, "swarm.repel_term"),
        ("model_swarms", "weight_randomness_flag", False, "swarm.weight_randomness"),
    ):
        accepted = set(method_arguments(methods.get(name)))
        assert map_setting(name, moco_key, value, {}, accepted) == {target: value}
    # a same-named option in OTHER_MEANING takes MoCo's value only through its rule
    accepted = set(method_arguments(methods.get("stackelberg")))
    assert "leader_type" in accepted
    assert map_setting("stackelberg", "leader_type", "exp3", {}, accepted) == {"leader_type": "probabilistic"}
    assert map_setting("stackelberg", "leader_type", "random", {}, accepted) == {"leader_type": "uniform"}
    assert isinstance(map_setting("stackelberg", "leader_type", "difficulty", {}, accepted), str)
    # stackelberg's other MoCo-only settings
    mapped = map_setting("stackelberg", "instr_sample_gamma", 0.3, {"instr_sample_gamma": 0.3}, accepted)
    assert mapped == {"leader_uniform_mix": 0.3}
    # MoCo's training algorithms under its names, and the GRPO settings they bring
    grpo = {"training_algorithm": "online-grpo"}
    assert map_setting("stackelberg", "training_algorithm", "online-grpo", grpo, accepted) == {
        "training_algorithm": "grpo"
    }
    dpo = {"training_algorithm": "preference"}
    assert map_setting("stackelberg", "training_algorithm", "preference", dpo, accepted) == {
        "training_algorithm": "dpo"
    }
    assert isinstance(
        map_setting("stackelberg", "training_algorithm", "ppo", {"training_algorithm": "ppo"}, accepted), str
    )
    for key, value in [("grpo_num_generations", 8), ("grpo_learning_rate", 1e-5), ("grpo_beta", 0.04),
                       ("grpo_epsilon", 0.3), ("grpo_max_completion_length", 128), ("judge_temperature", 1e-5)]:  # fmt: skip
        assert map_setting("stackelberg", key, value, grpo, accepted) == {key: value}
    assert map_setting("stackelberg", "grpo_scale_rewards", False, grpo, accepted) == {
        "grpo_scale_rewards": "none"
    }
    assert map_setting("stackelberg", "grpo_scale_rewards", "batch", grpo, accepted) == {
        "grpo_scale_rewards": "batch"
    }
    assert map_setting("stackelberg", "reward_scale", "1_10", grpo, accepted) == {"reward_scale": "raw"}
    assert map_setting("stackelberg", "reward_scale", "other", grpo, accepted) == {"reward_scale": "zero_one"}
    assert map_setting("stackelberg", "judge_max_response_length", 32, grpo, accepted) == {
        "judge_max_new_tokens": 32
    }
    assert map_setting("stackelberg", "grpo_epoch", 2.0, grpo, accepted) == {"epochs_per_iteration": 2}
    assert map_setting("stackelberg", "grpo_epoch", 2.0, dpo, accepted) == {}  # DPO does not read it
    assert isinstance(map_setting("stackelberg", "grpo_epoch", 0.5, grpo, accepted), str)
    assert isinstance(map_setting("stackelberg", "grpo_batch_size", 2, grpo, accepted), str)
    assert map_setting("stackelberg", "grpo_batch_size", 2, dpo, accepted) == {}
    assert map_setting("stackelberg", "grpo_loss_type", "grpo", grpo, accepted) == {}
    assert isinstance(map_setting("stackelberg", "grpo_loss_type", "dr_grpo", grpo, accepted), str)
    assert map_setting("stackelberg", "judge_top_p", 1.0, grpo, accepted) == {}
    assert isinstance(map_setting("stackelberg", "judge_top_p", 0.9, grpo, accepted), str)
    fields = {"training_algorithm": "grpo", "grpo_num_generations": 8, "judge_max_response_length": 32}
    recipe, _ = convert_config(moco_config("text_sparta_stackelberg", {**fields, "grpo_epoch": 2}))
    init_args = recipe["model"]["init_args"]
    assert (init_args["training_algorithm"], init_args["grpo_num_generations"]) == ("grpo", 8)
    assert (init_args["judge_max_new_tokens"], init_args["epochs_per_iteration"]) == (32, 2)


@needs_moco
def test_a_converted_moa_config_runs_as_moco_runs_it(run_cli, tmp_path, monkeypatch):
    from tests.parity.moco_harness import assert_same, assert_same_calls, boxed, exact_match_task, run_moco

    task = exact_match_task(
        dev=[("What is 3 plus 3?", "6"), ("What is 5 plus 2?", "7")],
        test=[("What is 12 plus 13?", "25"), ("What is 31 plus 14?", "45"), ("What is 50 plus 17?", "67")],
        name="convert_moa",
    )

    def policy(ask) -> str:
        truth = ask.record["output"]
        if ask.split == "dev":  # beta is the best on dev, so it aggregates
            return boxed(truth if ask.model == "beta" else "0")
        quoted = [q.content for q in ask.quotes if q.author == "gamma"]
        if quoted:  # a later layer follows gamma, who is right on t0 and t1 only
            return quoted[0]
        return boxed(truth if ask.model == "gamma" and ask.example != "t2" else "1")

    models = ["alpha", "beta", "gamma"]
    hyper = {**GENERATION_FIELDS, "round": 2}
    config = {
        "method": "text_moa",
        "task_type": "exact_match",
        "model_names": models,
        "hyperparameters": hyper,
    }
    moco = run_moco(monkeypatch, tmp_path, "text_moa", task, models, policy, hyper)
    recipe, lit = run_converted(run_cli, tmp_path, config, task, policy)
    assert recipe["model"]["init_args"]["round"] == 2
    assert_same_calls(moco.calls, lit.calls)
    assert_same("outputs", moco.outputs, lit.outputs)
    assert moco.score == lit.score == 2 / 3


def test_agglm_settings_land_where_moco_uses_them():
    recipe, notes = convert_config(
        moco_config("text_agglm", {"temperature": 0.9, "max_epochs": 2, "lr_scheduler": "constant"})
    )
    init_args = recipe["model"]["init_args"]
    assert (init_args["temperature"], init_args["grpo_temperature"]) == (0.9, 0.9)
    assert init_args["epochs_per_iteration"] == 2 and init_args["lr_schedule"] == "constant" and not notes
    with pytest.raises(UserError) as stopped:
        convert_config(moco_config("text_agglm", {"lr_scheduler": "linear", "train_batch_size": 8}))
    assert "lr_scheduler='linear'" in str(stopped.value) and "train_batch_size=8" in str(stopped.value)


def test_collm_gets_the_training_moco_fixes_in_code():
    # MoCo's example: training_num and the generation settings; the rest MoCo fixes in run_method
    recipe, notes = convert_config(moco_config("api_collm", {"training_num": 500, "temperature": 0.7}))
    init_args = recipe["model"]["init_args"]
    assert init_args["training_num"] == 500 and init_args["training_data"] == "nlile/hendrycks-MATH-benchmark"
    assert init_args["max_seq_length"] == 2048 and recipe["trainer"]["max_epochs"] == 2
    assert (init_args["temperature"], init_args["top_p"]) == (0.0, 1.0)  # MoCo's own greedy loop
    assert init_args.get("train_generator", True) is True
