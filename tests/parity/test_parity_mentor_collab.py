"""mentor_collab against MoCo's ``run_method``: the same words, consultations, patches and choices
at every step, and the same final outputs, on the same tiny models.

Both sides decode the same float32 tiny models (MoCo loads bfloat16 onto a GPU; here its loader
is patched to the CPU). moco_lit runs with ``prompt: raw`` (MoCo's prompt handling) on a
``text_generation`` task, whose prompt both systems feed as it is. The consultation draws are
injected: MoCo draws from the global ``random`` module, moco_lit from a seeded generator per
example, so both get the same scripted integers, step by step, for every example. MoCo's choice
question is replaced by moco_lit's wording (prompt text is not what is compared).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import types

import pytest
import torch

from moco_lit.methods.api import mentor_collab as lit_method
from tests.conftest import collaborators_arg, run_records
from tests.parity.moco_harness import Task
from tests.parity.steering import Steering, banned_tokens, steer_pool
from tests.test_decoding import lively_models, other_tokenizer_model  # noqa: F401  (fixtures)

DRAWS = [7, 90, 3, 60, 12, 1, 99, 24, 25, 18, 40, 2]
"""The integers in 1..100 drawn at steps 1, 2, ... of every example (then again from the start):
below 25 the mentor is consulted (24 and 25 sit on either side of MoCo's ``<`` rule)."""

QUESTIONS = [
    "Tell me about the river near the old mill",
    "Write one line on the weather",
    "List three colours",
]


def _task() -> Task:
    records = [{"id": f"t{i}", "input": q, "output": ""} for i, q in enumerate(QUESTIONS)]
    dev = [{"id": "d0", "input": "Name a fruit", "output": ""}]
    return Task("mentor_parity", "text_generation", dev, records)


class ScriptedDraws:
    """Stands in for a random generator: ``randint`` hands out DRAWS in order."""

    def __init__(self, *args) -> None:
        self.step = 0

    def randint(self, low: int, high: int) -> int:
        assert (low, high) == (1, 100)
        self.step += 1
        return DRAWS[(self.step - 1) % len(DRAWS)]


class ChoiceSteering(Steering):
    """On both sides: the shared ban (``banned_tokens``) and no end of sequence, except that
    ``eos_from`` makes it the only choice from that position on (both sides' positions agree)."""

    def __init__(self) -> None:
        super().__init__()
        self.eos_from: int | None = None

    def attach(self, model, tokenizer) -> None:
        eos = tokenizer.eos_token_id
        banned = banned_tokens(tokenizer)
        cue_end = tokenizer(lit_method.CHOICE_CUE, add_special_tokens=False)["input_ids"][-1]
        (letter_b,) = tokenizer("B", add_special_tokens=False)["input_ids"]
        seen = {}

        def remember(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            given = kwargs.get("position_ids")
            last = torch.full((ids.shape[0],), ids.shape[1] - 1)
            seen["position"] = (given[:, -1] if given is not None else last).cpu()
            seen["last_id"] = ids[:, -1].cpu()

        def steer(module, args, output):
            logits = output.logits
            logits[..., banned] = -1e4
            # after the choice cue, "B" wins at even positions: the judge goes both ways
            asked = (seen["last_id"] == cue_end) & (seen["position"] % 2 == 0)
            logits[asked.to(logits.device), -1, letter_b] = 1e4
            if self.eos_from is None:
                logits[..., eos] = -1e4
            else:
                late = (seen["position"] >= self.eos_from).to(logits.device)
                logits[late, -1, eos] = 1e4
            return output

        self.handles += [
            model.register_forward_pre_hook(remember, with_kwargs=True),
            model.register_forward_hook(steer),
        ]


@pytest.fixture
def steering(lively_models, other_tokenizer_model):  # noqa: F811
    yield from steer_pool(ChoiceSteering(), [*lively_models[:2], other_tokenizer_model])


@pytest.fixture
def moco_mentor(monkeypatch, steering):
    """MoCo's MentorCollab module with its GPU loader on the CPU in float32 and no torchvision
    (imported only for its pretrained-MLP class)."""
    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            vision, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
            ops.MLP = None
            vision.ops = ops
            monkeypatch.setitem(sys.modules, "torchvision", vision)
            monkeypatch.setitem(sys.modules, "torchvision.ops", ops)
    module = pytest.importorskip("model_collaboration.utils.mentor_collab")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    class CpuModels:
        @staticmethod
        def from_pretrained(name, **kwargs):
            model = AutoModelForCausalLM.from_pretrained(name, torch_dtype=torch.float32)
            model.to = lambda *args, **kw: model  # MoCo moves it to cuda:N
            steering.attach(model, AutoTokenizer.from_pretrained(name))
            return model

    monkeypatch.setattr(module, "AutoModelForCausalLM", CpuModels)
    query = lit_method.CHOICE_QUESTION + lit_method.CHOICE_CUE
    monkeypatch.setattr(module, "generate_query_prompt", lambda a, b: query.format(option_a=a, option_b=b))
    return module


def moco_traces(module, monkeypatch, tmp_path, models, hyperparameters) -> tuple[list, list[list[dict]]]:
    """Run MoCo's run_method; its outputs and, per example, every step: the generator's word,
    the mentor's when consulted, both patches and the choice where they differ."""
    traces: list[list[dict]] = []
    generate, word, segment, next_token = (
        module.MentorCollab.generate,
        module.complete_next_word,
        module.complete_segment,
        module.generating_next_token_with_probability,
    )
    state = {}

    def traced_generate(self, prompt, max_new_tokens=100):
        state["collab"], state["draws"] = self, ScriptedDraws()
        monkeypatch.setattr(module, "random", state["draws"])
        traces.append([])
        return generate(self, prompt, max_new_tokens)

    def traced_word(model, prompt, tokenizer, first, tolerence=10):
        text = word(model, prompt, tokenizer, first, tolerence)
        if model is state["collab"].generator:
            traces[-1].append({"word": text})
        else:
            traces[-1][-1]["mentor_word"] = text
        return text

    def traced_segment(model, prompt, tokenizer, patch_size=16):
        text = segment(model, prompt, tokenizer, patch_size)
        traces[-1][-1].setdefault("patches", []).append(text)
        return text

    def traced_next_token(model, prompt, tokenizer):
        token_id, prob = next_token(model, prompt, tokenizer)
        if prompt.endswith(lit_method.CHOICE_CUE):
            traces[-1][-1]["mentor"] = tokenizer.decode(token_id) == "B"
        return token_id, prob

    monkeypatch.setattr(module.MentorCollab, "generate", traced_generate)
    monkeypatch.setattr(module, "complete_next_word", traced_word)
    monkeypatch.setattr(module, "complete_segment", traced_segment)
    monkeypatch.setattr(module, "generating_next_token_with_probability", traced_next_token)
    return run_moco_mentor(monkeypatch, tmp_path, models, hyperparameters), traces


def run_moco_mentor(monkeypatch, tmp_path, models, hyperparameters) -> list[str]:
    """MoCo's ``run_method`` on the task (it wants one GPU id per model); its logged outputs."""
    from model_collaboration.data import eval as moco_eval
    from model_collaboration.method import api_mentor_collab

    data = _task().as_json()
    monkeypatch.setattr(moco_eval, "_load_task_json", lambda name: copy.deepcopy(data))
    monkeypatch.setattr(moco_eval, "_ensure_dataset", lambda name: None)
    workdir = tmp_path / "moco"
    (workdir / "model_collaboration" / "logs").mkdir(parents=True)
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(os, "chdir", lambda path: None)  # run_method moves into its package
    api_mentor_collab.run_method(data["name"], data["task_type"], [0, 1], list(models), hyperparameters)
    (log,) = (workdir / "model_collaboration" / "logs").glob("*.json")
    return [entry["output"] for entry in json.loads(log.read_text())["logs"]]


def lit_traces(run_cli, monkeypatch, tmp_path, models, *args: str) -> tuple[list, list[list[dict]], list]:
    """moco_lit's test command; outputs, the same per-step trace, and the records."""
    monkeypatch.setattr(lit_method, "random", types.SimpleNamespace(Random=ScriptedDraws))
    traces: dict[str, list[dict]] = {}
    details = lit_method.MentorRule.row_details

    def keep_trace(self, row):
        traces[len(traces)] = [
            {key: value for key, value in step.items() if key != "at_token"} for step in self.trace[row]
        ]
        return details(self, row)

    monkeypatch.setattr(lit_method.MentorRule, "row_details", keep_trace)
    path = _task().write(tmp_path)
    code, cli = run_cli(
        "test",
        "--model",
        "mentor_collab",
        "--model.collaborators",
        collaborators_arg(list(models)),
        "--model.prompt",
        "raw",
        *args,
        "--model.generation_batch_size",
        "1",  # rows in order, so traces line up with examples
        "--data.benchmark",
        str(path),
        "--cache",
        "false",
    )
    assert code == 0
    records = run_records(cli)
    order = {f"t{i}": i for i in range(len(QUESTIONS))}
    records.sort(key=lambda r: order[r["id"]])
    return [r["output"] for r in records], [traces[i] for i in range(len(traces))], records


@pytest.mark.parametrize("pair", ["same_tokenizer", "mixed_tokenizers"])
def test_free_mode_takes_the_same_steps_as_moco(
    pair,
    lively_models,  # noqa: F811
    other_tokenizer_model,  # noqa: F811
    moco_mentor,
    monkeypatch,
    tmp_path,
    run_cli,  # noqa: F811
):
    models = lively_models[:2] if pair == "same_tokenizer" else [lively_models[0], other_tokenizer_model]
    hyper = {"max_response_length": 24, "patch_size": 4}
    moco_outputs, moco = moco_traces(moco_mentor, monkeypatch, tmp_path, models, hyper)
    lit_outputs, lit, records = lit_traces(
        run_cli, monkeypatch, tmp_path, models, "--model.max_new_tokens", "24", "--model.patch_size", "4"
    )
    assert lit == moco
    assert lit_outputs == [output.strip() for output in moco_outputs]
    # the comparison saw every kind of step: words alone, consultations, branches both ways
    steps = [step for trace in moco for step in trace]
    assert any("mentor_word" not in s for s in steps)
    assert {s.get("mentor") for s in steps if "patches" in s} == {True, False}
    assert sum(r["details"]["decisions"] for r in records) == sum("mentor" in s for s in steps)


def test_moco_writes_past_the_end_of_sequence_where_moco_lit_stops(
    lively_models,  # noqa: F811
    moco_mentor,
    steering,
    monkeypatch,
    tmp_path,
    run_cli,
):
    """From a position on, both models can only end the sequence. MoCo decodes the end token to
    its text, appends it and goes on to its budget (a MoCo bug kept out of moco_lit); moco_lit
    ends the row there, with the same text MoCo had before its first end token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lively_models[0])
    steering.eos_from = max(len(tokenizer(q)["input_ids"]) for q in QUESTIONS) + 8
    models = lively_models[:2]
    moco_outputs, _ = moco_traces(
        moco_mentor, monkeypatch, tmp_path, models, {"max_response_length": 24, "patch_size": 4}
    )
    lit_outputs, _, _ = lit_traces(
        run_cli, monkeypatch, tmp_path, models, "--model.max_new_tokens", "24", "--model.patch_size", "4"
    )
    end = tokenizer.eos_token
    for moco, lit in zip(moco_outputs, lit_outputs):
        assert moco.count(end) > 1  # the end token's text, again and again
        assert moco.split(end)[0].strip() == lit
        assert end not in lit


def _torchvision_mlp(in_channels, hidden_channels, norm_layer=None, activation_layer=None, dropout=0.0):
    """torchvision's MLP block (only its layout matters): linear, norm, activation, dropout per
    hidden width, then a last linear and dropout."""
    layers, size = [], in_channels
    for width in hidden_channels[:-1]:
        layers += [
            torch.nn.Linear(size, width),
            norm_layer(width),
            activation_layer(),
            torch.nn.Dropout(dropout),
        ]
        size = width
    return torch.nn.Sequential(*layers, torch.nn.Linear(size, hidden_channels[-1]), torch.nn.Dropout(dropout))


def test_train_mode_uses_moco_s_pretrained_mlp_as_moco_does(
    lively_models,  # noqa: F811
    moco_mentor,
    monkeypatch,
    tmp_path,
    run_cli,
):
    """MoCo's pretrained MLP, here a seeded stand-in of the same layout that both sides download,
    reads the generator's hidden state after the text and the choice question: the same choices
    at every branch, and the same outputs."""
    import huggingface_hub
    from model_collaboration.method import api_mentor_collab

    if getattr(sys.modules["torchvision"].ops, "MLP", None) is None:  # the fixture's stub
        monkeypatch.setattr(moco_mentor, "MLP", _torchvision_mlp)
    generator = lively_models[0]
    width = 32  # the lively models' hidden size
    torch.manual_seed(3)
    stand_in = lit_method.PretrainedBranchMLP(width)
    with torch.no_grad():
        for module in stand_in.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    weights = tmp_path / "branch_mlp.pth"
    torch.save(stand_in.state_dict(), weights)
    asked = []

    def download(repo_id, filename, subfolder=None, **kwargs):
        asked.append((repo_id, filename, subfolder))
        return str(weights)

    monkeypatch.setattr(moco_mentor, "hf_hub_download", download)

    monkeypatch.setattr(moco_mentor.BranchPredictionMLP, "to", lambda self, *a, **k: self)  # not to cuda:N
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setitem(moco_mentor.MENTOR_COLLAB_TRAIN_DICT, generator, "tiny")
    monkeypatch.setattr(api_mentor_collab, "MENTOR_COLLAB_TRAIN_SUPPORT_MODELS", [generator])
    monkeypatch.setitem(lit_method.MOCO_MLP_FOLDERS, generator, "tiny")
    marker = "My choice: Option ("  # where MoCo's code cuts the question for its MLP (test only)
    monkeypatch.setattr(
        moco_mentor,
        "generate_query_prompt",
        lambda a, b: lit_method.CHOICE_QUESTION.format(option_a=a, option_b=b) + marker,
    )
    judgement = moco_mentor.MentorCollab.mlp_judgement
    moco_choices = []

    def recorded_judgement(self, query_prompt):
        choice, score = judgement(self, query_prompt)
        moco_choices.append(choice == "B")
        return choice, score

    monkeypatch.setattr(moco_mentor.MentorCollab, "mlp_judgement", recorded_judgement)
    models = lively_models[:2]
    threshold = 0.66  # the stand-in's scores here lie between 0.65 and 0.68: both choices occur
    hyper = {"max_response_length": 24, "patch_size": 4, "mode": "train", "task": "Math"}
    hyper["mlp_threshold"] = threshold
    moco_outputs, moco = moco_traces(moco_mentor, monkeypatch, tmp_path, models, hyper)
    for trace in moco:  # the MLP's choices, in order, onto the branch steps
        for step in trace:
            if "patches" in step:
                step["mentor"] = moco_choices.pop(0)
    lit_outputs, lit, _ = lit_traces(
        run_cli,
        monkeypatch,
        tmp_path,
        models,
        *("--model.max_new_tokens", "24", "--model.patch_size", "4"),
        *("--model.mode", "train", "--model.mlp_task", "Math", "--model.mlp_threshold", str(threshold)),
    )
    assert asked == [(lit_method.MOCO_MLP_REPO, "branch_mlp.pth", "tiny/Math")] * 2
    assert lit == moco
    assert lit_outputs == [output.strip() for output in moco_outputs]
    steps = [step for trace in moco for step in trace]
    assert {s.get("mentor") for s in steps if "patches" in s} == {True, False}
